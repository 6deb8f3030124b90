"""vla_node over real DDS: inputs from a separate node, outputs checked for type, shape and stamp for
every fusion variant; bad and stale inputs survived and counted. One rclpy context per module;
each test uses its own namespace so tests never see each other's messages."""

import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int32MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from trimodal_ros.config import SAWYER_JOINTS, load_config
from trimodal_ros.model.fusion import FUSIONS
from trimodal_ros.ros.conversions import (
    duration_to_sec,
    image_to_msg,
    joints_to_msg,
    multiarray_to_numpy,
    sec_to_stamp,
    stamp_to_sec,
    trajectory_to_numpy,
)
from trimodal_ros.ros.vla_node import LATCHED, VLANode
from trimodal_ros.utils import wait_for

pytestmark = pytest.mark.ros


class Ros:
    """One context, one executor spinning in a thread, one client node for the test's side."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.client = rclpy.create_node("test_client", context=self.context)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.nodes = []

    def vla_node(self, namespace, **params):
        node = VLANode(namespace=namespace, context=self.context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=10)
        for n in self.nodes + [self.client]:
            n.destroy_node()
        rclpy.shutdown(context=self.context)


class Harness:
    """Publishers for a vla_node's inputs and collectors for its outputs, under one namespace."""

    def __init__(self, ros, ns):
        c, self.ns = ros.client, ns
        self.instruction = c.create_publisher(String, f"{ns}/instruction", LATCHED)
        self.joints = c.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.image = c.create_publisher(Image, f"{ns}/camera/image_raw", 10)
        self.got = {"action": [], "tokens": [], "embedding": [], "diagnostics": []}
        c.create_subscription(JointTrajectory, f"{ns}/trimodal/action", self.got["action"].append, 10)
        c.create_subscription(Int32MultiArray, f"{ns}/trimodal/action_tokens", self.got["tokens"].append, 10)
        c.create_subscription(Float32MultiArray, f"{ns}/trimodal/embedding", self.got["embedding"].append, 10)
        c.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.startswith(f"{self.ns}/vla_node"):
                self.got["diagnostics"].append({kv.key: kv.value for kv in s.values})

    def connected(self):
        return all(p.get_subscription_count() > 0 for p in (self.instruction, self.joints, self.image))

    def step(self, t, joint_t=None, rgb=None, positions=None):
        """One joint state (stamped ``joint_t``, default ``t``) then one camera frame stamped ``t``."""
        pos = np.linspace(-0.5, 0.5, 9) if positions is None else positions
        stamp = sec_to_stamp(t if joint_t is None else joint_t)
        self.joints.publish(joints_to_msg(SAWYER_JOINTS, pos, np.zeros(9), stamp))
        if rgb is None:
            rgb = np.random.default_rng(int(t * 100)).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        self.image.publish(image_to_msg(rgb, sec_to_stamp(t)))

    def drive_until_output(self, t0, n_min=1, period=0.15, timeout=30.0):
        """Publish steps until ``n_min`` actions came back (best-effort images may be lost)."""
        sent, t, start = [], t0, len(self.got["action"])
        end = time.monotonic() + timeout
        while len(self.got["action"]) - start < n_min and time.monotonic() < end:
            self.step(t)
            sent.append(t)
            t = round(t + 0.05, 3)
            time.sleep(period)
        return sent


