"""vla_node over real DDS: inputs from a separate node, outputs checked for type, shape and stamp for
every fusion variant; bad and stale inputs survived and counted, every frame accounted for; QoS that
ordinary publishers can reach; parameters that validate and take effect; lifecycle; diagnostics
levels. One rclpy context per module; each test uses its own namespace."""

import dataclasses
import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy._rclpy_pybind11 import InvalidHandle, RCLError
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trimodal_ros_interfaces.msg import ActionTokens, Embedding, FrameScores
from trajectory_msgs.msg import JointTrajectory

from trimodal_ros import interface as I
from trimodal_ros.config import load_config, resolve_config_path
from trimodal_ros.schema import ConfigError
from trimodal_ros.model.fusion import FUSIONS
from trimodal_ros.ros.conversions import (
    compressed_image_to_msg,
    duration_to_sec,
    image_to_msg,
    joints_to_msg,
    tokens_from_msg,
    qos_profile,
    sec_to_stamp,
    stamp_to_sec,
    trajectory_to_numpy,
)
from trimodal_ros.ros.ledger import FRAME_OUTCOMES
from trimodal_ros.ros.vla_node import VLANode
from trimodal_ros.utils import wait_for

pytestmark = pytest.mark.ros
JOINTS = I.SAWYER_JOINTS


class Ros:
    """One context, one executor spinning in a thread, one client node for the test's side. After
    each test its nodes and client go (``reset``): left in the executor, every earlier test's node
    would keep publishing diagnostics to every earlier harness, and on 2 loaded cores the callbacks
    fall behind the test that is running."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.nodes, self.kept, self.stopping = [], [], threading.Event()
        self._start()

    def _start(self):
        self.client = rclpy.create_node("test_client", context=self.context)
        self.executor.add_node(self.client)
        self.stopping.clear()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        """executor.spin, surviving a lifecycle transition the test thread triggers: its cleanup can
        destroy a subscription while this thread builds a wait set (a node's own transitions run on
        its executor and cannot race that way)."""
        while self.context.ok() and not self.stopping.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (InvalidHandle, RCLError):  # an entity the test thread destroyed mid-wait (an action client)
                continue
            except (ShutdownException, ExternalShutdownException):
                return

    def vla_node(self, namespace, **params):
        params.setdefault("allow_random_weights", True)
        node = VLANode(namespace=namespace, context=self.context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def _stop(self, kept=()):
        self.stopping.set()
        self.thread.join(timeout=10)
        for n in self.nodes + [self.client, *kept]:
            self.executor.remove_node(n)
            n.destroy_node()
        self.nodes = []

    def reset(self):
        """The test's nodes and client destroyed, a fresh client spinning."""
        self._stop()
        self._start()

    def keep(self):
        """The nodes and client made so far stay until the module ends (a module-scoped fixture's)."""
        self.kept += self.nodes + [self.client]
        self.nodes = []
        self.client = rclpy.create_node("test_client", context=self.context)
        self.executor.add_node(self.client)

    def close(self):
        self._stop(self.kept)
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


class Harness:
    """Publishers for a vla_node's inputs and collectors for its outputs, under one namespace."""

    def __init__(self, ros, ns, instruction_qos=I.LATCHED, joints_qos=I.RELIABLE, compressed=False):
        c, self.ns = ros.client, ns
        self.instruction = c.create_publisher(String, f"{ns}/instruction", qos_profile(instruction_qos))
        self.joints = c.create_publisher(JointState, f"{ns}/joint_states", qos_profile(joints_qos))
        self.compressed = compressed
        depth = 50  # a reliable subscriber on a loaded CPU acknowledges late: keep every frame until it does
        self.image = (c.create_publisher(CompressedImage, f"{ns}/camera/image_raw/compressed", depth) if compressed
                      else c.create_publisher(Image, f"{ns}/camera/image_raw", depth))
        self.got = {"action": [], "hold": [], "tokens": [], "embedding": [], "diagnostics": [], "levels": []}
        c.create_subscription(JointTrajectory, f"{ns}/trimodal/action",  # holds (no points) apart
                              lambda m: self.got["action" if m.points else "hold"].append(m), 10)
        c.create_subscription(ActionTokens, f"{ns}/trimodal/action_tokens", self.got["tokens"].append, 10)
        c.create_subscription(Embedding, f"{ns}/trimodal/embedding", self.got["embedding"].append, 10)
        c.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.startswith(f"{self.ns}/vla_node"):
                self.got["diagnostics"].append({kv.key: kv.value for kv in s.values})
                self.got["levels"].append((s.level[0] if isinstance(s.level, bytes) else s.level, s.message))

    def connected(self):
        return all(p.get_subscription_count() > 0 for p in (self.instruction, self.joints, self.image))

    def step(self, t, joint_t=None, rgb=None, positions=None):
        """One joint state (stamped ``joint_t``, default ``t``) then one camera frame stamped ``t``."""
        pos = np.linspace(-0.5, 0.5, 9) if positions is None else positions
        self.joints.publish(joints_to_msg(JOINTS, pos, np.zeros(9), sec_to_stamp(t if joint_t is None else joint_t)))
        if rgb is None:
            rgb = np.random.default_rng(int(t * 100)).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        self.image.publish(compressed_image_to_msg(rgb, "png", sec_to_stamp(t)) if self.compressed
                           else image_to_msg(rgb, sec_to_stamp(t)))

    def drive_until(self, t0, key="action", n_min=1, period=0.15, timeout=30.0):
        """Publish steps until ``n_min`` new ``key`` outputs came back (best-effort images may be lost)."""
        sent, t, start = [], t0, len(self.got[key])
        end = time.monotonic() + timeout
        while len(self.got[key]) - start < n_min and time.monotonic() < end:
            self.step(t)
            sent.append(t)
            t = round(t + 0.05, 3)
            time.sleep(period)
        return sent


def settled(node):
    """Wait until no frame is in flight; the ledger's snapshot then."""
    assert wait_for(lambda: node.ledger.snapshot()["in_flight"] == 0, timeout=10)
    return node.ledger.snapshot()


@pytest.fixture(scope="module")
def ros_graph():
    r = Ros()
    yield r
    r.close()


