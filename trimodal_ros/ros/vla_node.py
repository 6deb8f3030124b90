"""vla_node: camera + instruction + joint states in; embedding, action tokens, an action chunk and
diagnostics out, around one ``trimodal_ros.policy.Policy``. Here: messaging, threading, QoS, lifecycle
(topics: ``interface.py``, parameters ``params.py``, frame choice ``intake.py``, task and joints
``inputs.py``, accounting ``ledger.py``, outputs ``outputs.py``, ``~/stop`` and ``~/pause``
``services.py``, diagnostics ``status.py``, ``execution:=ensemble|latest`` ``control.py``; README "Node
behaviour"). The policy runs in the camera callback (``rate_hz`` > 0: a timer on the newest frame);
the callbacks share one mutually exclusive group (the executor's control timer has its own), and the
output gate orders a hold asked for from another thread against the action of a frame in the model."""

from __future__ import annotations

import dataclasses
import gc
import threading
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from .. import interface as I
from . import signals
from .control import ControlLoop
from .conversions import (BadInput, diagnostics_msg, instruction_from_msg, joint_values,
                          ns_to_stamp, qos_profile, stamp_ns)
from .goal import GoalRunner, Result
from .outputs import Outputs
from .inputs import Inputs
from .intake import CameraIntake, Frame, decode_image, take_waiting
from ..utils import release_freed_memory
from .ledger import STALE, WAITS, Ledger, input_events
from .params import VLA_PARAMS, against_checkpoint, declare, follow_updates
from .services import add_stop_and_pause
from .status import node_status
from .throttle import Throttle

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
HUGE_MESSAGE = 16 << 20  # bytes: a camera message this big gets its memory handed back to the OS


