"""Meta-World as a ROS 2 robot: sim_node over real DDS, closed-loop rollouts of an untrained
(random-weight) policy through sim_node ↔ vla_node, and the in-process path taking the very same
actions. Small (64 px, ≤ 12 steps) so the module stays well under a minute."""

import json
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from trimodal_ros.config import SAWYER_JOINTS
from trimodal_ros.ros.conversions import BadInput, sec_to_duration, stamp_to_sec
from trimodal_lab.ros.sim_node import SimNode, chunk_from_trajectory
from trimodal_ros.interface import ACTION_NAMES
from trimodal_ros.interface import LATCHED as _LATCHED
from trimodal_ros.ros.conversions import qos_profile
from trimodal_ros.utils import wait_for

pytestmark = pytest.mark.ros

ROLLOUT = dict(tasks=["reach-v3"], episodes=2, split="heldout", seed=0, max_steps=12, execute=1, size=64)


def trajectory(stamp, rows, names=ACTION_NAMES):
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = stamp
    for k, r in enumerate(rows):
        msg.points.append(JointTrajectoryPoint(positions=[float(x) for x in r],
                                               time_from_start=sec_to_duration(0.0125 * (k + 1))))
    return msg


def test_chunk_from_trajectory_says_what_is_wrong():
    ok = trajectory(None, [[0.1, 0.2, 0.3, 0.4]] * 3)
    assert chunk_from_trajectory(ok, ACTION_NAMES).shape == (3, 4)
    cases = {"3 joint_names": trajectory(None, [[0.0] * 3], ACTION_NAMES[:3]),
             "point 1 has 3 positions": trajectory(None, [[0.0] * 4, [0.0] * 3]),
             "no points": trajectory(None, []),
             "NaN or infinite": trajectory(None, [[0.0, float("nan"), 0.0, 0.0]]),
             "expected the 4 action dims": trajectory(None, [[0.0] * 4], ["right_j0", "right_j1", "right_j2", "x"])}
    for text, msg in cases.items():
        with pytest.raises(BadInput, match=text) as e:
            chunk_from_trajectory(msg, ACTION_NAMES)
        assert e.value.kind == "refused_actions"


@pytest.fixture(scope="module", params=["mt10_policy", "mt10_two_cameras", "mt10_policy_concat"])
def both_paths(request):
    """The same random-weight model, same layouts and instructions: in-process, then through ROS. The
    shipped MT10 recipes' configs (temporal ensembling on), so both paths must ensemble alike; the
    two-camera one also needs sim_node to publish both named cameras and vla_node to pair them, the
    concat one the fusion launch argument that matches it (read from the config, as a user names it)."""
    from trimodal_ros.config import load_config
    from trimodal_ros.policy import Policy
    from trimodal_lab.sim.rollout import RolloutSpec, rollout_in_process
    from trimodal_lab.ros.rollout import PolicySource, rollout_through_ros

    t_in, t_ros = [], []
    config = request.param
    fusion = load_config(config).model.fusion
    policy = Policy.load(fusion=fusion, config=config, seed=0)
    assert policy.ensembler is not None
    spec = RolloutSpec(**ROLLOUT)
    r_in = rollout_in_process(policy, spec, progress=False, traces=t_in)
    r_ros = rollout_through_ros(spec, PolicySource(fusion=fusion, config=config, seed=0), progress=False,
                                traces=t_ros, action_timeout=30.0)
    return r_in, r_ros, t_in, t_ros


def test_a_rollout_through_ros_runs_every_task_of_its_plan():
    """Two tasks, one sim_node each in turn on the named simulator: both tasks' episodes are run and
    their frames answered (the second task's node once got the first one's node as its ``sim``)."""
    from trimodal_lab.ros.rollout import PolicySource, rollout_through_ros
    from trimodal_lab.sim.rollout import RolloutSpec

    spec = RolloutSpec(["reach-v3", "drawer-close-v3"], 1, max_steps=3, size=32)
    r = rollout_through_ros(spec, PolicySource(fusion="weighted_sum"), progress=False, action_timeout=30.0)
    assert [e["task"] for e in r["episodes"]] == ["reach-v3", "drawer-close-v3"]
    assert r["ros"]["sim.steps"] == sum(e["length"] for e in r["episodes"]) == 6


