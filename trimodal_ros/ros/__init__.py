"""ROS 2 edge: nodes, message conversions and bringup. The only part that imports rclpy."""