@pytest.fixture
def ros(ros_graph):
    """The module's context and executor, with none of an earlier test's nodes."""
    yield ros_graph
    ros_graph.reset()


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_outputs_for_every_fusion(ros, fusion):
    ns = f"/f_{fusion}"
    h = Harness(ros, ns)
    h.instruction.publish(String(data="push the red button"))  # before the node exists: latched
    node = ros.vla_node(ns, fusion=fusion)
    cfg = load_config(fusion).model
    assert node.policy.random_weights and node.policy.model_config.fusion == fusion
    assert wait_for(h.connected)
    sent = h.drive_until(100.0, n_min=2)
    assert wait_for(lambda: len(h.got["embedding"]) >= 2 and len(h.got["tokens"]) >= 2)

    for traj in h.got["action"]:
        assert stamp_to_sec(traj.header.stamp) in sent  # the camera frame's own stamp
        assert traj.joint_names == I.ACTION_NAMES
        a = trajectory_to_numpy(traj)
        assert a.shape == (cfg.chunk, cfg.action_dim) and np.all(np.abs(a) <= 1.0)
        assert [round(duration_to_sec(p.time_from_start), 6) for p in traj.points] == \
            [round(0.0125 * (k + 1), 6) for k in range(cfg.chunk)]
    emb = h.got["embedding"][0]
    assert emb.random_weights and emb.fusion == fusion and stamp_to_sec(emb.header.stamp) in sent
    assert np.asarray(emb.data).shape == (cfg.embed_dim,) and np.all(np.isfinite(emb.data))
    first = h.got["tokens"][0]
    tok = tokens_from_msg(first)
    assert first.random_weights and first.bins == cfg.bins and first.header.stamp == emb.header.stamp
    assert emb.header.frame_id == first.header.frame_id == h.got["action"][0].header.frame_id == "camera"
    assert tok.shape == (cfg.chunk, cfg.action_dim) and tok.min() >= 0 and tok.max() < cfg.bins
    # tokens and actions agree: the action is the tokenizer's decode of the tokens
    np.testing.assert_allclose(node.policy.tokenizer.decode(tok), trajectory_to_numpy(h.got["action"][0]), atol=1e-6)


def test_no_checkpoint_publishes_no_action_unless_allowed(ros):
    h = Harness(ros, "/noact")
    node = ros.vla_node("/noact", allow_random_weights=False)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    h.drive_until(1.0, key="tokens", n_min=3)
    assert len(h.got["tokens"]) >= 3 and len(h.got["embedding"]) >= 3
    time.sleep(0.3)
    assert h.got["action"] == []  # a robot never gets random actions by default
    assert wait_for(lambda: h.got["levels"] and "RANDOM WEIGHTS" in h.got["levels"][-1][1], timeout=5)
    assert node.policy.random_weights


def test_namespace_moves_every_relative_topic(ros):
    ns = "/robot_ns/arm"
    ros.vla_node(ns, fusion="concat_mlp")
    expected_pubs = {f"{ns}/trimodal/embedding", f"{ns}/trimodal/action_tokens", f"{ns}/trimodal/action",
                     "/diagnostics"}
    expected_subs = {f"{ns}/camera/image_raw", f"{ns}/instruction", f"{ns}/joint_states"}

    def names():
        pubs = {n for n, _ in ros.client.get_publisher_names_and_types_by_node("vla_node", ns)}
        subs = {n for n, _ in ros.client.get_subscriber_names_and_types_by_node("vla_node", ns)}
        return pubs, subs

    assert wait_for(lambda: expected_pubs <= names()[0] and expected_subs <= names()[1], timeout=10)


@pytest.fixture(scope="module")
def bad(ros_graph):
    ros = ros_graph
    h = Harness(ros, "/bad")
    # reliable and deep enough that a loaded CPU loses none of the frames the accounting test counts
    node = ros.vla_node("/bad", fusion="weighted_sum", max_input_age=0.5, image_qos_reliability="reliable",
                        image_qos_depth=50)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="open the drawer"))
    h.drive_until(10.0)
    ros.keep()
    return node, h


def test_bad_inputs_are_survived_counted_and_every_frame_accounted_for(bad):
    node, h = bad
    before = settled(node)
    enc = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    enc.encoding = "nv21"
    short = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    short.data = bytes(10)  # != height * step
    sends = [(h.instruction, String(data="x" * 100_000)),  # latched: reaches both subscriptions, counts once
             (h.joints, joints_to_msg(JOINTS, [float("nan")] * 9)),
             (h.joints, joints_to_msg(JOINTS[:5], [0.0] * 5)),
             (h.joints, joints_to_msg(["wheel_left", "wheel_right"], [0.0, 0.0]))]
    for pub, msg in sends:
        pub.publish(msg)
        time.sleep(0.1)
    t = 12.0
    for k in range(12):  # good frames with malformed ones mixed in (reliable camera: none lost)
        h.step(t)
        h.image.publish(enc if k % 2 else short)
        t = round(t + 0.05, 3)
        time.sleep(0.05)
    want = {"bad_image": 12, "bad_instruction": 1, "nan_joints": 1, "missing_joints": 1, "unknown_joint_names": 1,
            "frames_in": 24}  # every frame delivered (a loaded CPU can hold the last good one back)
    exact = dict(want, bad_image=12)
    assert wait_for(lambda: all(node.ledger.snapshot()[k] - before[k] >= n for k, n in want.items()), timeout=15), \
        node.ledger.snapshot()
    c = settled(node)
    time.sleep(0.3)
    assert {k: node.ledger.snapshot()[k] - before[k] for k in exact} == exact  # each counted exactly once
    # the identity: every frame that came in ended in exactly one counted outcome
    assert c["frames_in"] == sum(c[k] for k in FRAME_OUTCOMES) and c["unaccounted"] == 0, c
    assert c["frames_in"] - before["frames_in"] == 24 and c["bad_image"] - before["bad_image"] == 12
    assert c["outputs"] > before["outputs"]
    # still alive, and still on the last good instruction
    n = len(h.got["action"])
    h.drive_until(20.0)
    assert len(h.got["action"]) > n and node.instruction() == "open the drawer"
    # and the counters reach /diagnostics (published at 1 Hz)
    assert wait_for(lambda: h.got["diagnostics"] and int(h.got["diagnostics"][-1]["nan_joints"]) >= 1 and
                    int(h.got["diagnostics"][-1]["bad_image"]) >= 12, timeout=5)
    d = h.got["diagnostics"][-1]
    assert d["random_weights"] == "true" and d["fusion"] == "weighted_sum" and d["unaccounted"] == "0"
    assert float(d["latency_p50_ms"]) > 0 and "replaced" in d and "image_rate_hz" in d


def test_log_lines_of_every_severity_can_follow_each_other(bad):
    """rclpy refuses a logging call site whose severity changes; an info line ("waiting for an
    instruction") followed by a warning (bad input) once killed the inference worker."""
    node, _ = bad
    node._log("sev_info", "first, at info", level="info", every=0)
    node._log("sev_warning", "then a warning", every=0)
    node._log("sev_error", "then an error", level="error", every=0)
    node._log("sev_info2", "and info again", level="info", every=0)


def test_stale_joint_state_stops_output_until_fresh(bad):
    node, h = bad
    stale_before = node.ledger.snapshot()["stale_joint_state"]
    h.drive_until(29.5)
    n, holds = len(h.got["action"]), len(h.got["hold"])
    for k in range(4):  # joint state 1 s older than the frame > max_input_age 0.5 s
        h.step(30.0 + k * 0.1, joint_t=29.0)
        time.sleep(0.15)
    assert wait_for(lambda: node.ledger.snapshot()["stale_joint_state"] > stale_before, timeout=10)
    time.sleep(0.5)
    assert len(h.got["action"]) == n  # no action while stale ...
    assert len(h.got["hold"]) == holds + 1  # ... but one hold, once, for the controller
    assert list(h.got["hold"][-1].joint_names) == I.ACTION_NAMES
    h.drive_until(31.0)  # fresh again
    assert len(h.got["action"]) > n
    assert stamp_to_sec(h.got["action"][-1].header.stamp) >= 31.0


