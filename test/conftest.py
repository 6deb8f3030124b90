"""Shared test set-up: one DDS domain per test process, so parallel runs never cross-talk,
and few torch threads on the 2-core CI machine."""

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(2)
