"""vla_node: camera + instruction + joint states in; fused embedding, action tokens, an action
chunk and diagnostics out, around one ``trimodal_ros.policy.Policy`` (where a frame becomes an
action). This file holds only messaging, threading, QoS, lifecycle and diagnostics; topic names
and QoS are ``interface.py``, parameters ``params.py``, bookkeeping ``ledger.py``.

A managed (lifecycle) node: ``configure`` loads the policy and creates the topics, outputs flow
only while ``active``, ``deactivate`` stops them without unloading, ``cleanup`` frees the model.
With ``autostart`` (the default, what ``lifecycle:=false`` launches) it configures and activates
itself at start.

Threading (README "Benchmarks" has the figures that chose it): the policy runs in the camera
callback itself, on the executor's thread, with torch limited to ``torch_threads``; no hand-off
to another thread. Before inferring, the callback takes every newer frame already waiting in the
subscription's queue and keeps the newest (the older ones count as *replaced*), so a slow model
never works through a backlog. With ``rate_hz`` > 0 the callback only stores the newest frame and
a timer infers on it at that rate. All callbacks share one mutually exclusive group: they never
run concurrently, so none of the node's state needs a lock. Every frame ends in one counted
outcome (``ledger.py``).

Instructions: every message (re)starts the task and clears the action history; an empty one
stops it (no output until the next); ``instruction_timeout`` > 0 ends a task that many seconds
after its last message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Int32MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from .. import interface as I
from ..data.align import MISSING, STALE
from . import signals
from .conversions import (BadInput, compressed_image_from_msg, embedding_to_msg, image_from_msg,
                          instruction_from_msg, joints_from_msg, ns_to_stamp, qos_profile, stamp_ns,
                          tokens_to_msg, trajectory_to_msg)
from .inputs import Inputs
from .ledger import Ledger
from .params import VLA_PARAMS, declare, follow_updates
from .throttle import Throttle

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass
class _Frame:
    rgb: np.ndarray   # (H, W, 3) uint8
    stamp: int        # ns, camera header
    received: float   # time.monotonic() at arrival


class VLANode(LifecycleNode):
    """See the module docstring. With ``autostart``, a checkpoint or parameter it cannot serve
    raises at construction, so a misconfigured launch fails at start instead of publishing garbage."""

    def __init__(self, node_name: str = "vla_node", **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self.params = declare(self, VLA_PARAMS)
            self.ledger, self.policy, self.error = Ledger(), None, None
            self._active, self._camera, self._slot = False, None, None  # _slot: rate mode's newest frame
            self.inputs, self._policy_task = Inputs(), -1
            self._io, self._timer, self.threads, self.joint_lag = [], None, 0, float("nan")
            self._log = Throttle(self.get_logger(), lambda kind: self.ledger.snapshot().get(kind))
            self._pub_diag = self.create_publisher(DiagnosticArray, I.DIAGNOSTICS_TOPIC, qos_profile(I.RELIABLE))
            self.create_timer(1.0, self._publish_diagnostics)
            follow_updates(self, VLA_PARAMS, self.params, self._params_changed)
            if self.params["autostart"]:
                if self.trigger_configure() != SUCCESS:
                    raise self.error
                self.trigger_activate()
        except BaseException:
            super().destroy_node()  # no half-built node left in the graph
            raise

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from ..policy import Policy
        from ..utils import pick_device, set_torch_threads

        p = self.params
        try:
            self.policy = Policy.load(p["checkpoint"], p["fusion"], p["config"], pick_device(p["device"]),
                                      p["seed"], p["execute_steps"])
            mc = self.policy.model_config
            if len(p["joint_names"]) != len(mc.joint_names) or len(p["action_names"]) != mc.action_dim:
                raise ValueError(f"joint_names/action_names have {len(p['joint_names'])}/{len(p['action_names'])} "
                                 f"entries; the model expects {len(mc.joint_names)} joints {mc.joint_names} and "
                                 f"{mc.action_dim} action dims")
            self.threads = set_torch_threads(p["torch_threads"], self.policy)
        except Exception as e:  # ConfigError, CheckpointError, ValueError: refuse, say why
            self.policy, self.error = None, e
            self.get_logger().error(f"cannot configure: {type(e).__name__}: {e}")
            return FAILURE
        self._send_actions = not self.policy.random_weights or p["allow_random_weights"]
        if self.policy.random_weights:
            self.get_logger().warning(
                f"NO CHECKPOINT: random weights. Embeddings and tokens are published for wiring tests "
                f"(labelled 'random weights'); trimodal/action is "
                f"{'published anyway (allow_random_weights)' if self._send_actions else 'NOT published'}.")
        self._create_io()
        self.get_logger().info(f"configured: {self.policy.describe()} torch_threads={self.threads} "
                               f"image={p['image_transport']}/{p['image_qos_reliability']}/{p['image_qos_depth']} "
                               f"rate={'per frame' if p['rate_hz'] <= 0 else str(p['rate_hz']) + ' Hz'}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return SUCCESS

    def _create_io(self) -> None:
        p = self.params
        image_qos = qos_profile(I.Qos(p["image_qos_reliability"], "volatile", p["image_qos_depth"]))
        if p["image_transport"] == "compressed":
            cam = self.create_subscription(CompressedImage, I.COMPRESSED_IMAGE_TOPIC, self._on_image, image_qos)
        else:
            cam = self.create_subscription(Image, I.IMAGE_TOPIC, self._on_image, image_qos)
        self._camera = cam
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)  # the other one matches
        self._io = [  # the order _ingest_inputs relies on: instruction (latched, volatile), joints, camera
            *(self.create_subscription(String, I.INSTRUCTION_TOPIC, self._on_instruction, qos_profile(q),
                                       event_callbacks=quiet) for q in I.INSTRUCTION_QOS),
            self.create_subscription(JointState, I.JOINTS_TOPIC, self._on_joints, qos_profile(I.JOINTS_QOS)), cam]
        out = qos_profile(I.RELIABLE)
        self._pub = {k: self.create_lifecycle_publisher(t, n, out) for k, t, n in (
            ("embedding", Float32MultiArray, I.EMBEDDING_TOPIC), ("tokens", Int32MultiArray, I.TOKENS_TOPIC),
            ("action", JointTrajectory, I.ACTION_TOPIC))}
        self._reset_timer()

    def _release(self) -> None:
        """Drop the topics and the model (cleanup, shutdown, destroy)."""
        if self._slot is not None:  # a frame still waiting when the node stops
            self.ledger.settle("inactive")
            self._slot = None
        for s in self._io:
            self.destroy_subscription(s)
        for pub in getattr(self, "_pub", {}).values():
            self.destroy_lifecycle_publisher(pub)
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self._io, self._pub, self._timer, self._camera, self.policy = [], {}, None, None, None

    # --- callbacks: the camera's runs the policy; the others only decode, check and store -------------
    def _on_image(self, msg) -> None:
        frame = self._decoded(msg)
        if self._active and self.params["rate_hz"] <= 0:
            # frames that arrived during the last inference must not become a backlog: take every
            # one already waiting and keep the newest good one (the others are replaced)
            while (more := self._take(self._camera)) is not None:
                newer = self._decoded(more[0])
                if newer is not None:
                    if frame is not None:
                        self.ledger.settle("replaced")
                    frame = newer
        if frame is None:
            return
        if not self._active:
            self.ledger.settle("inactive")
        elif self.params["rate_hz"] > 0:  # the timer infers on the newest frame
            if self._slot is not None:
                self.ledger.settle("replaced")
            self._slot = frame
        else:
            self._run(frame)

    def _decoded(self, msg) -> Optional[_Frame]:
        """Count the frame in; decode it, or count it bad (None)."""
        self.ledger.frame_in()
        try:
            rgb = compressed_image_from_msg(msg) if isinstance(msg, CompressedImage) else image_from_msg(msg)
        except BadInput as e:
            self.ledger.settle("bad_image")
            return self._log("bad_image", f"skipped bad image: {e}")
        return _Frame(rgb, stamp_ns(msg), time.monotonic())

    @staticmethod
    def _take(sub):
        """(message, info) already waiting in ``sub``'s queue, or None (what the executor takes)."""
        with sub.handle:
            return sub.handle.take_message(sub.msg_type, False)

    def _ingest_inputs(self) -> None:
        """Before a frame is used, take the instructions and joint states already received: the
        joint state published just before the frame must not lose the race to it."""
        for sub, handle in zip(self._io[:3], (self._on_instruction, self._on_instruction,
                                              lambda msg, info: self._on_joints(msg))):
            while (taken := self._take(sub)) is not None:
                handle(*taken)

    def _on_tick(self) -> None:
        """rate_hz > 0: infer on the newest frame, if it is still fresh."""
        frame, self._slot = self._slot, None
        if frame is None:
            return
        if time.monotonic() - frame.received > self.params["max_input_age"]:
            self.ledger.settle("stale_image")
            return self._log("stale_image", "camera frame older than max_input_age when its tick came: not used")
        self._run(frame)

    def _on_instruction(self, msg: String, info: dict) -> None:  # two parameters: rclpy passes the message info
        if not self.inputs.first_delivery((info.get("source_timestamp"), info.get("publication_sequence_number"))):
            return
        try:
            text = instruction_from_msg(msg.data, self.params["max_instruction_chars"])
        except BadInput as e:
            self.ledger.count(e.kind)
            return self._log(e.kind, f"skipped instruction: {e}")
        self.inputs.instruct(text)
        self.ledger.count("instructions")
        self.get_logger().info(f"instruction: {text[:200]!r}" if text else "empty instruction: task stopped")

    def _on_joints(self, msg: JointState) -> None:
        try:
            pos, vel = joints_from_msg(msg, self.params["joint_names"])
        except BadInput as e:
            self.ledger.count(e.kind)
            return self._log(e.kind, f"skipped joint_states: {e}")
        self.inputs.add_joints(stamp_ns(msg) / 1e9, pos, vel, keep=self.params["max_input_age"] + 1.0)
        self.ledger.joint_state()

    # --- inference ---------------------------------------------------------------------------------
    def _run(self, frame: _Frame) -> None:
        outcome, seconds = "inference_errors", None
        try:
            self._ingest_inputs()
            outcome, seconds = self._infer(frame)
        except Exception as e:  # a model error must not kill the node
            self._log("inference_errors", f"inference failed: {type(e).__name__}: {e}", "error")
        finally:
            self.ledger.settle(outcome, seconds)

    def _infer(self, frame: _Frame):
        gen, text, expired = self.inputs.task(self.params["instruction_timeout"])
        if expired:
            self.ledger.count("instruction_timeouts")
            self.get_logger().warning("no instruction for instruction_timeout seconds: task stopped")
        if not self._active:
            return "inactive", None
        if text is None:
            self._log("waiting_for_instruction", "waiting for an instruction on 'instruction'", "info")
            return "waiting_for_instruction", None
        age = self.params["max_input_age"]
        joints = self.inputs.joints_at(frame.stamp / 1e9, age)
        if joints == MISSING:
            self._log("waiting_for_joint_state", "waiting for joint_states at or before the camera stamp", "info")
            return "waiting_for_joint_state", None
        if joints == STALE:
            self._log("stale_joint_state", f"joint_states older than the camera frame by more than "
                                           f"max_input_age {age} s: no output until fresh")
            return "stale_joint_state", None
        if gen != self._policy_task:  # a new (or restarted) task: fresh history, cached text
            self.policy.reset(text)
            self._policy_task = gen
        step = self.policy.act(frame.rgb, joints[1], joints[2], frame.stamp)
        rnd = self.policy.random_weights
        if self._send_actions:  # the action first: it is what a controller waits for
            self._pub["action"].publish(trajectory_to_msg(step.actions, ns_to_stamp(frame.stamp),
                                                          self.params["action_names"], self.params["control_period"]))
        self._pub["tokens"].publish(tokens_to_msg(step.tokens, rnd))
        self._pub["embedding"].publish(embedding_to_msg(step.embedding, rnd))
        self.joint_lag = frame.stamp / 1e9 - joints[0]
        return "outputs", step.seconds

    # --- handles for an in-process driver (rollouts, tests) ----------------------------------------
    def instruction(self) -> Optional[str]:
        """The instruction in force (None: none yet, or stopped)."""
        return self.inputs.instruction

    def reset_history(self) -> None:
        """Restart the current task (empty action history), as a repeated instruction would."""
        self.inputs.restart()

    # --- parameters ---------------------------------------------------------------------------------
    def _params_changed(self, names) -> None:
        if "rate_hz" in names and self._io:
            self._reset_timer()

    def _reset_timer(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
        rate = self.params["rate_hz"]
        self._timer = self.create_timer(1.0 / rate, self._on_tick) if rate > 0 else None
        if rate <= 0 and self._slot is not None:  # back to per frame: the waiting frame goes now
            self._run(self._slot)
            self._slot = None

    # --- diagnostics ------------------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticStatus:
        p, pol = self.params, self.policy
        level, message = self.ledger.status(self._active, self.inputs.instruction is not None, bool(pol and pol.random_weights),
                                            stale_after=max(2.0, 4 * p["max_input_age"]))
        values = {"lifecycle": "active" if self._active else ("inactive" if pol else "unconfigured"),
                  "fusion": p["fusion"], "checkpoint": p["checkpoint"] or "(none)",
                  "device": str(pol.device) if pol else "", "random_weights": str(bool(pol and pol.random_weights)).lower(),
                  "torch_threads": str(self.threads), "instruction": (self.inputs.instruction or "")[:120],
                  "joint_lag_s": f"{self.joint_lag:.4f}", **self.ledger.values()}
        return DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: inference",
                                message=message, hardware_id=values["device"],
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(msg)

    def destroy_node(self):
        self._active = False
        self._release()
        return super().destroy_node()


def main(args=None) -> int:
    return signals.run_node(VLANode, "vla_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