def test_joint_buffer_spans_max_input_age_at_high_rates(bad):
    """At 1 kHz the buffer must still hold max_input_age seconds (it once held 200 messages)."""
    node, _ = bad
    for k in range(1500):  # 1.5 s of joint states at 1 kHz
        node._on_joints(joints_to_msg(JOINTS, np.zeros(9), np.zeros(9), sec_to_stamp(40.0 + k * 1e-3)))
    assert node.inputs.span() >= node.params["max_input_age"]


def test_new_frame_replaces_a_pending_one(ros):
    """A burst faster than the model: frames are replaced, counted, and never queue up."""
    h = Harness(ros, "/burst")
    node = ros.vla_node("/burst", fusion="cross_attention", image_qos_reliability="reliable", image_qos_depth=50)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    h.drive_until(1.0)
    h.joints.publish(joints_to_msg(JOINTS, np.zeros(9), np.zeros(9), sec_to_stamp(2.0)))
    time.sleep(0.3)  # one fresh joint state for the whole burst
    n0 = settled(node)
    rgb = np.zeros((48, 64, 3), np.uint8)
    for k in range(30):
        h.image.publish(image_to_msg(rgb, sec_to_stamp(2.0 + k * 0.01)))
    assert wait_for(lambda: node.ledger.snapshot()["frames_in"] >= n0["frames_in"] + 30, timeout=20)
    c = settled(node)
    assert c["replaced"] > n0["replaced"] and c["unaccounted"] == 0
    assert c["replaced"] - n0["replaced"] + c["outputs"] - n0["outputs"] == 30
    # the last frame of the burst is never the one dropped
    assert wait_for(lambda: stamp_to_sec(h.got["action"][-1].header.stamp) == 2.29, timeout=10)


def test_rate_mode_uses_each_frame_once_and_drops_stale_ones(ros):
    """rate_hz > 0: the newest frame is released at that rate, each frame at most once; a frame
    older than max_input_age when its tick comes is counted stale, never used."""
    h = Harness(ros, "/rate")
    node = ros.vla_node("/rate", fusion="concat_mlp", rate_hz=5.0, max_input_age=0.1,
                        image_qos_reliability="reliable")
    assert wait_for(h.connected)
    h.instruction.publish(String(data="slide the plate"))
    assert wait_for(lambda: node.instruction() == "slide the plate", timeout=10)
    before = settled(node)
    t0 = time.monotonic()
    for k in range(8):  # a 40 Hz burst: each 5 Hz tick takes at most one of them, the rest are replaced
        h.step(50.0 + k * 0.025)
        time.sleep(0.025)
    ticks = int((time.monotonic() - t0) * 5.0) + 1  # the ticks that can fall inside the burst (~0.25 s)
    assert wait_for(lambda: node.ledger.snapshot()["frames_in"] - before["frames_in"] == 8, timeout=10)
    time.sleep(0.5)
    c = settled(node)
    outs, stale = c["outputs"] - before["outputs"], c["stale_image"] - before["stale_image"]
    assert 1 <= outs <= ticks + 1 and c["replaced"] - before["replaced"] >= 8 - outs - stale
    assert c["unaccounted"] == 0
    assert len({stamp_to_sec(a.header.stamp) for a in h.got["action"]}) == len(h.got["action"])  # each frame once
    # a single frame that sits longer than max_input_age before a tick: stale (rate 1 Hz)
    node.set_parameters([Parameter("rate_hz", value=1.0)])
    before = settled(node)
    time.sleep(1.1)  # the 1 Hz tick fires with an empty slot first
    h.step(60.0)
    assert wait_for(lambda: node.ledger.snapshot()["stale_image"] > before["stale_image"] or
                    node.ledger.snapshot()["outputs"] > before["outputs"], timeout=5)
    c = settled(node)
    assert c["stale_image"] + c["outputs"] - before["stale_image"] - before["outputs"] == 1


def test_instruction_reaches_the_node_from_volatile_and_latched_publishers(ros):
    """A planner's ordinary publisher (volatile) and a latched one both reach the node; a message
    from a latched publisher, delivered through both subscriptions, counts once."""
    h = Harness(ros, "/qos_v", instruction_qos=I.RELIABLE, joints_qos=I.Qos("best_effort", "volatile", 10))
    node = ros.vla_node("/qos_v")
    assert wait_for(h.connected)
    n0 = node.ledger.snapshot()["instructions"]
    assert wait_for(lambda: (h.instruction.publish(String(data="close the window")) or
                             node.instruction() == "close the window"), timeout=10, every=0.3)
    assert h.drive_until(1.0)  # best-effort joint states matched too: outputs flow
    latched = ros.client.create_publisher(String, "/qos_v/instruction", qos_profile(I.LATCHED))
    assert wait_for(lambda: latched.get_subscription_count() == 2)  # both of the node's subscriptions
    n1 = node.ledger.snapshot()["instructions"]
    assert n1 > n0
    latched.publish(String(data="open the door"))
    assert wait_for(lambda: node.instruction() == "open the door", timeout=5)
    time.sleep(0.3)
    assert node.ledger.snapshot()["instructions"] == n1 + 1


def test_empty_instruction_stops_and_timeout_ends_a_task(ros):
    h = Harness(ros, "/stop")
    node = ros.vla_node("/stop", instruction_timeout=0.0)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    assert h.drive_until(1.0) and node.instruction() == "push the puck"
    h.instruction.publish(String(data=""))
    assert wait_for(lambda: node.instruction() is None, timeout=5)
    n, before = len(h.got["action"]), settled(node)
    for k in range(3):
        h.step(2.0 + 0.05 * k)
        time.sleep(0.1)
    assert wait_for(lambda: settled(node)["waiting_for_instruction"] - before["waiting_for_instruction"] >= 1)
    assert len(h.got["action"]) == n  # stopped: nothing published
    node.set_parameters([Parameter("instruction_timeout", value=0.3)])
    h.instruction.publish(String(data="push the puck"))
    assert wait_for(lambda: node.instruction() == "push the puck", timeout=5)
    time.sleep(0.5)
    h.step(3.0)
    assert wait_for(lambda: node.ledger.snapshot()["instruction_timeouts"] >= 1, timeout=5)
    assert node.instruction() is None