def test_untrained_rollout_runs_end_to_end_through_ros(both_paths):
    _, r, _, traces = both_paths
    o = r["overall"]
    assert o["episodes"] == 2 and 0.0 <= o["success_rate"] <= 1.0
    lo, hi = o["ci95"]
    assert 0.0 <= lo <= o["success_rate"] <= hi <= 1.0
    assert o["control_rate_hz"] > 0 and set(r["per_task"]) == {"reach-v3"}
    for ep, trace in zip(r["episodes"], traces):
        assert ep["layout"] in range(40, 50)  # held-out layouts by default
        assert ep["length"] == len(trace) and (ep["length"] == 12 or ep["success"])
        assert ep["ticks"] == ep["length"]  # execute=1: one model call per env step
    ros = r["ros"]
    assert ros["sim.steps"] == sum(e["length"] for e in r["episodes"]) == ros["vla.outputs"]
    assert ros["sim.refused_actions"] == ros["sim.stale_actions"] == ros["sim.action_timeouts"] == 0
    assert ros["vla.replaced"] == 0  # synchronous: never a second frame in flight
    assert ros["vla.frames_in"] == ros["vla.outputs"] and ros["vla.unaccounted"] == 0


def test_in_process_and_through_ros_take_the_same_actions(both_paths):
    from trimodal_lab.ros.rollout import compare_traces

    r_in, r_ros, t_in, t_ros = both_paths
    agree = compare_traces(t_in, t_ros)
    assert agree["steps_compared"] == 24 and agree["lengths_equal"]
    assert agree["identical_steps"] == 24 and agree["max_abs_diff"] == 0.0, agree
    # not vacuous: the random model's actions do change with the input (frame, joints, history)
    assert len(np.unique(np.concatenate(t_in), axis=0)) > 1
    assert [e["layout"] for e in r_in["episodes"]] == [e["layout"] for e in r_ros["episodes"]]


@pytest.fixture
def ros():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    client = rclpy.create_node("sim_test_client", context=ctx,
                               parameter_overrides=[Parameter("use_sim_time", value=True)])
    ex.add_node(client)
    nodes = []
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()
    yield ctx, ex, client, nodes
    ex.shutdown()
    thread.join(timeout=10)
    for n in nodes + [client]:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_sim_node_steps_only_on_fresh_well_formed_actions(ros):
    ctx, ex, client, nodes = ros
    ns = "/simtest"
    got = {"image": [], "joints": [], "instruction": [], "episode": [], "clock": []}
    client.create_subscription(Image, f"{ns}/camera/image_raw", got["image"].append, 10)
    client.create_subscription(JointState, f"{ns}/joint_states", got["joints"].append, 10)
    client.create_subscription(String, f"{ns}/instruction", got["instruction"].append, qos_profile(_LATCHED))
    client.create_subscription(String, f"{ns}/sim/episode", got["episode"].append, qos_profile(_LATCHED))
    client.create_subscription(Clock, "/clock", got["clock"].append, 10)
    act = client.create_publisher(JointTrajectory, f"{ns}/trimodal/action", 10)
    sim = SimNode(namespace=ns, context=ctx, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"task": "reach-v3", "layout": 45, "size": 64, "max_steps": 2,
                                           "instructions": "heldout", "action_timeout": 30.0}.items()])
    nodes.append(sim)
    ex.add_node(sim)
    assert wait_for(lambda: got["image"] and got["joints"] and got["instruction"])
    frame = got["image"][0]
    assert (frame.encoding, frame.height, frame.width) == ("rgb8", 64, 64)
    assert got["joints"][0].name == SAWYER_JOINTS and len(got["joints"][0].velocity) == 9
    assert got["joints"][0].header.stamp == frame.header.stamp
    from trimodal_ros.data.instructions import paraphrases
    assert got["instruction"][0].data in paraphrases("reach-v3", "heldout")
    t0 = stamp_to_sec(frame.header.stamp)
    assert wait_for(lambda: got["clock"] and stamp_to_sec(got["clock"][-1].clock) == t0)
    assert wait_for(lambda: client.get_clock().now().nanoseconds == round(t0 * 1e9))  # use_sim_time follows

    # wrong size / non-finite, stamped for the current frame: refused, counted, env not stepped
    good = [[0.1, 0.0, 0.0, 0.0]] * 4
    for bad in (trajectory(frame.header.stamp, [[0.0] * 3] * 4, ACTION_NAMES[:3]),
                trajectory(frame.header.stamp, [[0.0] * 5] * 4),
                trajectory(frame.header.stamp, [[float("inf"), 0.0, 0.0, 0.0]])):
        act.publish(bad)
    assert wait_for(lambda: sim.counts()["refused_actions"] == 3)
    time.sleep(0.2)
    c = sim.counts()
    assert c["steps"] == 0 and c["frames"] == 1 and len(got["image"]) == 1

    # a fresh action steps once and brings the next frame, one control period later in sim time
    act.publish(trajectory(frame.header.stamp, good))
    assert wait_for(lambda: len(got["image"]) == 2)
    assert stamp_to_sec(got["image"][1].header.stamp) == pytest.approx(t0 + 0.0125, abs=1e-9)
    # an answer to the old frame is stale: ignored and counted
    act.publish(trajectory(frame.header.stamp, good))
    assert wait_for(lambda: sim.counts()["stale_actions"] == 1)
    assert sim.counts()["steps"] == 1
    # the second step ends the episode (max_steps=2): reported on sim/episode
    act.publish(trajectory(got["image"][1].header.stamp, good))
    assert wait_for(lambda: got["episode"])
    ep = json.loads(got["episode"][0].data)
    assert ep["task"] == "reach-v3" and ep["layout"] == 45 and ep["length"] == 2 and ep["ticks"] == 2
    assert ep["refused_actions"] == 3 and ep["stale_actions"] == 1 and isinstance(ep["success"], bool)
    np.testing.assert_allclose(sim.trace(0), [good[0], good[0]])
    # autostart: the next episode began, its sim time continuing (never back to t0)
    assert wait_for(lambda: len(got["image"]) == 3)
    assert stamp_to_sec(got["image"][2].header.stamp) > stamp_to_sec(got["image"][1].header.stamp)
    # sim/reset restarts on the layout and with the command asked for
    reset = client.create_publisher(String, f"{ns}/sim/reset", 10)
    assert wait_for(lambda: reset.get_subscription_count() > 0)
    reset.publish(String(data=json.dumps({"layout": 41, "instruction": "touch the goal"})))
    assert wait_for(lambda: got["instruction"][-1].data == "touch the goal" and len(got["image"]) == 4)
    assert sim._stepper.layout == 41
    # malformed resets are refused and counted; the simulation goes on
    for bad in ('{"layout": 1.5}', '"abc"', '{"instruction": 5}', '{"layout": -1}', '{"layuot": 3}', "{"):
        reset.publish(String(data=bad))
    assert wait_for(lambda: sim.counts()["bad_resets"] == 6), sim.counts()
    assert sim._thread.is_alive() and sim._stepper.layout == 41
    n = len(got["image"])
    act.publish(trajectory(got["image"][-1].header.stamp, good))
    assert wait_for(lambda: len(got["image"]) == n + 1)  # still stepping
    with pytest.raises(ValueError, match="layout"):
        sim.start_episode(layout=-1)


