"""vla_node: camera + instruction + joint states in; fused embedding, action tokens, an action
chunk and diagnostics out. Thin on purpose: parameters, QoS and threading here, message ↔ array
conversion in ``conversions.py``, the maths in ``trimodal_ros.model``.

Threading: the subscription callbacks only convert, check and store. Inference runs in one worker
thread fed through a one-slot mailbox: a frame that arrives while the previous one still waits is
*replaced* (counted as dropped), so a slow model never builds a backlog of old frames.

Action history: when the config asks for ``action_history`` past actions in the proprio input,
the node feeds back its *own* previously published actions (the first action of each chunk,
oldest first, zero-filled at the start), and clears them when the instruction changes: at
deployment the node is the policy, so its own commands are the action history it was trained on.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Dict, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int32MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ..data.align import MISSING, STALE, select_latest
from .conversions import (
    MAX_INSTRUCTION_CHARS,
    BadInput,
    embedding_to_msg,
    image_from_msg,
    instruction_from_msg,
    joints_from_msg,
    stamp_to_sec,
    tokens_to_msg,
    trajectory_to_msg,
)

ACTION_NAMES = ["ee_dx", "ee_dy", "ee_dz", "gripper"]  # Meta-World's 4-D action
COUNTERS = ("bad_image", "bad_joint_state", "nan_joints", "missing_joints", "unknown_joint_names",
            "bad_instruction", "stale_joint_state", "stale_image", "waiting_for_instruction",
            "waiting_for_joint_state", "dropped_frames", "inference_errors")

# Topics, relative so that a namespace moves them all (README "## Topics" lists the same).
IMAGE_TOPIC, INSTRUCTION_TOPIC, JOINTS_TOPIC = "camera/image_raw", "instruction", "joint_states"
EMBEDDING_TOPIC, TOKENS_TOPIC, ACTION_TOPIC = "trimodal/embedding", "trimodal/action_tokens", "trimodal/action"
DIAGNOSTICS_TOPIC = "/diagnostics"

LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


@dataclasses.dataclass
class _Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    stamp: object  # builtin_interfaces/Time of the camera header
    received: float  # time.monotonic() at arrival


class VLANode(Node):
    """See the module docstring. Raises (ConfigError, CheckpointError, ValueError) on a config
    it cannot serve, so a misconfigured launch fails at start rather than publishing garbage."""

    def __init__(self, node_name: str = "vla_node", **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._setup(node_name)
        except BaseException:
            super().destroy_node()  # no half-built node left in the graph
            raise

    def _setup(self, node_name: str) -> None:
        dyn = ParameterDescriptor(dynamic_typing=True)  # rate_hz:=10 (an int) must not be a type error
        p = {
            "fusion": self.declare_parameter("fusion", "weighted_sum").value,
            "config": self.declare_parameter("config", "").value,
            "checkpoint": self.declare_parameter("checkpoint", "").value,
            "device": self.declare_parameter("device", "auto").value,
            "image_qos_reliability": self.declare_parameter("image_qos_reliability", "best_effort").value,
            "image_qos_depth": int(self.declare_parameter("image_qos_depth", 5, dyn).value),
            "max_input_age": float(self.declare_parameter("max_input_age", 0.5, dyn).value),
            "rate_hz": float(self.declare_parameter("rate_hz", 0.0, dyn).value),
            "control_period": float(self.declare_parameter("control_period", 0.0125, dyn).value),
            "joint_names": self.declare_parameter("joint_names", Parameter.Type.STRING_ARRAY).value,
            "action_names": self.declare_parameter("action_names", list(ACTION_NAMES)).value,
            "max_instruction_chars": int(self.declare_parameter("max_instruction_chars",
                                                                MAX_INSTRUCTION_CHARS, dyn).value),
            "seed": int(self.declare_parameter("seed", 0, dyn).value),
        }
        self.params = p
        self._load_model(p)
        self.joint_names: List[str] = list(p["joint_names"] or self.cfg.joint_names)
        if len(self.joint_names) != len(self.cfg.joint_names):
            raise ValueError(f"joint_names has {len(self.joint_names)} joints, the model expects "
                             f"{len(self.cfg.joint_names)} ({self.cfg.joint_names})")
        self.action_names: List[str] = list(p["action_names"])
        if len(self.action_names) != self.cfg.action_dim:
            raise ValueError(f"action_names {self.action_names} must have action_dim={self.cfg.action_dim} names")
        if p["image_qos_reliability"] not in ("best_effort", "reliable"):
            raise ValueError(f"image_qos_reliability must be best_effort or reliable, "
                             f"not {p['image_qos_reliability']!r}")
        if p["max_input_age"] <= 0 or p["control_period"] <= 0 or p["rate_hz"] < 0:
            raise ValueError("need max_input_age > 0, control_period > 0, rate_hz >= 0")

        # --- state shared by callbacks and the worker (guarded by _lock) ---------------------------
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: Optional[_Frame] = None
        self._latest: Optional[_Frame] = None
        self._joints = collections.deque(maxlen=200)  # (stamp_s, positions, velocities), ascending
        self._instruction: Optional[str] = None
        self._stop = False
        self.counters: Dict[str, int] = {k: 0 for k in COUNTERS}
        self.outputs_published = 0
        self._arrivals = {k: collections.deque(maxlen=400) for k in ("image", "joint_states", "output")}
        self._latencies = collections.deque(maxlen=200)  # model-only seconds
        self._last_log: Dict[str, float] = {}
        self._joint_lag = float("nan")  # camera stamp − joint stamp used, last inference
        # worker-only state
        self._text_cache: "collections.OrderedDict[str, object]" = collections.OrderedDict()
        self._history = collections.deque(maxlen=max(self.cfg.action_history, 1))
        self._history_for: Optional[str] = None

        image_qos = QoSProfile(
            depth=max(1, p["image_qos_depth"]), history=HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.BEST_EFFORT if p["image_qos_reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE))
        # Creation order is the executor's service order when several are ready at once: take the
        # instruction and joint state before a camera frame carrying the same stamp.
        self.create_subscription(String, INSTRUCTION_TOPIC, self._on_instruction, LATCHED)
        self.create_subscription(JointState, JOINTS_TOPIC, self._on_joints, RELIABLE)
        self.create_subscription(Image, IMAGE_TOPIC, self._on_image, image_qos)
        self._pub_embedding = self.create_publisher(Float32MultiArray, EMBEDDING_TOPIC, RELIABLE)
        self._pub_tokens = self.create_publisher(Int32MultiArray, TOKENS_TOPIC, RELIABLE)
        self._pub_action = self.create_publisher(JointTrajectory, ACTION_TOPIC, RELIABLE)
        self._pub_diag = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, RELIABLE)
        self.create_timer(1.0, self._publish_diagnostics)
        if p["rate_hz"] > 0:
            self.create_timer(1.0 / p["rate_hz"], self._on_tick)
        self._worker = threading.Thread(target=self._run_worker, name=f"{node_name}-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: fusion={self.cfg.fusion} device={self.device} embed_dim={self.cfg.embed_dim} "
            f"chunk={self.cfg.chunk} action_dim={self.cfg.action_dim} joints={self.joint_names} "
            f"image_qos={p['image_qos_reliability']}/{image_qos.depth} max_input_age={p['max_input_age']}s "
            f"rate={'per frame' if p['rate_hz'] <= 0 else str(p['rate_hz']) + ' Hz'}")

    # --- model -------------------------------------------------------------------------------------
    def _load_model(self, p) -> None:
        from ..model.checkpoint import load_for_inference
        from ..model.fusion import FUSIONS
        from ..utils import pick_device

        if p["fusion"] not in FUSIONS:
            raise ValueError(f"unknown fusion {p['fusion']!r}; choose one of {FUSIONS.names()}")
        device = pick_device(p["device"])
        model, tokenizer, cfg, self.random_weights = load_for_inference(
            p["checkpoint"], p["fusion"], p["config"], device, p["seed"])
        if self.random_weights:
            bar = "!" * 78
            self.get_logger().warning(
                f"\n{bar}\n!!! NO CHECKPOINT: vla_node runs fusion '{cfg.model.fusion}' with RANDOM WEIGHTS.\n"
                f"!!! Its actions are noise. Fine for wiring tests; NEVER send them to a robot.\n"
                f"!!! Set the 'checkpoint' parameter to a trained .pt file.\n{bar}")
        else:
            self.get_logger().info(f"loaded checkpoint {p['checkpoint']} ({tokenizer})")
        self.cfg, self.model, self.tokenizer, self.device = cfg.model, model.eval(), tokenizer, device

    # --- callbacks: convert, check, store; never block ---------------------------------------------
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        try:
            rgb = image_from_msg(msg)
        except BadInput as e:
            return self._bad(e.kind, str(e))
        frame = _Frame(rgb, msg.header.stamp, now)
        with self._lock:
            self._arrivals["image"].append(now)
            self._latest = frame
            if self.params["rate_hz"] <= 0:
                self._submit(frame)

    def _on_tick(self) -> None:
        """rate_hz > 0: run on the latest frame at a fixed rate, if it is still fresh."""
        with self._lock:
            frame = self._latest
            if frame is None:
                return
            if time.monotonic() - frame.received > self.params["max_input_age"]:
                self.counters["stale_image"] += 1
                stale = True
            else:
                self._submit(frame)
                stale = False
        if stale:
            self._log("stale_image", "camera/image_raw is stale: no output until a fresh frame arrives")

    def _submit(self, frame: _Frame) -> None:  # caller holds _lock
        if self._pending is not None:
            self.counters["dropped_frames"] += 1
        self._pending = frame
        self._wake.notify()

    def _on_instruction(self, msg: String) -> None:
        try:
            text = instruction_from_msg(msg.data, self.params["max_instruction_chars"])
        except BadInput as e:
            return self._bad(e.kind, str(e))
        with self._lock:
            changed, self._instruction = text != self._instruction, text
            self._history_for = None  # every instruction (re)starts a task: forget past actions
        if changed:
            self.get_logger().info(f"instruction: {text[:200]!r}")

    def _on_joints(self, msg: JointState) -> None:
        try:
            pos, vel = joints_from_msg(msg, self.joint_names)
        except BadInput as e:
            return self._bad(e.kind, str(e))
        t = stamp_to_sec(msg.header.stamp)
        with self._lock:
            self._arrivals["joint_states"].append(time.monotonic())
            if self._joints and t < self._joints[-1][0]:
                self._joints.clear()  # time went backwards (bag loop, sim reset): start over
            self._joints.append((t, pos, vel))

    # --- inference worker --------------------------------------------------------------------------
    def _run_worker(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                frame, self._pending = self._pending, None
            try:
                self._infer(frame)
            except Exception as e:  # a model error must not kill the node either
                with self._lock:
                    self.counters["inference_errors"] += 1
                self._log("inference_errors", f"inference failed: {type(e).__name__}: {e}")

    def _infer(self, frame: _Frame) -> None:
        import torch

        from ..model.preprocess import proprio_vector

        t_cam = stamp_to_sec(frame.stamp)
        with self._lock:
            instruction = self._instruction
            joints = list(self._joints)
        if instruction is None:
            return self._wait("waiting_for_instruction", "waiting for an instruction on 'instruction'")
        i = select_latest([j[0] for j in joints], t_cam, self.params["max_input_age"])
        if i == MISSING:
            return self._wait("waiting_for_joint_state",
                              "waiting for joint_states at or before the camera stamp")
        if i == STALE:
            with self._lock:
                self.counters["stale_joint_state"] += 1
            return self._log("stale_joint_state",
                             f"joint_states is stale ({t_cam - joints[-1][0]:.3f} s older than the camera "
                             f"frame > max_input_age {self.params['max_input_age']} s): no output until fresh")
        t_joint, pos, vel = joints[i]
        if instruction != self._history_for:  # a new task: forget the previous task's actions
            self._history.clear()
            self._history_for = instruction
        cfg = self.cfg
        proprio = proprio_vector(pos, vel, list(self._history), cfg.use_velocities, cfg.action_history,
                                 cfg.action_dim)
        t0 = time.perf_counter()
        with torch.inference_mode():
            text = self._text_features(instruction)
            out = self.model(self.model.preprocess(frame.rgb[None]),
                             torch.from_numpy(proprio).unsqueeze(0).to(self.device), text=text)
            fused = out.fused[0].float().cpu().numpy()
            tokens = out.tokens()[0].cpu().numpy()  # (K, A)
        latency = time.perf_counter() - t0
        actions = self.tokenizer.decode(tokens)  # (K, A)
        if cfg.action_history:
            self._history.append(actions[0])
        self._pub_embedding.publish(embedding_to_msg(fused))
        self._pub_tokens.publish(tokens_to_msg(tokens))
        self._pub_action.publish(trajectory_to_msg(actions, frame.stamp, self.action_names,
                                                   self.params["control_period"]))
        with self._lock:
            self._latencies.append(latency)
            self._arrivals["output"].append(time.monotonic())
            self._joint_lag = t_cam - t_joint
            self.outputs_published += 1

    def _text_features(self, instruction: str):
        """Text tower output cached per instruction: it runs once per command, not per frame."""
        feats = self._text_cache.get(instruction)
        if feats is None:
            feats = self.model.encode_instructions([instruction])
            self._text_cache[instruction] = feats
            while len(self._text_cache) > 32:
                self._text_cache.popitem(last=False)
        else:
            self._text_cache.move_to_end(instruction)
        return feats

    # --- bookkeeping -------------------------------------------------------------------------------
    def _bad(self, kind: str, message: str) -> None:
        with self._lock:
            self.counters[kind] += 1
        self._log(kind, f"skipped bad input ({kind}): {message}")

    def _wait(self, kind: str, message: str) -> None:
        with self._lock:
            self.counters[kind] += 1
        self._log(kind, message, level="info")

    def _log(self, kind: str, message: str, level: str = "warning", every: float = 5.0) -> None:
        """At most one line per kind every ``every`` seconds: bad input at 30 Hz must not flood."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) < every:
            return
        self._last_log[kind] = now
        text = f"{message} [{kind}: {self.counters.get(kind, 0)} so far]"
        # one call site per severity: rclpy refuses a call site whose severity changes between calls
        if level == "info":
            self.get_logger().info(text)
        elif level == "error":
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def reset_history(self) -> None:
        """Forget the executed-action history (an episode restarts with the same instruction)."""
        with self._lock:
            self._history_for = None

    @property
    def instruction(self) -> Optional[str]:
        """The instruction in force (None until one arrived)."""
        with self._lock:
            return self._instruction

    def latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._latencies, dtype=np.float64) * 1e3

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.counters, outputs_published=self.outputs_published)

    def _rate(self, key: str, now: float, window: float = 5.0) -> float:
        ts = [t for t in self._arrivals[key] if now - t <= window]
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0

    def diagnostics(self) -> DiagnosticStatus:
        now = time.monotonic()
        with self._lock:
            lat = np.asarray(self._latencies, dtype=np.float64) * 1e3
            c = dict(self.counters)
            img_age = now - self._latest.received if self._latest else float("nan")
            joint_age = now - self._arrivals["joint_states"][-1] if self._arrivals["joint_states"] else float("nan")
            rates = {k: self._rate(k, now) for k in self._arrivals}
            last_out = self._arrivals["output"][-1] if self._arrivals["output"] else None
            outputs, instruction, lag = self.outputs_published, self._instruction, self._joint_lag
        p50, p95 = (np.percentile(lat, 50), np.percentile(lat, 95)) if lat.size else (float("nan"),) * 2
        values = {
            "fusion": self.cfg.fusion, "device": str(self.device),
            "checkpoint": self.params["checkpoint"] or "(none)",
            "random_weights": str(self.random_weights).lower(),
            "image_rate_hz": f"{rates['image']:.2f}", "joint_states_rate_hz": f"{rates['joint_states']:.2f}",
            "output_rate_hz": f"{rates['output']:.2f}",
            "latency_p50_ms": f"{p50:.2f}", "latency_p95_ms": f"{p95:.2f}",
            "image_age_s": f"{img_age:.3f}", "joint_states_age_s": f"{joint_age:.3f}",
            "joint_lag_s": f"{lag:.4f}", "outputs_published": str(outputs),
            "instruction": (instruction or "")[:120],
            **{k: str(v) for k, v in c.items()},
        }
        problems = []
        if self.random_weights:
            problems.append("RANDOM WEIGHTS (no checkpoint)")
        if instruction is None:
            problems.append("no instruction")
        if last_out is None or now - last_out > max(2.0, 2 * self.params["max_input_age"]):
            problems.append("no recent output")
        return DiagnosticStatus(
            level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
            name=f"{self.get_fully_qualified_name()}: inference",
            message="; ".join(problems) or "ok", hardware_id=str(self.device),
            values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(msg)

    def destroy_node(self):
        """Stop the worker before the node's handles go away."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        return super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = VLANode()
    except Exception as e:  # ConfigError, CheckpointError, a bad parameter: say what, exit non-zero
        rclpy.logging.get_logger("vla_node").fatal(f"cannot start: {type(e).__name__}: {e}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # executors first: rclpy.shutdown() under a spinning executor aborts
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