def test_parameters_validate_and_take_effect(ros):
    node = ros.vla_node("/params", rate_hz=0.0)
    ok = node.set_parameters([Parameter("rate_hz", value=5)])[0]  # an int for a rate is fine
    assert ok.successful and node.params["rate_hz"] == 5.0 and node._timer is not None
    # ... and the parameter stays a double (`ros2 param get` shows 5.0), its range still applies
    assert node.get_parameter("rate_hz").type_ == Parameter.Type.DOUBLE and node.get_parameter("rate_hz").value == 5.0
    assert not node.set_parameters([Parameter("rate_hz", value=5000)])[0].successful
    for name, value in (("rate_hz", float("inf")), ("control_period", float("nan")), ("max_input_age", -1.0)):
        r = node.set_parameters([Parameter(name, value=value)])[0]
        assert not r.successful and name in r.reason
    r = node.set_parameters([Parameter("fusion", value="qformer")])[0]
    assert not r.successful and "read-only" in r.reason
    assert node.params["rate_hz"] == 5.0 and node.params["fusion"] != "qformer"
    # one descriptor per parameter: `ros2 param describe rate_hz` names rate_hz, not another one
    d = node.describe_parameters(["rate_hz", "fusion", "seed"])
    assert [x.name for x in d] == ["rate_hz", "fusion", "seed"] and d[1].read_only and not d[0].read_only
    assert "inference rate" in d[0].description and d[0].floating_point_range[0].to_value == 1000.0
    with pytest.raises(ValueError, match="rate_hz"):
        VLANode(namespace="/params_bad", context=ros.context,
                parameter_overrides=[Parameter("rate_hz", value=float("inf"))])
    # `ros2 run trimodal_ros vla_node --ros-args -p max_input_age:=1` (an integer override) starts, as a double
    node = ros.vla_node("/params_int", max_input_age=1)
    assert node.get_parameter("max_input_age").type_ == Parameter.Type.DOUBLE and node.params["max_input_age"] == 1.0


def test_lifecycle_configure_activate_deactivate_cleanup(ros):
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn

    h = Harness(ros, "/lc")
    node = ros.vla_node("/lc", autostart=False)
    assert node.policy is None and node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.policy is not None  # the model loads in configure
    assert wait_for(h.connected)
    h.instruction.publish(String(data="open the drawer"))
    before = settled(node)
    for k in range(3):
        h.step(1.0 + 0.05 * k)
        time.sleep(0.1)
    assert wait_for(lambda: node.ledger.snapshot()["inactive"] - before["inactive"] >= 1)
    assert h.got["action"] == []  # configured but not active: nothing out
    node.trigger_activate()
    assert h.drive_until(2.0)
    node.trigger_deactivate()
    assert node.policy is not None  # deactivate keeps the model
    assert wait_for(lambda: len(h.got["hold"]) == 1)  # sent after every action: none is still on its way
    n = len(h.got["action"])
    time.sleep(0.3)
    for k in range(3):
        h.step(3.0 + 0.05 * k)
        time.sleep(0.1)
    time.sleep(0.3)
    assert len(h.got["action"]) == n
    node.trigger_cleanup()
    assert node.policy is None and node._camera is None  # cleanup frees the model and the topics
    # configured again (a new policy object, e.g. a replaced checkpoint file), the task in force reaches it
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    assert wait_for(h.connected)
    errors = node.ledger.snapshot()["inference_errors"]
    assert h.drive_until(4.0) and node.ledger.snapshot()["inference_errors"] == errors


def test_a_camera_that_falls_silent_gets_the_robot_held(ros):
    """No frame, no inference, so no stale frame would ever ask for a hold: the diagnostics timer
    sends it when the camera has been silent long enough to report STALE."""
    h = Harness(ros, "/silent")
    node = ros.vla_node("/silent", max_input_age=0.25)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    assert h.drive_until(1.0)
    assert h.got["hold"] == [] and wait_for(lambda: len(h.got["hold"]) == 1, timeout=6)
    assert wait_for(lambda: h.got["levels"] and h.got["levels"][-1][0] == 3)  # STALE
    assert node.ledger.snapshot()["holds"] == 1


def test_diagnostics_go_stale_without_camera_and_error_when_every_frame_fails(ros):
    h = Harness(ros, "/diag")
    node = ros.vla_node("/diag", max_input_age=0.25)
    assert wait_for(lambda: h.got["levels"] and h.got["levels"][-1][0] == 3, timeout=20)  # STALE: no camera yet
    assert wait_for(h.connected)
    h.instruction.publish(String(data="open the drawer"))
    bad = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    bad.encoding = "nv21"
    end = time.monotonic() + 8
    while time.monotonic() < end and not (h.got["levels"] and h.got["levels"][-1][0] == 2):
        h.image.publish(bad)
        time.sleep(0.05)
    assert h.got["levels"][-1][0] == 2 and "bad_image" in h.got["levels"][-1][1]  # ERROR, and why
    assert node.ledger.snapshot()["outputs"] == 0


def test_compressed_images_give_the_same_output_as_raw(ros):
    """image_transport=compressed: PNG (lossless) frames give exactly the raw frames' tokens."""
    hr, hc = Harness(ros, "/raw"), Harness(ros, "/cmp", compressed=True)
    ros.vla_node("/raw", image_qos_reliability="reliable")
    ros.vla_node("/cmp", image_transport="compressed", image_qos_reliability="reliable")
    assert wait_for(lambda: hr.connected() and hc.connected())
    for h in (hr, hc):
        h.instruction.publish(String(data="press the button"))
        h.drive_until(5.0, n_min=3)
    stamps = lambda h: {stamp_to_sec(a.header.stamp): trajectory_to_numpy(a) for a in h.got["action"]}  # noqa: E731
    common = sorted(set(stamps(hr)) & set(stamps(hc)))
    assert common, (stamps(hr).keys(), stamps(hc).keys())
    for t in common:
        np.testing.assert_array_equal(stamps(hr)[t], stamps(hc)[t])


def test_checkpoint_for_another_fusion_is_a_clear_error(ros, tmp_path):
    import torch

    from trimodal_ros.checkpoint import CheckpointError, save_checkpoint
    from trimodal_ros.model.action_tokenizer import ActionTokenizer
    from trimodal_ros.model.trimodal import TriModalModel

    cfg = load_config("concat_mlp")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "c.pt", TriModalModel(cfg.model), cfg,
                           ActionTokenizer(-np.ones(4), np.ones(4), cfg.model.bins))
    with pytest.raises(CheckpointError, match="concat_mlp"):
        VLANode(namespace="/ckpt_bad", context=ros.context,
                parameter_overrides=[Parameter("fusion", value="qformer"), Parameter("checkpoint", value=str(path))])
    node = ros.vla_node("/ckpt_ok", fusion="concat_mlp", checkpoint=str(path))
    assert not node.policy.random_weights
    # no fusion named: the checkpoint's (serving from the checkpoint alone)
    node = ros.vla_node("/ckpt_alone", checkpoint=str(path))
    assert node.policy.model_config.fusion == "concat_mlp" and not node.policy.random_weights


def test_best_effort_reader_qos_is_what_the_interface_says():
    assert qos_profile(I.JOINTS_QOS).reliability == ReliabilityPolicy.BEST_EFFORT
    assert isinstance(qos_profile(I.LATCHED), QoSProfile)


