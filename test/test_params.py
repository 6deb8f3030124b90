"""The one parameter table: checks, launch arguments, node specs, and the CLI that reads it
without importing torch."""

import math
import subprocess
import sys
import time

import pytest

from trimodal_ros.ros.inputs import Inputs
from trimodal_ros.ros.params import SIM_PARAMS, VLA_PARAMS, check, launch_arguments, node_specs, table


def test_every_parameter_has_a_description_and_a_checkable_default():
    for params in (VLA_PARAMS, SIM_PARAMS):
        assert len({p.name for p in params}) == len(params)
        for p in params:
            assert p.description and check(p, p.default)[1] is None, p.name


def test_check_refuses_non_finite_out_of_range_and_wrong_types():
    t = table(VLA_PARAMS)
    assert check(t["rate_hz"], 10) == (10.0, None)  # an int for a float parameter is fine
    for name, value in (("rate_hz", math.inf), ("control_period", math.nan), ("max_input_age", 0.0),
                        ("image_qos_depth", 0), ("image_qos_reliability", "sometimes"), ("device", "gpu"),
                        ("torch_threads", 1.5), ("allow_random_weights", "yes"), ("fusion", "nope")):
        v, err = check(t[name], value)
        assert err and name in err, (name, err)


def test_launch_arguments_and_node_specs_come_from_the_table():
    args = {a.name: a for a in launch_arguments()}
    for p in VLA_PARAMS:
        if p.launch:
            assert p.description in args[p.name].description
    assert {"namespace", "use_sim_time", "lifecycle"} <= set(args)
    spec = node_specs({"fusion": "qformer", "rate_hz": "2.5", "image_qos_depth": "7", "lifecycle": "true",
                       "allow_random_weights": "true"})[0]
    assert spec.parameters["rate_hz"] == 2.5 and spec.parameters["image_qos_depth"] == 7
    assert spec.parameters["allow_random_weights"] is True and spec.managed and spec.parameters["autostart"] is False
    with pytest.raises(ValueError, match="image_qos_depth"):
        node_specs({"image_qos_depth": "0"})


def test_cli_help_and_generate_import_no_torch():
    code = ("import sys; from trimodal_ros.cli import build_parser; p = build_parser(); "
            "p.parse_args(['generate', '--tasks', 'mt10', '--out', 'x']); "
            "import trimodal_lab.metaworld; "
            "print(sorted(m for m in ('torch', 'rclpy', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inputs_task_generations_order_and_timeout():
    i = Inputs()
    assert i.task() == (0, None, False)
    assert i.admit((5, 2)) is None and i.admit((5, 2)) == "duplicate"  # one message through both subscriptions
    assert i.admit((4, 1)) == "superseded"  # sent before the one in force, delivered after it
    assert i.admit((6, 3)) is None and i.admit((0, 9)) is None and i.admit(None) is None  # no source stamp
    assert i.instruct("open")
    assert i.task()[:2] == (1, "open")
    assert not i.instruct("open")  # the same instruction again (a repeating publisher): the task goes on
    assert i.task()[:2] == (1, "open")
    i.restart()
    assert i.task()[:2] == (2, "open")
    assert i.instruct("")
    assert i.instruction is None
    i.instruct("close")
    time.sleep(0.05)
    gen, text, expired = i.task(timeout=0.01)
    assert text is None and expired and i.task(timeout=0.01)[2] is False  # counted once


def test_joint_buffer_keeps_a_time_span_and_restarts_when_time_goes_back():
    i = Inputs()
    for k in range(3000):  # 3 s at 1 kHz
        i.add_joints(k * 1e-3, k, None, keep=1.5)
    assert 1.499 <= i.span() <= 1.5
    assert i.joints_at(2.9995, 0.5)[1] == 2999 and i.joints_at(0.1, 0.5) == -1  # MISSING: trimmed
    assert i.joints_at(5.0, 0.5) == -2  # STALE
    i.add_joints(0.0, "reset", None, keep=1.5)
    assert i.span() == 0.0 and i.joints_at(0.0, 0.5)[1] == "reset"


def test_gate_says_what_holds_a_frame_back():
    i = Inputs()
    assert i.gate(1.0, 0.5).wait == "waiting_for_instruction"
    i.instruct("open")
    g = i.gate(1.0, 0.5)
    assert (g.expired, g.wait) == (False, "waiting_for_joint_state")
    i.add_joints(0.2, "old", None, keep=2.0)
    g = i.gate(1.0, 0.5)
    assert (g.joints, g.expired, g.wait) == (None, False, "stale_joint_state")
    i.add_joints(0.9, "fresh", None, keep=2.0)
    g = i.gate(1.0, 0.5)
    assert (g.generation, g.instruction, g.joints[1], g.expired, g.wait) == (1, "open", "fresh", False, None)
    assert i.gate(0.95, 0.5).joints[1] == "fresh" and i.gate(0.5, 0.5).joints[1] == "old"  # at or before the frame
    time.sleep(0.05)
    g = i.gate(1.0, 0.5, timeout=0.01)
    assert (g.instruction, g.joints, g.expired, g.wait) == (None, None, True, "waiting_for_instruction")


def test_other_cameras_frames_are_taken_at_or_before_the_primary_stamp():
    i = Inputs()
    assert i.views_at(["top"], 1.0, 0.5) == "waiting_for_camera"
    assert i.views_at([], 1.0, 0.5) == {}  # a one-camera model needs none
    i.add_view("top", 0.2, "old", keep=2.0)
    assert i.views_at(["top"], 1.0, 0.5) == "stale_camera"
    i.add_view("top", 0.9, "fresh", keep=2.0)
    i.add_view("top", 1.1, "later", keep=2.0)
    assert i.views_at(["top"], 1.0, 0.5) == {"top": "fresh"}
    assert i.views_at(["top", "wrist"], 1.0, 0.5) == "waiting_for_camera"


def test_readme_parameter_table_is_the_table():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| `")]
    got = [(name.strip().strip("`"), live.strip() == "yes") for name, _, live in rows]
    assert got == [(p.name, p.live) for p in VLA_PARAMS]