@pytest.fixture(scope="module")
def ros():
    r = Ros()
    yield r
    r.close()


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_outputs_for_every_fusion(ros, fusion):
    ns = f"/f_{fusion}"
    h = Harness(ros, ns)
    h.instruction.publish(String(data="push the red button"))  # before the node exists: latched
    node = ros.vla_node(ns, fusion=fusion)
    cfg = load_config(fusion).model
    assert node.random_weights and node.cfg.fusion == fusion
    assert wait_for(h.connected)
    sent = h.drive_until_output(100.0, n_min=2)
    assert wait_for(lambda: len(h.got["embedding"]) >= 2 and len(h.got["tokens"]) >= 2)

    for traj in h.got["action"]:
        assert stamp_to_sec(traj.header.stamp) in sent  # the camera frame's own stamp
        assert traj.joint_names == ["ee_dx", "ee_dy", "ee_dz", "gripper"]
        a = trajectory_to_numpy(traj)
        assert a.shape == (cfg.chunk, cfg.action_dim) and np.all(np.abs(a) <= 1.0)
        assert [round(duration_to_sec(p.time_from_start), 6) for p in traj.points] == \
            [round(0.0125 * (k + 1), 6) for k in range(cfg.chunk)]
    emb = h.got["embedding"][0]
    assert [(d.label, d.size) for d in emb.layout.dim] == [("embedding", cfg.embed_dim)]
    assert multiarray_to_numpy(emb).shape == (cfg.embed_dim,) and np.all(np.isfinite(emb.data))
    tok = multiarray_to_numpy(h.got["tokens"][0])
    assert [d.label for d in h.got["tokens"][0].layout.dim] == ["chunk", "action_dim"]
    assert tok.shape == (cfg.chunk, cfg.action_dim) and tok.min() >= 0 and tok.max() < cfg.bins
    # tokens and actions agree: the action is the tokenizer's decode of the tokens
    np.testing.assert_allclose(node.tokenizer.decode(tok), trajectory_to_numpy(h.got["action"][0]), atol=1e-6)


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
def bad(ros):
    h = Harness(ros, "/bad")
    node = ros.vla_node("/bad", fusion="weighted_sum", max_input_age=0.5)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="open the drawer"))
    h.drive_until_output(10.0)
    return node, h


def test_bad_inputs_are_survived_and_counted(bad):
    node, h = bad
    before = node.counts()
    enc = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    enc.encoding = "yuv422"
    short = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    short.data = bytes(10)  # != height * step
    sends = [(h.instruction, String(data="")), (h.instruction, String(data="x" * 100_000)),
             (h.joints, joints_to_msg(SAWYER_JOINTS, [float("nan")] * 9)),
             (h.joints, joints_to_msg(SAWYER_JOINTS[:5], [0.0] * 5)),
             (h.joints, joints_to_msg(["wheel_left", "wheel_right"], [0.0, 0.0]))]
    for pub, msg in sends:  # one at a time: the latched instruction subscription keeps depth 1
        pub.publish(msg)
        time.sleep(0.1)
    want = {"bad_image": 2, "bad_instruction": 2, "nan_joints": 1, "missing_joints": 1, "unknown_joint_names": 1}

    def counted():
        c = node.counts()
        if c["bad_image"] - before["bad_image"] < 2:  # images go best effort: send again until seen
            h.image.publish(enc if c["bad_image"] == before["bad_image"] else short)
        return all(c[k] - before[k] >= n for k, n in want.items())

    assert wait_for(counted, timeout=15, every=0.1), node.counts()
    # still alive, and still on the last *good* instruction
    n = len(h.got["action"])
    h.drive_until_output(20.0)
    assert len(h.got["action"]) > n and node._instruction == "open the drawer"
    # and the counters reach /diagnostics (published at 1 Hz)
    assert wait_for(lambda: h.got["diagnostics"] and
                    int(h.got["diagnostics"][-1]["nan_joints"]) >= 1 and
                    int(h.got["diagnostics"][-1]["bad_image"]) >= 2, timeout=5)
    d = h.got["diagnostics"][-1]
    assert d["random_weights"] == "true" and d["fusion"] == "weighted_sum"
    assert float(d["latency_p50_ms"]) > 0 and "dropped_frames" in d and "image_rate_hz" in d


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
    stale_before = node.counts()["stale_joint_state"]
    n = len(h.got["action"])
    for k in range(4):  # joint state 1 s older than the frame > max_input_age 0.5 s
        h.step(30.0 + k * 0.1, joint_t=29.0)
        time.sleep(0.15)
    assert wait_for(lambda: node.counts()["stale_joint_state"] > stale_before, timeout=10)
    time.sleep(0.5)
    assert len(h.got["action"]) == n  # nothing published while stale
    h.drive_until_output(31.0)  # fresh again
    assert len(h.got["action"]) > n
    assert stamp_to_sec(h.got["action"][-1].header.stamp) >= 31.0


