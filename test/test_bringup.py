"""launch/vla.launch.py, ``trimodal-ros up`` and the README topic table describe the same thing.

Here the launch file is imported with tiny fake modules that record what it declares and which nodes
it starts, so this runs wherever rclpy does; test/test_ros2_cli.py runs it with the real ``ros2 launch``."""

import importlib.util
import re
import sys
import time
import types
from pathlib import Path

import pytest
import rclpy

from trimodal_ros.cli import build_parser
from trimodal_ros.ros.bringup import Bringup, values_from_args
from trimodal_ros.ros.params import VLA_PARAMS, launch_arguments, node_specs

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
STANDARD = {"/rosout", "/parameter_events"}  # every node has these


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def launch_file(monkeypatch):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorder,), {})
    actions.OpaqueFunction = type("OpaqueFunction", (_Recorder,), {})
    subs = types.ModuleType("launch.substitutions")

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    subs.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorder,), {})
    ros_actions.LifecycleNode = type("LifecycleNode", (_Recorder,), {})
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("vla_launch", ROOT / "launch" / "vla.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _up_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["up"]


def test_launch_file_and_up_expose_the_same_arguments(launch_file):
    ld = launch_file.generate_launch_description()
    declared = [a for a in ld.args[0] if type(a).__name__ == "DeclareLaunchArgument"]
    got = {a.args[0]: (a.kwargs["default_value"], a.kwargs["description"], a.kwargs.get("choices"))
           for a in declared}
    table = {a.name: (a.default, a.description, a.choices) for a in launch_arguments()}
    assert got == table
    assert table["fusion"][2] == sorted(table["fusion"][2]) and "qformer" in table["fusion"][2]

    # `up` lists the same arguments with the same defaults; its help leaves the fusion list out
    # (computing it imports torch, and `--help` must stay light) and node_specs checks the value
    up = {a.dest: (a.default, a.help) for a in _up_parser()._actions if a.dest not in ("help", "ros_args")}
    assert up == {a.name: (a.default, a.description) for a in launch_arguments()}
    assert set(up) == set(table)
    # every launchable parameter of the node's own table is a launch argument, with its default
    assert {p.name for p in VLA_PARAMS if p.launch} <= set(table)


def test_params_file_remappings_and_log_level_reach_the_node(tmp_path):
    """With a params file only the arguments set apart from their defaults override it; remappings and the log
    level travel as the node's --ros-args (`trimodal-ros up --ros-args ...` appends its own)."""
    from trimodal_ros.ros.bringup import ros_arguments

    f = tmp_path / "vla.yaml"
    spec = node_specs({"params_file": str(f), "rate_hz": "5", "remappings": "camera/image_raw:=/cam/color; a:=b",
                       "log_level": "debug"})[0]
    assert spec.parameters == {"rate_hz": 5.0}  # the file's use_sim_time and autostart stand
    assert node_specs({"params_file": str(f), "use_sim_time": "true", "lifecycle": "true"})[0].parameters == {
        "use_sim_time": True, "autostart": False}  # set apart from their defaults: they win
    spec.ros_args = ["-p", "seed:=3"]
    assert ros_arguments(spec) == ["--ros-args", "--params-file", str(f), "-r", "camera/image_raw:=/cam/color",
                                   "-r", "a:=b", "--log-level", "debug", "-p", "seed:=3"]
    assert "rate_hz" in node_specs({})[0].parameters  # without a file every value is explicit
    with pytest.raises(ValueError, match="not 'from:=to'"):
        node_specs({"remappings": "camera/image_raw"})


def test_launch_file_and_up_start_the_same_nodes(launch_file):
    values = {a.name: a.default for a in launch_arguments()}
    values.update(fusion="qformer", namespace="robot1", rate_hz="10", use_sim_time="true")
    ld = launch_file.generate_launch_description()
    opaque = next(a for a in ld.args[0] if type(a).__name__ == "OpaqueFunction")
    nodes = opaque.kwargs["function"](values)
    specs = node_specs(values)
    assert [(type(n).__name__, n.kwargs["package"], n.kwargs["executable"], n.kwargs["name"], n.kwargs["namespace"],
             n.kwargs["parameters"]) for n in nodes] == \
        [("Node", s.package, s.executable, s.name, s.namespace, [s.parameters]) for s in specs]
    assert specs[0].parameters["rate_hz"] == 10.0 and specs[0].parameters["use_sim_time"] is True
    assert specs[0].parameters["autostart"] is True
    managed = opaque.kwargs["function"](dict(values, lifecycle="true"))
    assert type(managed[0]).__name__ == "LifecycleNode" and managed[0].kwargs["parameters"][0]["autostart"] is False

    args = _up_parser().parse_args(["--fusion", "qformer", "--namespace", "robot1", "--rate-hz", "10",
                                    "--use-sim-time", "true"])
    assert node_specs(values_from_args(args)) == specs
    for bad, name in (({"fusion": "no_such_fusion"}, "fusion"), ({"rate_hz": "inf"}, "rate_hz"),
                      ({"rate_hz": "fast"}, "rate_hz"), ({"device": "gpu"}, "device"),
                      ({"lifecycle": "maybe"}, "lifecycle"), ({"no_such_arg": "1"}, "no_such_arg")):
        with pytest.raises(ValueError, match=name):
            node_specs(bad)


def readme_topics():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|\s*(pub|sub)\s*\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows.append(m.groups())
    return rows


def test_readme_topic_table_matches_the_running_node():
    rows = readme_topics()
    assert len(rows) >= 7
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    up = None
    try:
        up = Bringup({"fusion": "concat_mlp", "namespace": "cell_7", "max_input_age": "0.25"}, context=ctx).start()
        node = up.nodes[0]
        assert node.get_fully_qualified_name() == "/cell_7/vla_node"
        assert node.get_parameter("max_input_age").value == 0.25
        assert node.policy.model_config.fusion == "concat_mlp"
        probe = rclpy.create_node("probe", context=ctx)

        def resolve(name):
            return name if name.startswith("/") else f"/cell_7/{name}"

        want = {d: {(resolve(n), t) for n, dd, t in rows if dd == d} for d in ("pub", "sub")}

        def graph():
            pubs = probe.get_publisher_names_and_types_by_node("vla_node", "/cell_7")
            subs = probe.get_subscriber_names_and_types_by_node("vla_node", "/cell_7")
            std = STANDARD | {"/cell_7/vla_node/transition_event"}  # every lifecycle node has it
            ours = lambda n: n not in std and "/_action/" not in n  # noqa: E731  (an action's own topics)
            return ({(n, t) for n, ts in pubs if ours(n) for t in ts},
                    {(n, t) for n, ts in subs if ours(n) for t in ts})

        end = time.monotonic() + 10
        while graph() != (want["pub"], want["sub"]) and time.monotonic() < end:
            time.sleep(0.05)
        assert graph() == (want["pub"], want["sub"])
        from rclpy.action import get_action_server_names_and_types_by_node

        section = (ROOT / "README.md").read_text().split("## Topics", 1)[1].split("\n## ", 1)[0]
        actions = set(re.findall(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+/action/[^`]+)`", section, re.M))
        served = {(n, t) for n, ts in get_action_server_names_and_types_by_node(probe, "vla_node", "/cell_7")
                  for t in ts}
        assert actions and served == {("/cell_7/" + n, t) for n, t in actions}
        probe.destroy_node()
    finally:
        if up is not None:
            up.shutdown()
        rclpy.shutdown(context=ctx)


def test_bringup_fails_cleanly_on_a_bad_checkpoint(tmp_path):
    from trimodal_ros.checkpoint import CheckpointError

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(CheckpointError, match="does not exist"):
            Bringup({"checkpoint": str(tmp_path / "missing.pt")}, context=ctx)
    finally:
        rclpy.shutdown(context=ctx)


def test_spawn_starts_the_node_with_the_launch_files_arguments(tmp_path, monkeypatch):
    """A spawned node (bench ros) gets what ros2 launch gives it: its name and namespace, the user's
    params file and then the table's (whose values win), the remappings, the log level."""
    import subprocess

    import yaml

    from trimodal_ros.ros.bringup import spawn

    got = {}
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: got.setdefault("cmd", cmd))
    user = tmp_path / "user.yaml"
    spec = node_specs({"params_file": str(user), "rate_hz": "5", "remappings": "camera/image_raw:=/cam",
                       "namespace": "robot1"})[0]
    cmd = spawn(spec, log_level="warn")
    i = cmd.index("--ros-args")
    files = [cmd[k + 1] for k in range(i, len(cmd)) if cmd[k] == "--params-file"]
    assert cmd[i + 1:i + 5] == ["-r", f"__node:={spec.name}", "-r", "__ns:=/robot1"]
    assert files[0] == str(user) and yaml.safe_load(open(files[1]))["/**"]["ros__parameters"]["rate_hz"] == 5.0
    assert cmd[-4:] == ["-r", "camera/image_raw:=/cam", "--log-level", "warn"]
