"""trimodal_ros: a vision-language-action front end for ROS 2.

What a robot runs and trains with; the model, data and training code import without rclpy (only
``trimodal_ros.ros`` needs it). Simulators, evaluation and studies live in ``trimodal_lab``.
"""

__version__ = "0.1.0"
