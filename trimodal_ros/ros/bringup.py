"""``trimodal-ros up``: start what ``launch/vla.launch.py`` starts, in this process.

``ros2 launch`` needs the ``launch`` packages, which a pip-installed ROS 2 lacks; both read the same
table (``params.launch_arguments`` / ``node_specs``), so they start the same nodes with the same
parameters. Every in-process start of vla_node (this command, the demo, the live evaluation, the
through-ROS rollout) goes through ``Bringup``. Nodes share one executor, single-threaded as in
vla_node's own process unless a node asks for more (``execution`` other than ``chunk``).
"""

from __future__ import annotations

import argparse
import importlib
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .params import NodeSpec, launch_arguments, node_specs

# executable (console script) -> "module:class" of the node it runs (the lab's sim_node starts itself)
NODE_CLASSES = {"vla_node": "trimodal_ros.ros.vla_node:VLANode"}


def _node_class(executable: str):
    module, cls = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module), cls)


def create_node(spec: NodeSpec, context=None):
    from rclpy.parameter import Parameter

    overrides = [Parameter(k, value=v) for k, v in spec.parameters.items()]
    return _node_class(spec.executable)(spec.name, namespace=spec.namespace or None,
                                        parameter_overrides=overrides, context=context,
                                        cli_args=ros_arguments(spec) or None)


def ros_arguments(spec: NodeSpec, params_file: str = "", log_level: Optional[str] = None) -> List[str]:
    """The node's ``--ros-args``: the spec's params file, then ``params_file`` (its values win), the
    remappings, the log level (``log_level``, else the spec's; info is not written) and the spec's own."""
    level = log_level or spec.log_level
    args = [x for f in (spec.params_file, params_file) if f for x in ("--params-file", f)] + \
        [x for a, b in spec.remappings for x in ("-r", f"{a}:={b}")] + \
        (["--log-level", level] if level != "info" else []) + list(spec.ros_args)
    return ["--ros-args", *args] if args else []


def spawn(spec: NodeSpec, log_level: Optional[str] = None, **popen):
    """Start ``spec`` in its own process, as ``ros2 launch`` would (``--ros-args``, a params
    file written from the table's typed values); returns the ``subprocess.Popen``."""
    import subprocess
    import sys
    import tempfile

    import yaml

    module = NODE_CLASSES[spec.executable].split(":")[0]
    fd, path = tempfile.mkstemp(prefix=f"{spec.name}-", suffix=".yaml")
    with open(fd, "w") as f:
        yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}, f)
    ns = ["-r", f"__ns:=/{spec.namespace.strip('/')}"] if spec.namespace.strip("/") else []
    args = ros_arguments(spec, params_file=path, log_level=log_level)[1:]  # the table's values win
    cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={spec.name}", *ns, *args]
    return subprocess.Popen(cmd, **popen)


class Bringup:
    """The running nodes and their executor. ``start()`` spins in a thread (tests, bench);
    ``spin()`` blocks (the CLI). ``shutdown()`` stops the executor before destroying nodes."""

    def __init__(self, values: Mapping[str, Any], context=None, ros_args: Sequence[str] = ()):

        self.specs: List[NodeSpec] = node_specs(values)
        for s in self.specs:
            s.ros_args = list(ros_args)
        self.nodes = []
        try:
            for s in self.specs:
                self.nodes.append(create_node(s, context))
        except BaseException:
            for n in self.nodes:
                n.destroy_node()
            raise
        # as vla_node's own main(): one thread (its callbacks run inference in place, no hand-off), or
        # the threads a node asks for (execution:=ensemble|latest: the control timer beside the model)
        from .signals import executor_for

        self.executor = executor_for(self.nodes, context)
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


def register(sub) -> None:
    from .params import add_cli_options

    p = sub.add_parser("up", help="bring up vla_node in this process (what vla.launch.py launches)")
    add_cli_options(p)
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="the rest goes to the node as ROS arguments (-r from:=to, -p name:=value, --params-file F)")
    p.set_defaults(func=cli_up)


def cli_up(args) -> int:
    import rclpy

    from . import signals

    signals.init()  # rclpy.init(); Ctrl-C then stops the executor without a traceback
    try:
        try:
            up = Bringup(values_from_args(args), ros_args=args.ros_args or [])
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
