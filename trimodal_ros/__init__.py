"""trimodal_ros: a vision-language-action front end for ROS 2.

The model, data and evaluation code import without rclpy; only ``trimodal_ros.ros`` needs it.
"""

__version__ = "0.1.0"
