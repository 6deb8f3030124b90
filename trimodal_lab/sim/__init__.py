"""Closed-loop evaluation: the policy drives simulated Meta-World, in-process or through ROS 2."""