def test_a_second_named_camera_is_subscribed_aligned_and_used(ros, tmp_path):
    """A model with cameras [camera, top_camera]: vla_node also subscribes top_camera/image_raw; a
    primary frame waits (counted) until the other camera has a frame at or before its stamp, then
    both views reach the model (a different top view gives a different embedding); bad frames of
    the other camera are counted; the ledger stays balanced."""
    cfg = tmp_path / "two_cameras.yaml"
    cfg.write_text(resolve_config_path("weighted_sum").read_text()
                   .replace("model:\n", "model:\n  cameras: [camera, top_camera]\n", 1))
    ns = "/two_cams"
    h = Harness(ros, ns)
    top = ros.client.create_publisher(Image, f"{ns}/top_camera/image_raw", 10)
    node = ros.vla_node(ns, config=str(cfg), image_qos_reliability="reliable")
    assert node.cameras == ["camera", "top_camera"]
    assert wait_for(lambda: h.connected() and top.get_subscription_count() > 0)
    h.instruction.publish(String(data="reach the goal"))
    before = settled(node)
    h.step(1.0)  # no top_camera frame yet: held back
    assert wait_for(lambda: node.ledger.snapshot()["waiting_for_camera"] > before["waiting_for_camera"], timeout=10)
    assert len(h.got["action"]) == 0
    bad = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    bad.encoding = "nv21"
    top.publish(bad)
    assert wait_for(lambda: node.ledger.snapshot()["bad_secondary_image"] == before["bad_secondary_image"] + 1)
    rng = np.random.default_rng(0)
    primary = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for k, t in enumerate((2.0, 3.0, 4.0)):  # same primary view and joints; the top view differs at t=3
        view = np.full((48, 64, 3), 255 if k == 1 else 0, np.uint8)
        top.publish(image_to_msg(view, sec_to_stamp(t)))
        time.sleep(0.2)
        h.step(t, rgb=primary)
        assert wait_for(lambda: len(h.got["embedding"]) == k + 1, timeout=10), node.ledger.snapshot()
    e = [np.asarray(m.data) for m in h.got["embedding"]]
    assert not np.allclose(e[0], e[1]) and np.allclose(e[0], e[2], atol=1e-6)
    assert [stamp_to_sec(a.header.stamp) for a in h.got["action"]] == [2.0, 3.0, 4.0]
    c = settled(node)
    assert c["frames_in"] == sum(c[k] for k in FRAME_OUTCOMES) and c["unaccounted"] == 0, c
    assert wait_for(lambda: any(d.get("cameras") == "camera top_camera" for d in h.got["diagnostics"]), timeout=5)


@pytest.mark.parametrize("last", ["", "close the drawer"])
def test_the_last_instruction_sent_is_in_force_whatever_the_delivery_order(ros, last):
    """A latched publisher's message reaches both instruction subscriptions (latched depth 1 and
    volatile depth 10), so two messages sent back to back arrive interleaved across them. The last
    one sent must be in force after each pair: a command then a stop ends stopped, a stop then a
    command ends running."""
    ns = "/order_" + ("stop" if last == "" else "go")
    pub = ros.client.create_publisher(String, f"{ns}/instruction", qos_profile(I.LATCHED))
    node = ros.vla_node(ns)
    assert wait_for(lambda: pub.get_subscription_count() == 2)
    first = "open the drawer" if last == "" else ""
    want = last or None
    for k in range(5):
        pub.publish(String(data=first))
        pub.publish(String(data=last))
        time.sleep(0.5)
        assert node.instruction() == want, f"pair {k}: {node.instruction()!r} in force, {want!r} sent last"


def test_a_repeated_instruction_goes_on_with_the_task(ros):
    """``ros2 topic pub`` re-sends its message every second: the same words again keep the task (and
    the policy's action history) going; other words start a new one."""
    h = Harness(ros, "/repeat", instruction_qos=I.RELIABLE)
    node = ros.vla_node("/repeat")
    assert wait_for(h.connected)
    assert wait_for(lambda: (h.instruction.publish(String(data="open the window")) or
                             node.instruction() == "open the window"), timeout=10, every=0.3)
    time.sleep(0.5)  # the polling loop's later messages arrive
    gen, n = node.inputs.task()[0], node.ledger.snapshot()["instructions"]
    for _ in range(3):
        h.instruction.publish(String(data="open the window"))
        time.sleep(0.2)
    assert wait_for(lambda: node.ledger.snapshot()["instructions"] == n + 3)
    assert node.inputs.task()[0] == gen
    h.instruction.publish(String(data="close the window"))
    assert wait_for(lambda: node.instruction() == "close the window") and node.inputs.task()[0] == gen + 1


def test_hold_on_stop_pause_and_deactivate_and_the_services(ros):
    """The controller is told to hold (a trajectory with no points) when the task stops, on ~/pause
    and ~/stop, and on deactivate; paused frames are answered by nothing and counted."""
    from std_srvs.srv import SetBool, Trigger

    h = Harness(ros, "/hold")
    node = ros.vla_node("/hold")
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    assert h.drive_until(1.0)
    a = h.got["action"][-1]
    assert all(-1.0 <= x <= 1.0 for p in a.points for x in p.positions)  # the random tokenizer's bounds
    h.instruction.publish(String(data=""))
    assert wait_for(lambda: len(h.got["hold"]) == 1)
    h.instruction.publish(String(data="push the puck"))
    assert h.drive_until(2.0)

    def call(kind, name, **fields):
        cli = ros.client.create_client(kind, f"/hold/vla_node/{name}")
        assert cli.wait_for_service(timeout_sec=5)
        return cli.call_async(kind.Request(**fields))

    fut = call(SetBool, "pause", data=True)
    assert wait_for(fut.done) and fut.result().success and wait_for(lambda: len(h.got["hold"]) == 2)
    n, paused = len(h.got["action"]), node.ledger.snapshot()["paused"]
    for k in range(3):
        h.step(3.0 + 0.05 * k)
        time.sleep(0.1)
    assert wait_for(lambda: node.ledger.snapshot()["paused"] >= paused + 1) and len(h.got["action"]) == n
    fut = call(SetBool, "pause", data=False)
    assert wait_for(fut.done) and h.drive_until(4.0) and node.instruction() == "push the puck"
    fut = call(Trigger, "stop")
    assert wait_for(fut.done) and fut.result().success and node.instruction() is None
    assert wait_for(lambda: len(h.got["hold"]) == 3)
    h.instruction.publish(String(data="push the puck"))
    assert h.drive_until(5.0)
    node.trigger_deactivate()
    assert wait_for(lambda: len(h.got["hold"]) == 4)
    assert node.ledger.snapshot()["holds"] == 4