def test_new_frame_replaces_a_pending_one(ros):
    """A burst faster than the model: frames are replaced, counted, and never queue up."""
    h = Harness(ros, "/burst")
    node = ros.vla_node("/burst", fusion="cross_attention", image_qos_reliability="reliable",
                        image_qos_depth=50)
    assert wait_for(h.connected)
    h.instruction.publish(String(data="reach the goal"))
    h.drive_until_output(1.0)
    h.joints.publish(joints_to_msg(SAWYER_JOINTS, np.zeros(9), np.zeros(9), sec_to_stamp(2.0)))
    time.sleep(0.3)  # one fresh joint state for the whole burst
    n0 = node.counts()
    rgb = np.zeros((48, 64, 3), np.uint8)
    for k in range(30):
        h.image.publish(image_to_msg(rgb, sec_to_stamp(2.0 + k * 0.01)))
    assert wait_for(lambda: node.counts()["dropped_frames"] + node.counts()["outputs_published"] >=
                    n0["dropped_frames"] + n0["outputs_published"] + 30, timeout=20), str((n0, node.counts()))
    c = node.counts()
    assert c["dropped_frames"] > n0["dropped_frames"]
    # the last frame of the burst is never the one dropped
    assert wait_for(lambda: stamp_to_sec(h.got["action"][-1].header.stamp) == 2.29, timeout=10)


def test_rate_mode_repeats_the_latest_frame_until_it_is_stale(ros):
    """rate_hz > 0: a fixed-rate control loop on the latest frame, which stops once the camera
    has been silent for max_input_age; the fed-back action history stays one chunk per output."""
    h = Harness(ros, "/rate")
    node = ros.vla_node("/rate", fusion="concat_mlp", rate_hz=20.0, max_input_age=0.6,
                        image_qos_reliability="reliable")
    assert wait_for(h.connected)
    h.instruction.publish(String(data="slide the plate"))
    assert wait_for(lambda: node._instruction == "slide the plate", timeout=10)
    h.step(50.0)
    assert wait_for(lambda: node.counts()["stale_image"] > 0, timeout=10)  # camera went silent
    n = len(h.got["action"])
    assert n >= 2 and {stamp_to_sec(a.header.stamp) for a in h.got["action"]} == {50.0}
    time.sleep(0.3)
    assert len(h.got["action"]) == n  # stale: nothing more
    assert len(node._history) == min(node.outputs_published, node.cfg.action_history)
    h.instruction.publish(String(data="open the window"))
    h.step(60.0)
    assert wait_for(lambda: len(h.got["action"]) > n and node._history_for == "open the window", timeout=10)


def test_checkpoint_for_another_fusion_is_a_clear_error(ros, tmp_path):
    import torch

    from trimodal_ros.model.action_tokenizer import ActionTokenizer
    from trimodal_ros.model.checkpoint import CheckpointError, save_checkpoint
    from trimodal_ros.model.trimodal import TriModalModel

    cfg = load_config("concat_mlp")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "c.pt", TriModalModel(cfg.model), cfg,
                           ActionTokenizer(-np.ones(4), np.ones(4), cfg.model.bins))
    with pytest.raises(CheckpointError, match="concat_mlp"):
        VLANode(namespace="/ckpt_bad", context=ros.context,
                parameter_overrides=[Parameter("fusion", value="qformer"), Parameter("checkpoint", value=str(path))])
    node = ros.vla_node("/ckpt_ok", fusion="concat_mlp", checkpoint=str(path))
    assert not node.random_weights
