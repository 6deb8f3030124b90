"""trimodal_lab: what a researcher runs beside the robot's runtime (``trimodal_ros``): the
pre-registered study and its analysis. It may import the runtime; the runtime never imports it."""
