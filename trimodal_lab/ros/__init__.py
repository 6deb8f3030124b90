"""ROS 2 nodes and harnesses of the lab: the simulator as a robot, closed-loop rollouts and live
evaluation through the real node."""