@pytest.mark.parametrize("how", ["stop", "pause", "deactivate", "cleanup"])
def test_a_hold_is_never_followed_by_the_action_of_a_frame_that_was_in_the_model(ros, how):
    """A stop, pause, deactivate or cleanup (the model and the publishers dropped) that comes while the
    model runs on a frame: the hold is the last thing the controller gets; that frame's action is
    dropped and counted ``overtaken``, not an inference error."""
    ns = f"/overtake_{how}"
    h = Harness(ros, ns)
    sent = []  # what reached the controller, in order
    ros.client.create_subscription(JointTrajectory, f"{ns}/trimodal/action",
                                   lambda m: sent.append("action" if m.points else "hold"), 10)
    node = ros.vla_node(ns)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    assert h.drive_until(1.0) and wait_for(lambda: "action" in sent)
    act, in_model = node.policy.act, threading.Event()

    def slow_act(*args, **kwargs):
        in_model.set()
        time.sleep(0.6)
        return act(*args, **kwargs)

    node.policy.act = slow_act
    before = settled(node)
    h.step(2.0)
    assert in_model.wait(timeout=10)
    if how == "stop":
        node._on_stop(None, type("Response", (), {})())
    elif how == "pause":
        node._on_pause(type("Request", (), {"data": True})(), type("Response", (), {})())
    else:
        node.trigger_deactivate()
        if how == "cleanup":
            node.trigger_cleanup()
            assert node.policy is None
    after = settled(node)
    time.sleep(0.3)  # anything published reaches the client
    assert sent[-1] == "hold", sent
    assert after["overtaken"] == before["overtaken"] + 1 and after["outputs"] == before["outputs"]
    assert after["inference_errors"] == before["inference_errors"]


def test_diagnostics_keep_coming_under_sim_time_without_a_clock(ros):
    """use_sim_time with no /clock (a bag that ended): the node's clock stands still, and
    /diagnostics, which must report the inputs stale, still comes every second."""
    h = Harness(ros, "/noclock")
    ros.vla_node("/noclock", use_sim_time=True)
    # start-up (model, discovery) included: generous, a loaded machine takes its time
    assert wait_for(lambda: len(h.got["diagnostics"]) >= 3, timeout=60)
    n = len(h.got["diagnostics"])  # then they keep coming (about one a second), although the node's clock stands
    assert wait_for(lambda: len(h.got["diagnostics"]) >= n + 2, timeout=8)


def test_arm_and_gripper_from_separate_publishers_are_joined(ros):
    """A driver publishing the arm and a gripper driver publishing the fingers on the same topic: the
    node joins the latest of each (within max_input_age) instead of counting every message
    missing_joints."""
    h = Harness(ros, "/split")
    gripper = ros.client.create_publisher(JointState, "/split/joint_states", qos_profile(I.RELIABLE))
    node = ros.vla_node("/split")
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    n = len(h.got["action"])
    for k in range(40):
        t = 1.0 + 0.05 * k
        h.joints.publish(joints_to_msg(JOINTS[:7], np.zeros(7), np.zeros(7), sec_to_stamp(t)))
        gripper.publish(joints_to_msg(JOINTS[7:], np.zeros(2), np.zeros(2), sec_to_stamp(t)))
        h.image.publish(image_to_msg(np.zeros((48, 64, 3), np.uint8), sec_to_stamp(t + 0.01)))
        time.sleep(0.1)
        if len(h.got["action"]) - n >= 3:
            break
    assert len(h.got["action"]) - n >= 3
    assert node.ledger.snapshot()["missing_joints"] <= 1  # at most the very first arm message, alone


def test_receipt_stamps_serve_drivers_that_stamp_zero(ros):
    """Stamps left zero never pass the age gate against a stamped camera; with input_stamps:=receipt
    every input is timed on arrival and outputs flow."""
    h = Harness(ros, "/zero")
    ros.vla_node("/zero", input_stamps="receipt")
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    n = len(h.got["action"])
    for _ in range(40):
        h.joints.publish(joints_to_msg(JOINTS, np.zeros(9), np.zeros(9)))  # header stamp 0
        h.image.publish(image_to_msg(np.zeros((48, 64, 3), np.uint8), sec_to_stamp(12345.0)))  # another clock
        time.sleep(0.1)
        if len(h.got["action"]) - n >= 3:
            break
    assert len(h.got["action"]) - n >= 3


def test_scores_are_published_and_a_mismatched_instruction_is_held(ros, tiny_checkpoint):
    """Every answered frame publishes [agreement, ood] on trimodal/scores (ood from the statistics
    the checkpoint carries); with min_agreement above every agreement, frames are held and counted
    as instruction_mismatch, and lowering it live resumes the actions."""
    h = Harness(ros, "/scores")
    scores = []
    ros.client.create_subscription(FrameScores, "/scores/trimodal/scores", scores.append, 10)
    node = ros.vla_node("/scores", checkpoint=str(tiny_checkpoint), min_agreement=1.0)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    assert h.drive_until(1.0, key="hold")
    assert wait_for(lambda: scores) and not h.got["action"]
    agreement, ood = scores[-1].agreement, scores[-1].ood
    assert -1.0 <= agreement <= 1.0 and np.isfinite(ood) and ood > 0
    snap = settled(node)
    assert snap["instruction_mismatch"] >= 1 and snap["outputs"] == 0 and snap["unaccounted"] == 0
    node.set_parameters([Parameter("min_agreement", value=-2.0)])
    assert h.drive_until(2.0)
    assert wait_for(lambda: h.got["diagnostics"] and h.got["diagnostics"][-1]["embedding_stats"] == "yes")
    assert -1.0 <= float(h.got["diagnostics"][-1]["agreement"]) <= 1.0


def test_follow_instruction_action_runs_a_goal_until_cancel_timeout_or_replacement(ros):
    """~/follow_instruction: an accepted goal is the task in force (frames acted on come back as
    feedback); cancelling it stops the task and holds; a duration ends it the same way; an
    instruction message replaces it; an inactive node refuses goals."""
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from trimodal_ros_interfaces.action import FollowInstruction

    h = Harness(ros, "/goal")
    node = ros.vla_node("/goal")
    client = ActionClient(ros.client, FollowInstruction, "/goal/vla_node/follow_instruction")
    assert client.wait_for_server(timeout_sec=10) and wait_for(h.connected)
    feedback = []

    def send(instruction, duration=0.0):
        fut = client.send_goal_async(FollowInstruction.Goal(instruction=instruction, duration=duration),
                                     feedback_callback=lambda m: feedback.append(m.feedback))
        assert wait_for(fut.done)
        return fut.result()

    goal = send("reach the goal")
    assert goal.accepted and wait_for(lambda: node.instruction() == "reach the goal")
    assert h.drive_until(1.0, n_min=3)
    assert wait_for(lambda: feedback and feedback[-1].frames >= 1, timeout=10)
    holds = len(h.got["hold"])
    cancel = goal.cancel_goal_async()
    assert wait_for(cancel.done)
    result = goal.get_result_async()
    assert wait_for(result.done)
    assert result.result().status == GoalStatus.STATUS_CANCELED
    assert result.result().result.outcome == FollowInstruction.Result.CANCELLED and result.result().result.frames >= 3
    assert node.instruction() is None and wait_for(lambda: len(h.got["hold"]) == holds + 1)

    timed = send("reach the goal", duration=0.5)
    assert timed.accepted and h.drive_until(2.0)
    result = timed.get_result_async()
    assert wait_for(result.done, timeout=10) and result.result().result.outcome == FollowInstruction.Result.TIMED_OUT
    assert result.result().status == GoalStatus.STATUS_SUCCEEDED and node.instruction() is None

    replaced = send("reach the goal")
    assert replaced.accepted
    h.instruction.publish(String(data="push the puck"))
    result = replaced.get_result_async()
    assert wait_for(result.done, timeout=10) and result.result().result.outcome == FollowInstruction.Result.REPLACED
    assert node.instruction() == "push the puck"

    assert not send("").accepted  # an empty goal is not a task
    node.trigger_deactivate()
    assert not send("reach the goal").accepted
    client.destroy()


