"""Data: ROS 2 bags and their messages, episode metadata, alignment, instructions and the training dataset."""