def test_a_long_running_sim_keeps_bounded_history(ros, monkeypatch):
    import trimodal_lab.ros.sim_node as sn

    ctx, ex, client, nodes = ros
    monkeypatch.setattr(sn, "KEEP", 2)
    got = []
    client.create_subscription(Image, "/bounded/camera/image_raw", got.append, 10)
    act = client.create_publisher(JointTrajectory, "/bounded/trimodal/action", 10)
    sim = SimNode(namespace="/bounded", context=ctx, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"task": "reach-v3", "layout": 41, "size": 32, "max_steps": 1,
                                           "action_timeout": 30.0}.items()])
    nodes.append(sim)
    ex.add_node(sim)
    for n in range(4):  # four one-step episodes, autostarted back to back
        assert wait_for(lambda: len(got) > n)
        act.publish(trajectory(got[n].header.stamp, [[0.0, 0.0, 0.0, 0.0]]))
        assert wait_for(lambda: sim.episodes_done == n + 1)
    assert len(sim.outcomes) == len(sim.traces) == 2 and sim.outcome(3)["episode"] == 3
    with pytest.raises(IndexError):
        sim.outcome(0)


def test_rollout_cli_writes_report(tmp_path, capsys):
    from trimodal_ros.cli import main

    assert main(["rollout", "--tasks", "reach-v3", "--episodes", "1", "--max-steps", "4", "--size", "64",
                 "--through-ros", "--out", str(tmp_path), "--device", "cpu"]) == 0
    rep = json.loads((tmp_path / "rollout.json").read_text())
    b = rep["through_ros"]["per_task"]["reach-v3"]
    assert b["episodes"] == 1 and b["mean_length"] <= 4 and b["control_rate_hz"] > 0
    assert rep["settings"]["ensemble_override"] is None
    assert "reach-v3" in capsys.readouterr().out
    # an in-process-only override would make the two paths differ: refused
    assert main(["rollout", "--tasks", "reach-v3", "--episodes", "1", "--compare", "--no-ensemble"]) == 1
    assert "in-process policy" in capsys.readouterr().out
