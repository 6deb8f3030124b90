"""``trimodal-ros up``: start what ``launch/vla.launch.py`` starts, in this process, with rclpy.

``ros2 launch`` needs the ``launch`` packages, which a pip-installed ROS 2 lacks; both read the same
table (launch_args.launch_arguments / node_specs), so they start the same nodes with the same
parameters. Nodes share one executor; each node keeps its own inference thread.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Dict, List, Mapping, Optional

from .launch_args import NodeSpec, launch_arguments, node_specs

# executable (console script) -> "module:class" of the node it runs
NODE_CLASSES = {"vla_node": "trimodal_ros.ros.vla_node:VLANode"}


def _node_class(executable: str):
    module, cls = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module), cls)


def create_node(spec: NodeSpec, context=None):
    from rclpy.parameter import Parameter

    overrides = [Parameter(k, value=v) for k, v in spec.parameters.items()]
    return _node_class(spec.executable)(spec.name, namespace=spec.namespace or None,
                                        parameter_overrides=overrides, context=context)


class Bringup:
    """The running nodes and their executor. ``start()`` spins in a thread (tests, bench);
    ``spin()`` blocks (the CLI). ``shutdown()`` stops the executor before destroying nodes."""

    def __init__(self, values: Mapping[str, Any], context=None):
        from rclpy.executors import MultiThreadedExecutor

        self.specs: List[NodeSpec] = node_specs(values)
        self.nodes = []
        try:
            for s in self.specs:
                self.nodes.append(create_node(s, context))
        except BaseException:
            for n in self.nodes:
                n.destroy_node()
            raise
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for n in self.nodes:
            self.executor.add_node(n)
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Bringup":
        self._thread = threading.Thread(target=self.spin, name="bringup-executor", daemon=True)
        self._thread.start()
        return self

    def spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def shutdown(self) -> None:
        self.executor.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        for n in self.nodes:
            n.destroy_node()
        self.nodes = []


def values_from_args(args) -> Dict[str, str]:
    return {a.name: getattr(args, a.name) for a in launch_arguments() if hasattr(args, a.name)}


def cli_up(args) -> int:
    import rclpy

    rclpy.init()
    try:
        try:
            up = Bringup(values_from_args(args))
        except Exception as e:
            print(f"trimodal-ros up: cannot start: {type(e).__name__}: {e}")
            return 1
        names = ", ".join(n.get_fully_qualified_name() for n in up.nodes)
        print(f"running {names}; Ctrl-C to stop")
        try:
            up.spin()
        except KeyboardInterrupt:
            pass
        finally:
            up.shutdown()
    finally:
        rclpy.try_shutdown()
    return 0
