"""Meta-World in the lab: ``layouts`` (layouts and their splits), ``scene`` (the Sawyer scene and
its cameras), ``expert`` (the scripted experts), ``language`` (the language-critical tasks' shared
state) and ``record`` (``trimodal-ros generate``: one ROS 2 bag per expert episode). The names are
re-exported here; ``import trimodal_lab.metaworld`` imports neither metaworld nor mujoco."""

from trimodal_lab.metaworld.expert import expert_policy  # noqa: F401
from trimodal_lab.metaworld.layouts import *  # noqa: F401,F403
from trimodal_lab.metaworld.record import *  # noqa: F401,F403
from trimodal_lab.metaworld.scene import *  # noqa: F401,F403