class VLANode(LifecycleNode):
    """See the module docstring. With ``autostart``, a checkpoint or parameter it cannot serve
    raises at construction, so a misconfigured launch fails at start instead of publishing garbage."""

    def __init__(self, node_name: str = "vla_node", **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self.params = declare(self, VLA_PARAMS)
            self.ledger, self.policy, self.error = Ledger(), None, None
            self.active, self._camera, self.inputs, self._policy_task = False, None, Inputs(), -1
            self.cameras = []  # the model's named cameras, primary first (set on configure)
            self.robot, self.joint_names, self.action_names, self._forecast = None, [], [], []  # from the checkpoint
            self._io, self._timer, self.threads, self.joint_lag, self.outputs = [], None, 0, float("nan"), None
            self.control: Optional[ControlLoop] = None  # execution:=ensemble|latest
            self.paused, self._holding, self._send_actions = False, True, False
            # an action goes out only if no hold (stop, pause, deactivate) came while the model ran
            self._out_gate = threading.RLock()
            self.scores = (float("nan"), float("nan"))  # the last frame's (agreement, ood)
            self._trim = False  # a huge message arrived: return its memory to the OS
            self._log = Throttle(self.get_logger(), lambda kind: self.ledger.snapshot().get(kind))
            self.intake = CameraIntake(self.ledger, self._log, self._stamp)
            self._pub_diag = self.create_publisher(DiagnosticArray, I.DIAGNOSTICS_TOPIC, qos_profile(I.RELIABLE))
            # on the steady clock: with use_sim_time and no /clock (a bag that ended) the node's clock
            # stops, exactly when diagnostics must say the inputs went stale
            self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
            self._on_stop, self._on_pause = add_stop_and_pause(self)
            self.goals = GoalRunner(self, self._instruct_now, lambda: self.inputs.task()[:2], self.hold,
                                    lambda: self.active, lambda: self.params["max_instruction_chars"])
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
            ex = p["execution"] != "chunk"  # the executor blends raw chunks and executes one row per tick
            self.policy = Policy.load(p["checkpoint"], p["fusion"] or None, p["config"], pick_device(p["device"]),
                                      p["seed"], 1 if ex else p["execute_steps"], {"ensemble": None} if ex else None,
                                      **{k: p[k] for k in ("precision", "cuda_graph")})
            self.robot = self.policy.config.robot  # topics, names and timing travel in the checkpoint
            self.joint_names, self.action_names, self._forecast = against_checkpoint(p, self.policy.config)
            self.threads = set_torch_threads(p["torch_threads"], self.policy)
        except Exception as e:  # ConfigError, CheckpointError, ValueError: refuse, say why
            self.policy, self.error = None, e
            self.get_logger().error(f"cannot configure: {type(e).__name__}: {e}")
            return FAILURE
        self._send_actions = not self.policy.random_weights or p["allow_random_weights"]
        self._holding = True  # nothing commanded yet: nothing to hold
        self._policy_task = -1  # a new policy object: the task in force must reach it
        if self.policy.random_weights:
            sent = "published anyway (allow_random_weights)" if self._send_actions else "NOT published"
            self.get_logger().warning(f"NO CHECKPOINT: random weights. Embeddings and tokens are published for "
                                      f"wiring tests (random_weights: true); trimodal/action is {sent}.")
        self._create_io()
        self.get_logger().info(f"configured: {self.policy.describe()} robot={self.robot.name} "
                               f"torch_threads={self.threads} cameras={' '.join(self._camera_topics)} "
                               f"image_qos={p['image_qos_reliability']}/{p['image_qos_depth']} "
                               f"rate={'per frame' if p['rate_hz'] <= 0 else str(p['rate_hz']) + ' Hz'}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False  # first: a frame in flight then drops its action instead of sending it after the hold
        self.hold("deactivated")  # while the publisher is still active
        self.goals.end(Result.ABORTED)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.hold("shutting down")
        self.goals.end(Result.ABORTED)
        self._release()
        return SUCCESS

    def _create_io(self) -> None:
        p = self.params
        image_qos = qos_profile(I.Qos(p["image_qos_reliability"], "volatile", p["image_qos_depth"],
                                      deadline=p["input_deadline"]))
        joints_qos = qos_profile(dataclasses.replace(I.JOINTS_QOS, deadline=p["input_deadline"]))
        primary, *others = self.cameras = list(self.policy.model_config.cameras)
        inputs = [c.input(p["image_transport"]) for c in self.robot.cameras]
        topics = self._camera_topics = [t for t, _ in inputs]
        kinds = [CompressedImage if compressed else Image for _, compressed in inputs]
        self._camera = cam = self.create_subscription(kinds[0], topics[0], self._on_image,
                                                      image_qos, event_callbacks=input_events(self, topics[0]))
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)  # the other one matches
        self._io = [  # _ingest_inputs takes from all but the last (the primary camera) before inferring
            *(self.create_subscription(String, self.robot.instruction_topic, self._on_instruction, qos_profile(q),
                                       event_callbacks=quiet) for q in I.INSTRUCTION_QOS),
            *(self.create_subscription(JointState, t, self._on_joints, joints_qos,
                                       event_callbacks=input_events(self, t)) for t in self.robot.joint_topics),
            *(self.create_subscription(k, t, lambda msg, c=c: self._on_view(c, msg), image_qos,
                                       event_callbacks=input_events(self, t))
              for c, t, k in zip(others, topics[1:], kinds[1:])), cam]
        self.outputs = Outputs(self, self.robot, self.action_names, p["output_deadline"],
                               p["output_liveliness_lease"])
        self.control = (None if p["execution"] == "chunk" else
                        ControlLoop(self, self.policy.model_config.chunk, self._control_period(), p["execution"],
                                    self._command))
        self._reset_timer()

    @property
    def spin_threads(self) -> int:  # the executor's control timer runs beside the model
        return 1 if self.params["execution"] == "chunk" else 2

    def _control_period(self) -> float:
        return self.params["control_period"] or self.robot.control_period

    def _release(self) -> None:
        """Drop the topics and the model (cleanup, shutdown, destroy)."""
        with self._out_gate:  # not while an inference publishes its outputs
            self.intake.drop()
            for s in self._io:
                self.destroy_subscription(s)
            if self.outputs is not None:
                self.outputs.release()
            for timer in (self._timer, self.control and self.control.timer):
                if timer is not None:
                    self.destroy_timer(timer)
            self._io, self.outputs, self._timer, self._camera = [], None, None, None
            self.policy = self.control = None
        gc.collect()  # the model's tensors, now, and their pages back to the OS (a reconfigure loads another)
        release_freed_memory()

    # --- callbacks: the camera's runs the policy; the others only decode, check and store -------------
    def _on_image(self, msg) -> None:
        self._trim = self._trim or len(msg.data) > HUGE_MESSAGE  # its memory goes back to the OS at 1 Hz
        per_frame = self.params["rate_hz"] <= 0
        frame = self.intake.newest(msg, self._camera if self.active and per_frame else None)
        if frame is None:
            return
        if not self.active:
            self.ledger.settle("inactive")
        elif per_frame:
            self._run(frame)
        else:  # the timer infers on the newest frame
            self.intake.put(frame)

    def _ingest_inputs(self) -> None:
        """Before a frame is used, take the instructions, joint states and other cameras' frames
        already received: the joint state published just before the frame must not lose the race to it.
        Under the output gate, so a cleanup does not destroy a subscription being taken from."""
        with self._out_gate:
            for sub in self._io[:-1]:
                while (taken := take_waiting(sub)) is not None:
                    sub.callback(*taken[:2 if sub.callback == self._on_instruction else 1])

    def _on_tick(self) -> None:
        """rate_hz > 0: infer on the newest frame, if it is still fresh."""
        frame = self.intake.pop(self.params["max_input_age"])
        if frame is not None:
            self._run(frame)

    def _on_instruction(self, msg: String, info: dict) -> None:  # two parameters: rclpy passes the message info
        late = self.inputs.admit((info.get("source_timestamp"), info.get("publication_sequence_number")))
        if late == "superseded":  # sent before the instruction in force: applying it would undo a newer one
            self.ledger.count("superseded_instructions")
            return self._log("superseded_instructions", "skipped an instruction sent before the one in force "
                             "(delivered late, or from a publisher whose clock is behind)")
        if late:
            return
        try:
            text = instruction_from_msg(msg.data, self.params["max_instruction_chars"])
        except BadInput as e:
            self.ledger.count(e.kind)
            return self._log(e.kind, f"skipped instruction: {e}")
        self.ledger.count("instructions")
        if self.inputs.instruct(text):
            self.get_logger().info(f"instruction: {text[:200]!r}" if text else "empty instruction: task stopped")
            if not text:
                self.hold("stopped")

    # --- safety: stop, pause, hold ----------------------------------------------------------------
    def _instruct_now(self, text: str) -> int:
        """Set the task as an instruction message would (the follow_instruction action); its generation.
        A goal is a fresh start even with the words already in force."""
        if self.inputs.instruct(text):
            if not text:
                self.hold("stopped")
        elif text:
            self.inputs.restart()
        return self.inputs.task()[0]

    def hold(self, why: str) -> None:
        """Tell the controller to hold (a JointTrajectory with the action names and no points: ros2_control's
        "stop and hold position"), once per stop of the outputs; under the output gate, so the action of a
        frame that was in the model when the hold was asked for never follows it."""
        with self._out_gate:
            if self.control is not None:
                self.control.reset()  # no stored chunk runs on after a hold
            if self._holding or self.outputs is None or not self._send_actions:
                return
            self.outputs.hold(self.get_clock().now().to_msg())
            self._holding = True
        self.ledger.count("holds")
        self.get_logger().warning(f"hold published on {I.ACTION_TOPIC}: {why}")

    def _command(self, action) -> None:
        """execution:=ensemble|latest: this control period's command, unless a hold came since its chunk was added."""
        with self._out_gate:
            if self.active and not self.paused and self._send_actions and (task := self.inputs.task())[1]:
                self.outputs.action(action[None], self.get_clock().now().to_msg(), "", self._control_period())
                self._holding = False
                self.goals.acted(task[0])

    def _on_joints(self, msg: JointState) -> None:
        p = self.params
        try:
            values = joint_values(msg, self.joint_names)
        except BadInput as e:
            self.ledger.count(e.kind)
            return self._log(e.kind, f"skipped joint_states: {e}")
        missing = self.inputs.merge_joints(self._stamp(msg) / 1e9, values, self.joint_names, p["max_input_age"],
                                           keep=p["max_input_age"] + 1.0)
        if missing:  # nor did another publisher (arm and gripper apart) send them within max_input_age
            self.ledger.count("missing_joints")
            return self._log("missing_joints", f"joint_states lacks joints {missing} (and no other joint_states "
                                               f"message within max_input_age has them)")
        self.ledger.joint_state()

    def _stamp(self, msg) -> int:
        """An input's time (ns): its header stamp, or its arrival on the node's clock (``input_stamps:=receipt``)."""
        return self.get_clock().now().nanoseconds if self.params["input_stamps"] == "receipt" else stamp_ns(msg)

    def _on_view(self, camera: str, msg) -> None:
        """A frame of another camera of a multi-camera model: stored until a primary frame uses it."""
        try:
            rgb = decode_image(msg)
        except BadInput as e:
            self.ledger.count("bad_secondary_image")
            return self._log("bad_secondary_image", f"skipped bad {camera} image: {e}")
        self.inputs.add_view(camera, self._stamp(msg) / 1e9, rgb, keep=self.params["max_input_age"] + 1.0)

    # --- inference ---------------------------------------------------------------------------------
    def _run(self, frame: Frame) -> None:
        outcome, seconds = "inference_errors", None
        try:
            self._ingest_inputs()
            outcome, seconds = self._infer(frame)
        except Exception as e:  # a model error must not kill the node
            self._log("inference_errors", f"inference failed: {type(e).__name__}: {e}", "error")
        finally:
            self.ledger.settle(outcome, seconds)

    def _infer(self, frame: Frame):
        p = self.params
        gen, text, joints, expired, wait = self.inputs.gate(frame.stamp / 1e9, p["max_input_age"],
                                                            p["instruction_timeout"])
        if expired:
            self.ledger.count("instruction_timeouts")
            self.get_logger().warning("no instruction for instruction_timeout seconds: task stopped")
        pol, control = self.policy, self.control  # a cleanup may drop them while the model runs
        if not self.active or pol is None:
            return "inactive", None
        if self.paused:
            return "paused", None
        views = self.inputs.views_at(self.cameras[1:], frame.stamp / 1e9, p["max_input_age"]) if not wait else {}
        wait = wait or (views if isinstance(views, str) else None)
        if wait:
            self._log(wait, *WAITS[wait])
            self.hold(WAITS[wait][0])
            return wait, None
        if changed := gen != self._policy_task:  # a new (or restarted) task: fresh history, cached text
            pol.reset(text)
            self._policy_task = gen
        origin, positions = 0, joints[1]  # row 0's tick; forecast: the targets commanded for then
        if control is not None:
            origin, positions = control.start(positions, self._forecast, reset=changed)
        step = pol.act({self.cameras[0]: frame.rgb, **views}, positions, joints[2], frame.stamp, p["min_agreement"])
        self.scores = (step.agreement, step.ood)
        stamp, frame_id = ns_to_stamp(frame.stamp), frame.frame_id  # every output carries the frame's header
        with self._out_gate:  # a stop, pause, deactivate or cleanup while the model ran: its hold stands
            if not self.active or self.paused or self.inputs.task()[0] != gen or pol is not self.policy:
                return "overtaken", step.seconds  # (a reconfigure: another model, other outputs)
            if step.refused:  # the words do not fit the scene: do not act on them
                self.outputs.scores(step, stamp, frame_id)
                self._log("instruction_mismatch", f"instruction–scene agreement {step.agreement:.3f} < "
                                                  f"min_agreement {p['min_agreement']}: holding")
                self.hold("the instruction does not fit the scene")
                return "instruction_mismatch", step.seconds
            if control is not None:  # executed at the control rate (_command)
                control.add(step.actions, origin)
            elif self._send_actions:  # the action first: it is what a controller waits for
                self.outputs.action(step.actions, stamp, frame_id, self._control_period())
                self._holding = False
                self.goals.acted(gen)
            mc = pol.model_config
            self.outputs.step(step, stamp, frame_id, mc.bins, mc.fusion, pol.random_weights)
        self.joint_lag = frame.stamp / 1e9 - joints[0]
        return "outputs", step.seconds

    def instruction(self) -> Optional[str]:  # --- handles for an in-process driver (rollouts, tests)
        """The instruction in force (None: none yet, or stopped)."""
        return self.inputs.instruction

    def reset_history(self) -> None:
        """Restart the current task (empty action history), as a repeated instruction would."""
        self.inputs.restart()

    # --- parameters ---------------------------------------------------------------------------------
    def _params_changed(self, names) -> None:
        if "rate_hz" in names and self._io:
            self._reset_timer()
        if "control_period" in names and self.control is not None:
            self.control.retime(self._control_period())

    def _reset_timer(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
        rate = self.params["rate_hz"]
        self._timer = self.create_timer(1.0 / rate, self._on_tick) if rate > 0 else None
        if rate <= 0 and (frame := self.intake.pop()) is not None:  # back to per frame: the waiting frame goes now
            self._run(frame)

    # --- diagnostics ------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        level, message, values = node_status(self)
        if level == STALE and self.active:  # the camera fell silent: no frame will ask for a hold
            self.hold("no camera frames")
        if self._trim:
            self._trim = False
            release_freed_memory()
        self._pub_diag.publish(diagnostics_msg(f"{self.get_fully_qualified_name()}: inference", level, message,
                                               values, self.get_clock().now().to_msg(), values["device"]))

    def destroy_node(self):
        self.active = False
        if hasattr(self, "goals"):
            self.goals.destroy()
        self._release()
        return super().destroy_node()


def main(args=None) -> int:
    return signals.run_node(VLANode, "vla_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
