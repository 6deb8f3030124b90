"""Data: Meta-World episode generation, ROS 2 bags, alignment and the training dataset."""