def test_deadline_and_liveliness_qos_tell_both_sides_when_messages_stop(ros):
    """output_deadline: a controller requesting a deadline on trimodal/action connects and is told
    when actions stop; input_deadline: the node counts a camera that falls silent, and a publisher
    that offers no deadline cannot connect, which is counted too."""
    from rclpy.duration import Duration as RclDuration
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import QoSProfile

    h = Harness(ros, "/qos")
    node = ros.vla_node("/qos", output_deadline=0.2, output_liveliness_lease=1.0, input_deadline=0.3)
    missed = []
    ros.client.create_subscription(
        JointTrajectory, "/qos/trimodal/action", lambda m: None,
        QoSProfile(depth=10, deadline=RclDuration(seconds=0.5)),
        event_callbacks=SubscriptionEventCallbacks(deadline=lambda e: missed.append(e.total_count)))
    offered = ros.client.get_publishers_info_by_topic("/qos/trimodal/action")
    assert [round(i.qos_profile.deadline.nanoseconds / 1e9, 3) for i in offered] == [0.2]
    # the harness's publishers offer no deadline: the node's camera and joint subscriptions refuse them
    assert wait_for(lambda: node.ledger.snapshot()["incompatible_qos"] >= 1, timeout=10)
    from rclpy.qos import ReliabilityPolicy

    cam = ros.client.create_publisher(Image, "/qos/camera/image_raw", QoSProfile(
        depth=10, deadline=RclDuration(seconds=0.1), reliability=ReliabilityPolicy.RELIABLE))
    joints = ros.client.create_publisher(JointState, "/qos/joint_states", QoSProfile(
        depth=10, deadline=RclDuration(seconds=0.1)))
    assert wait_for(lambda: cam.get_subscription_count() and joints.get_subscription_count())
    h.instruction.publish(String(data="reach the goal"))
    got = len(h.got["action"])
    for k in range(8):
        t = 1.0 + 0.05 * k
        joints.publish(joints_to_msg(JOINTS, np.zeros(9), np.zeros(9), sec_to_stamp(t)))
        cam.publish(image_to_msg(np.zeros((48, 64, 3), np.uint8), sec_to_stamp(t)))
        time.sleep(0.08)
    assert wait_for(lambda: len(h.got["action"]) > got)
    assert wait_for(lambda: missed, timeout=5)  # the actions stopped: the controller was told
    assert wait_for(lambda: node.ledger.snapshot()["input_deadline_missed"] >= 1, timeout=5)


def test_a_checkpoint_trained_on_another_robots_bags_is_served_from_the_checkpoint_alone(ros, tmp_path):
    """Bags in another layout (compressed wrist camera, arm and gripper on two JointState topics, the
    action from the joint states) → train with that robot spec → vla_node given only the checkpoint
    subscribes to the spec's topics and publishes the spec's joint names at its control period."""
    import dataclasses

    from test_robot import ARM, GRIPPER, arm_positions, arm_spec, write_arm_bag
    from trimodal_ros.config import config_from_dict
    from trimodal_ros.train.trainer import train

    for e in range(3):
        write_arm_bag(tmp_path / "bags" / f"ep{e}", frames=12)
    base = load_config("weighted_sum").to_dict()
    base["model"] = {k: v for k, v in base["model"].items() if k not in ("cameras", "joint_names", "action_dim")}
    cfg = config_from_dict({**base, "robot": arm_spec().to_dict()})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4, batch_size=8, warmup_steps=1,
                                                             log_every=2, ckpt_every=4, instructions="bag"))
    ckpt = train(cfg, tmp_path / "bags", tmp_path / "run", progress=False).checkpoint

    ns, c = "/other_arm", ros.client
    node = ros.vla_node(ns, checkpoint=str(ckpt), allow_random_weights=False)
    assert node.policy.config.robot.name == "test_arm" and node.joint_names == ARM + GRIPPER
    arm = c.create_publisher(JointState, f"{ns}/arm/joint_states", 10)
    grip = c.create_publisher(JointState, f"{ns}/gripper/joint_states", 10)
    cam = c.create_publisher(CompressedImage, f"{ns}/wrist/image_raw/compressed", 10)
    instr = c.create_publisher(String, f"{ns}/instruction", qos_profile(I.LATCHED))
    got = []
    c.create_subscription(JointTrajectory, f"{ns}/trimodal/action", lambda m: m.points and got.append(m), 10)
    assert wait_for(lambda: all(p.get_subscription_count() for p in (arm, grip, cam, instr)))
    instr.publish(String(data="put the cup on the plate"))
    t, sent = 1.0, 0
    while not got and t < 20:
        q = arm_positions(int(t * 10) % 10)
        arm.publish(joints_to_msg(ARM, q[:3], np.zeros(3), sec_to_stamp(t)))
        sent += 1
        grip.publish(joints_to_msg(GRIPPER, q[3:], np.zeros(1), sec_to_stamp(t)))
        cam.publish(compressed_image_to_msg(np.full((8, 8, 3), 40, np.uint8), "png", sec_to_stamp(t)))
        t = round(t + 0.1, 3)
        time.sleep(0.1)
    assert got, node.ledger.snapshot()
    msg = got[0]
    assert list(msg.joint_names) == ARM + GRIPPER and len(msg.points) == cfg.model.chunk
    assert abs(msg.points[0].time_from_start.nanosec * 1e-9 + msg.points[0].time_from_start.sec - 0.1) < 1e-9
    # arm and gripper merged: only messages read before both publishers' first leave joints missing,
    # and once both have spoken no message does
    before = node.ledger.snapshot().get("missing_joints", 0)
    assert before <= sent, (sent, node.ledger.snapshot())
    for k in range(5):
        q = arm_positions(k)
        arm.publish(joints_to_msg(ARM, q[:3], np.zeros(3), sec_to_stamp(t + 0.1 * k)))
        grip.publish(joints_to_msg(GRIPPER, q[3:], np.zeros(1), sec_to_stamp(t + 0.1 * k)))
        time.sleep(0.05)
    time.sleep(0.3)  # let the callbacks take them
    assert node.ledger.snapshot().get("missing_joints", 0) == before


