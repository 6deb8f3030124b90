"""Ctrl-C without a traceback for the node executables.

``rclpy.init()`` installs rclpy's own SIGINT handler: it shuts the context down, so ``spin()``
returns (``ExternalShutdownException``), and then calls the handler that was there before, which
for a Python program raises ``KeyboardInterrupt`` wherever the main thread happens to be. Ctrl-C in
a terminal signals the whole process group, and ``ros2 launch`` then sends its own SIGINT to each
node: the second ``KeyboardInterrupt`` lands in the clean-up (``destroy_node``, a ``__del__``) and
prints a traceback. ``init()`` is ``rclpy.init()`` with the Python handler made quiet first, so
SIGINT stops the node through rclpy only. Once the program exits, SIGINT is ignored: Python's
finalisation resets a Python handler to SIG_DFL, and a late SIGINT would then kill the exiting
process (exit code -2, "process has died" in ``ros2 launch``) instead of letting it finish cleanly.
"""

from __future__ import annotations

import atexit
import os
import signal


def init(args=None) -> None:
    """``rclpy.init(args=args)``; afterwards SIGINT no longer raises ``KeyboardInterrupt``. A process
    that ignores SIGINT (started with it ignored) keeps Python's setting."""
    import rclpy

    state = {"ros": False}

    def on_sigint(signum, frame):
        if not state["ros"]:  # not a ROS process yet: stop as Python would
            raise KeyboardInterrupt

    def on_exit():
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # finalisation leaves an ignored signal ignored

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)  # before rclpy.init(): rclpy chains to it
        atexit.register(on_exit)
    rclpy.init(args=args)
    state["ros"] = True


def executor_for(nodes, context):
    """A single-threaded executor, or a multi-threaded one with as many threads as the most any of
    ``nodes`` asks for in ``spin_threads`` (vla_node's chunk executor: its control timer beside the model)."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    threads = max((getattr(n, "spin_threads", 1) for n in nodes), default=1)
    return MultiThreadedExecutor(threads, context=context) if threads > 1 else SingleThreadedExecutor(context=context)


def spin(node) -> None:
    """Spin ``node`` until Ctrl-C or shutdown: on one thread, or on as many as the node's
    ``spin_threads`` asks for (callbacks of one mutually exclusive group still run one at a time)."""
    from rclpy.executors import ExternalShutdownException

    executor = executor_for([node], node.context)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # executors first: rclpy.shutdown() under a spinning executor aborts


def run_node(make, name: str, args=None, spin_fn=spin) -> int:
    """The ``main()`` of a node executable: ``init``, build the node (a bad parameter, checkpoint or
    task is a fatal log line and exit code 1, not a traceback), spin, clean up."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep (cli.py)
    import rclpy

    init(args)
    try:
        node = make()
    except Exception as e:
        if not rclpy.ok():  # Ctrl-C while starting (a model can take seconds to load)
            return 0
        rclpy.logging.get_logger(name).fatal(f"cannot start: {type(e).__name__}: {e}")
        rclpy.try_shutdown()
        return 1
    try:
        spin_fn(node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
