"""Ctrl-C without a traceback for the node executables.

``rclpy.init()`` installs rclpy's own SIGINT handler: it shuts the context down, so ``spin()``
returns (``ExternalShutdownException``), and then calls the handler that was there before, which
for a Python program raises ``KeyboardInterrupt`` wherever the main thread happens to be. Ctrl-C in
a terminal signals the whole process group, and ``ros2 launch`` then sends its own SIGINT to each
node: the second ``KeyboardInterrupt`` lands in the clean-up (``destroy_node``, a ``__del__``) and
prints a traceback. ``init()`` is ``rclpy.init()`` with the Python handler made quiet first, so
SIGINT stops the node through rclpy only.
"""

from __future__ import annotations

import signal


def init(args=None) -> None:
    """``rclpy.init(args=args)``; afterwards SIGINT no longer raises ``KeyboardInterrupt``. A process
    that ignores SIGINT (started with it ignored) keeps Python's setting."""
    import rclpy

    state = {"ros": False}

    def on_sigint(signum, frame):
        if not state["ros"]:  # not a ROS process yet: stop as Python would
            raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)  # before rclpy.init(): rclpy chains to it
    rclpy.init(args=args)
    state["ros"] = True