def test_a_cartesian_robot_gets_a_twist_and_a_gripper_command(ros, tmp_path):
    """action.output twist: the chunk's first action as a TwistStamped in the spec's frame (MoveIt
    Servo) and the rest as a Float64MultiArray gripper command; a hold sends zero velocity."""
    import yaml
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64MultiArray

    names = ["linear.x", "linear.y", "linear.z", "gripper"]
    cfg = load_config("weighted_sum").to_dict()
    cfg["model"] = {k: v for k, v in cfg["model"].items() if k not in ("cameras", "joint_names", "action_dim")}
    cfg["robot"] = {**cfg["robot"], "name": "cartesian_arm",
                    "action": {"names": names, "units": "m/s; gripper 0-1", "output": "twist", "frame": "tool0"}}
    (tmp_path / "cartesian.yaml").write_text(yaml.safe_dump(cfg))
    ns = "/cartesian"
    h = Harness(ros, ns)
    twists, grips = [], []
    ros.client.create_subscription(TwistStamped, f"{ns}/trimodal/twist", twists.append, 10)
    ros.client.create_subscription(Float64MultiArray, f"{ns}/trimodal/gripper", grips.append, 10)
    node = ros.vla_node(ns, config=str(tmp_path / "cartesian.yaml"))
    assert node.action_names == names
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    h.drive_until(1.0, n_min=1)
    assert wait_for(lambda: twists and grips)
    first = trajectory_to_numpy(h.got["action"][0])[0]
    tw = twists[0]
    assert tw.header.frame_id == "tool0" and tw.header.stamp == h.got["action"][0].header.stamp
    np.testing.assert_allclose([tw.twist.linear.x, tw.twist.linear.y, tw.twist.linear.z], first[:3])
    assert tw.twist.angular.z == 0.0 and list(grips[0].data) == pytest.approx([first[3]])
    node.trigger_deactivate()  # a hold: zero velocity
    assert wait_for(lambda: h.got["hold"])
    assert wait_for(lambda: twists[-1].twist.linear.x == twists[-1].twist.linear.z == 0.0)


def test_executor_execution_commands_every_control_period_and_stops_with_the_task(ros):
    """execution:=ensemble: one single-point command per control period (faster than the frames come),
    blended from the chunks that cover it; after ~/stop the hold is the last thing sent, although
    frames keep coming, and the executor's counts reach /diagnostics."""
    from std_srvs.srv import Trigger

    ns = "/exec"
    h = Harness(ros, ns)
    node = ros.vla_node(ns, execution="ensemble", control_period=0.05)
    assert node.spin_threads == 2 and node.policy.ensembler is None  # the executor blends the raw chunks
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    h.drive_until(1.0, n_min=15, period=0.2)  # frames at ~5 Hz, commands at up to 20 Hz
    acts, outputs = len(h.got["action"]), node.ledger.snapshot()["outputs"]
    assert acts >= 15 and all(len(m.points) == 1 for m in h.got["action"])
    assert acts >= 1.5 * outputs, (acts, outputs)  # more commands than answered frames
    assert wait_for(lambda: any("executor_chunks" in d and int(d["executor_chunks"]) > 0 for d in h.got["diagnostics"]))
    assert node.set_parameters([Parameter("control_period", value=0.1)])[0].successful  # live: the timer follows
    assert node.control.period == 0.1 and node.control.timer.timer_period_ns == 100_000_000
    n = len(h.got["action"])
    h.drive_until(3.0, n_min=3, period=0.2)
    assert len(h.got["action"]) >= n + 3 and abs(duration_to_sec(h.got["action"][-1].points[0].time_from_start)
                                                  - 0.1) < 1e-9
    cli = ros.client.create_client(Trigger, f"{ns}/vla_node/stop")
    assert cli.wait_for_service(timeout_sec=5)
    fut = cli.call_async(Trigger.Request())
    assert wait_for(fut.done) and wait_for(lambda: h.got["hold"])
    n = len(h.got["action"])
    for k in range(5):  # frames keep coming; no instruction: no command
        h.step(5.0 + 0.05 * k)
        time.sleep(0.1)
    assert len(h.got["action"]) == n


def test_executor_sends_nothing_from_a_chunk_that_arrived_after_its_last_tick(ros):
    """A model slower than a whole chunk (4 × 0.05 s here, the model 0.4 s): every chunk is late when it
    arrives; it is counted stale and never executed (a command for a moment already past)."""
    ns = "/exec_late"
    h = Harness(ros, ns)
    node = ros.vla_node(ns, execution="ensemble", control_period=0.05)
    act = node.policy.act

    def slow_act(*args, **kwargs):
        time.sleep(0.4)
        return act(*args, **kwargs)

    node.policy.act = slow_act
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    for k in range(6):
        h.step(1.0 + 0.05 * k)
        time.sleep(0.3)
    assert wait_for(lambda: node.control.counts()["stale_chunks"] >= 2, timeout=10), node.control.counts()
    assert node.control.counts()["chunks"] == 0 and not h.got["action"]


def test_forecast_infers_on_the_targets_commanded_for_the_chunks_arrival(ros, tmp_path):
    """forecast:=on with execution:=ensemble and a model ~3 control periods slow, on an arm whose actions
    are joint-position targets: the first inference sees the published positions; later ones see, for
    the commanded joints, the targets the executor will have sent when their chunk arrives, and the
    other joints as published. Cartesian actions are refused forecast:=on, with the reason."""
    import torch

    from trimodal_ros.checkpoint import save_checkpoint
    from trimodal_ros.model.action_tokenizer import ActionTokenizer
    from trimodal_ros.model.trimodal import TriModalModel
    from trimodal_ros.robot import ActionSpec

    cfg = load_config("concat_mlp")
    with pytest.raises(ConfigError, match="absolute joint-position targets"):
        VLANode(namespace="/forecast_bad", context=ros.context, parameter_overrides=[
            Parameter("allow_random_weights", value=True), Parameter("execution", value="ensemble"),
            Parameter("forecast", value="on")])
    robot = dataclasses.replace(cfg.robot, name="sawyer_joint_targets",
                                action=ActionSpec(source="joint_positions", names=list(JOINTS[:4]), units="rad"))
    cfg = dataclasses.replace(cfg, robot=robot, model=dataclasses.replace(cfg.model, use_velocities=False),
                              inference=dataclasses.replace(cfg.inference, forecast=True))
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "joints.pt", TriModalModel(cfg.model), cfg,
                           ActionTokenizer(-np.ones(4), np.ones(4), cfg.model.bins))
    ns = "/forecast"
    h = Harness(ros, ns)
    node = ros.vla_node(ns, checkpoint=str(path), execution="ensemble", control_period=0.05)
    seen, act = [], node.policy.act

    def slow_act(views, positions, *args, **kwargs):
        seen.append(np.array(positions))
        time.sleep(0.15)
        return act(views, positions, *args, **kwargs)

    node.policy.act = slow_act
    assert wait_for(h.connected)
    h.instruction.publish(String(data="push the puck"))
    h.drive_until(1.0, n_min=20, period=0.1)
    published = np.linspace(-0.5, 0.5, 9)  # what Harness.step sends
    assert len(seen) >= 3 and np.allclose(seen[0], published)
    later = seen[2:]
    assert all(np.allclose(q[4:], published[4:]) for q in later)  # not commanded: as published
    assert all(np.abs(q[:4]).max() <= 1.0 + 1e-9 for q in later)  # commanded targets, in the actions' range
    assert any(not np.allclose(q[:4], published[:4]) for q in later)
    assert node.control.latency_ticks() >= 2  # 0.15 s + the model, measured in 0.05 s control periods
