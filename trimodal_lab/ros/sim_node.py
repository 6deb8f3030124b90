"""sim_node: a simulated robot on ROS 2, so vla_node can be scored closed-loop through real topics.

Parameter ``sim`` picks the simulator (``sim.scenes.SIMS``): ``metaworld`` (the default; below) or
``reacher`` (gymnasium's two-joint Reacher on the topics of ``config/robots/gym_reacher.yaml``: a
jpeg CompressedImage camera, its joint states and instruction under ``reacher/``, absolute joint
targets in rad). Each publishes what its robot spec names, in the same order and with the same
stamping as below. For Meta-World (relative topics, so a namespace moves them; ``/clock`` is
absolute, as ROS expects):

* ``camera/image_raw``  sensor_msgs/Image rgb8, upright, stamped with **sim time** (with a
                        ``camera`` spec of several named cameras, ``NAME/image_raw`` each, same
                        stamp, the primary published last);
* ``joint_states``      sensor_msgs/JointState, SAWYER_JOINTS positions + velocities, same stamp,
                        published just before the frame it belongs to;
* ``instruction``       std_msgs/String, reliable + transient-local (a late vla_node still gets it),
                        a train or held-out paraphrase (parameter ``instructions``) or ``instruction``;
* ``/clock``            rosgraph_msgs/Clock: nodes with use_sim_time=true follow the simulation;
* ``sim/episode``       std_msgs/String JSON at every episode end (task, layout, success, length,
                        ticks, seconds, counters), latched; also logged.

Subscribes ``trimodal/action`` (trajectory_msgs/JointTrajectory, what vla_node publishes) and
``sim/reset`` (std_msgs/String JSON ``{"layout": 42, "instruction": "..."}``, both optional:
start the next episode now).

Synchronous stepping (the only mode): the node publishes one frame, then waits for the trajectory
whose header.stamp equals that frame's stamp; it executes the first ``execute_steps`` points of
it (receding horizon; point k = the action for the k-th env step after the frame, each clipped
to [-1, 1], stopping early at success: ``sim.rollout.EpisodeStepper``, the very rule the
in-process rollout uses) and only then renders and publishes the next frame. So a slow model
never makes the robot act on a stale frame, and sim time advances only when the sim steps. If no
answer comes within ``action_timeout`` wall seconds the same frame is published again (counted:
a frame lost, or the model still waiting for its instruction). Trajectories stamped before the
current frame are ignored (``stale_actions``), ones with any other stamp too
(``unmatched_actions``); trajectories of the wrong shape (joint_names ≠ ``action_names``, a point
with another number of positions, no points, NaN/inf) are refused with a logged error (``refused_actions``) and
never stepped with.

Sim time is monotonic across episodes (each episode continues where the previous one ended), so
the clock never jumps back and stamps never repeat. All MuJoCo work runs on one sim thread (the
EGL context belongs to the thread that created it); callbacks only enqueue.
"""

from __future__ import annotations

import collections
import json
import queue
import threading
import time
from typing import Callable, Dict, List, Optional

import numpy as np
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from trimodal_ros import interface as I
from trimodal_ros.ros.conversions import (BadInput, compressed_image_to_msg, duration_to_sec, image_to_msg,
                                          joints_to_msg, ns_to_stamp, qos_profile, stamp_ns)
from trimodal_ros.ros.params import SIM_PARAMS, declare, follow_updates
from trimodal_ros.ros.throttle import Throttle

COUNTERS = ("refused_actions", "stale_actions", "unmatched_actions", "action_timeouts", "frames", "steps",
            "episodes", "bad_resets", "dropped_events", "holds")
KEEP = 1000           # finished episodes kept in memory (outcomes, traces): a long-running sim stays bounded
MAX_EVENTS = 10_000   # callbacks → sim thread queue; beyond it events are dropped and counted
START_TIMEOUT = 300.0  # seconds for the sim thread to build its scene (MuJoCo + renderer)


def chunk_from_trajectory(msg: JointTrajectory, action_names: List[str]) -> np.ndarray:
    """JointTrajectory → (K, A) actions, or BadInput("refused_actions") saying what is wrong: a
    robot must never move on a command of the wrong shape or with NaNs in it."""
    names, a = list(msg.joint_names), len(action_names)
    if names != list(action_names):
        raise BadInput("refused_actions", f"trajectory has {len(names)} joint_names {names[:8]}, expected the "
                                          f"{a} action dims {list(action_names)}")
    if not msg.points:
        raise BadInput("refused_actions", "trajectory has no points")
    for k, p in enumerate(msg.points):
        if len(p.positions) != a:
            raise BadInput("refused_actions", f"trajectory point {k} has {len(p.positions)} positions, expected {a}")
    chunk = np.asarray([p.positions for p in msg.points], dtype=np.float64)
    if not np.all(np.isfinite(chunk)):
        raise BadInput("refused_actions", "trajectory has NaN or infinite positions")
    return chunk


class SimNode(Node):
    """See the module docstring. ``start_episode`` / ``wait_episodes`` are the rollout driver's
    in-process handles; ``sim/reset`` is the same over a topic."""

    def __init__(self, node_name: str = "sim_node", **kwargs):
        super().__init__(node_name, **kwargs)
        from trimodal_lab.sim.scenes import get_sim

        p = declare(self, SIM_PARAMS)  # ValueError names a bad parameter
        self.sim = get_sim(p["sim"])
        self.sim.check(p)  # unknown task: fail at start, with the task list
        robot = self.sim.robot(p)
        if len(robot.joint_topics) != 1:
            raise ValueError(f"sim_node publishes one joint-state topic; {robot.name} names {robot.joint_topics}")
        p["action_names"] = list(p["action_names"]) or list(robot.action.names)
        self.params = p
        follow_updates(self, SIM_PARAMS, self.params)
        self.counters: Dict[str, int] = {k: 0 for k in COUNTERS}
        self.outcomes: collections.deque = collections.deque(maxlen=KEEP)  # finished episodes (also on sim/episode)
        self.traces: collections.deque = collections.deque(maxlen=KEEP)  # the actions executed, per episode
        self.episodes_done, self._instruction = 0, None
        self._lock = threading.Condition()
        self._log = Throttle(self.get_logger(), lambda kind: self.counters.get(kind))
        self._rng = np.random.default_rng([p["seed"], 11])
        self._events: "queue.Queue" = queue.Queue(maxsize=MAX_EVENTS)
        self.finished = threading.Event()  # `episodes` episodes done (autostart); the CLI exits

        reliable, latched = qos_profile(I.RELIABLE), qos_profile(I.LATCHED)
        self._pub_clock = self.create_publisher(Clock, I.CLOCK_TOPIC, 10)
        self._pub_joints = self.create_publisher(JointState, robot.joint_topics[0], reliable)
        self._frame_ids = self.sim.frame_ids(p)  # {camera name: header.frame_id}, primary first
        self._compressed = {c.name: c.compressed for c in robot.cameras}
        self._pub_views = {c.name: self.create_publisher(CompressedImage if c.compressed else Image, c.topic, reliable)
                           for c in robot.cameras}
        self._pub_image = self._pub_views[robot.cameras[0].name]
        self._pub_instruction = self.create_publisher(String, robot.instruction_topic, latched)
        self._pub_episode = self.create_publisher(String, I.SIM_EPISODE_TOPIC, latched)
        self.create_subscription(JointTrajectory, I.ACTION_TOPIC, lambda m: self._put(("action", m)), reliable)
        self.create_subscription(String, I.SIM_RESET_TOPIC, self._on_reset, reliable)

        self._ready, self._init_error = threading.Event(), None
        self._thread = threading.Thread(target=self._run, name=f"{node_name}-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self._init_error = TimeoutError(f"the simulation did not start within {START_TIMEOUT} s")
        if self._init_error is not None:
            super().destroy_node()
            raise self._init_error
        self.get_logger().info(
            f"ready: sim={p['sim']} task={p['task']} layout={'cycle held-out' if p['layout'] < 0 else p['layout']} "
            f"size={p['size']} max_steps={p['max_steps']} execute_steps={p['execute_steps']} "
            f"dt={self.dt_ns / 1e6:.1f} ms action_timeout={p['action_timeout']} s (synchronous stepping)")
        if p["autostart"]:
            self.start_episode()

    # --- driver handles ----------------------------------------------------------------------------
    def start_episode(self, layout: Optional[int] = None, instruction: Optional[str] = None,
                      ready: Optional[Callable[[], bool]] = None) -> None:
        """Queue a new episode (ends a running one unscored). ``layout`` None follows the
        ``layout`` parameter; ``instruction`` None draws a paraphrase. ``ready``, if given, is
        polled (up to action_timeout) after the instruction is published and before the first
        frame: the in-process driver uses it to wait until vla_node holds the new instruction.
        A layout the simulator does not have (its ``check_layout``) or an instruction that is
        not a string raises ValueError."""
        if layout is not None:
            layout = self.sim.check_layout(layout)
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"instruction must be a string, got {instruction!r}")
        self._put(("start", layout, instruction, ready), block=True)

    def wait_episodes(self, n: int, timeout: float) -> bool:
        """Block until ``n`` episodes have finished (or ``timeout`` wall seconds passed)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.episodes_done >= n or self._init_error is not None, timeout)

    def outcome(self, i: int) -> dict:
        """Episode ``i`` (counted from the node's start); IndexError unless among the last KEEP."""
        with self._lock:
            return self.outcomes[self._kept(i)]

    def trace(self, i: int) -> List[np.ndarray]:
        with self._lock:
            return list(self.traces[self._kept(i)])

    def _kept(self, i: int) -> int:
        j = i - (self.episodes_done - len(self.outcomes))
        if not 0 <= j < len(self.outcomes):
            raise IndexError(f"episode {i} is not among the last {len(self.outcomes)} kept")
        return j

    def _put(self, event, block: bool = False) -> None:
        try:
            self._events.put(event, block=block, timeout=10.0 if block else None)
        except queue.Full:
            self._count("dropped_events")
            self._log("dropped_events", "event queue full: an event was dropped (a publisher floods "
                                        "trimodal/action or sim/reset?)", "warning")

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.counters)

    # --- callbacks: enqueue only -------------------------------------------------------------------
    def _on_reset(self, msg: String) -> None:
        """``{"layout": L, "instruction": "..."}`` (both optional); anything else is refused
        with a logged error and counted, and the simulation goes on."""
        try:
            req = json.loads(msg.data) if msg.data.strip() else {}
            if not isinstance(req, dict):
                raise ValueError("not a JSON object")
            unknown = sorted(set(req) - {"layout", "instruction"})
            if unknown:
                raise ValueError(f"unknown key(s) {unknown}; expected layout, instruction")
            self.start_episode(req.get("layout"), req.get("instruction"))
        except ValueError as e:
            self._count("bad_resets")
            self._log("bad_resets", f"sim/reset: refused {msg.data[:100]!r}: {e}", "error", every=0.0)

    # --- the sim thread: owns the scene -------------------------------------------------------------
    def _run(self) -> None:
        from trimodal_lab.sim.rollout import EpisodeStepper

        p = self.params
        try:
            scene = self.sim.scene(p)
        except BaseException as e:  # noqa: BLE001 - re-raised by the constructor
            self._init_error = e
            self._ready.set()
            return
        self.dt_ns = scene.dt_ns
        self._stepper = EpisodeStepper(scene, p["max_steps"], p["execute_steps"])
        self._running = False
        self._sim_ns: Optional[int] = None  # monotonic sim clock (see the module docstring)
        self._awaiting: Optional[int] = None  # stamp (ns) of the frame we wait an answer for
        self._ready.set()
        try:
            while True:
                try:
                    ev = self._events.get(timeout=0.05)
                except queue.Empty:
                    ev = None
                if ev is not None and ev[0] == "stop":
                    break
                try:
                    if ev is not None and ev[0] == "start":
                        self._start(*ev[1:])
                    elif ev is not None and ev[0] == "action":
                        self._on_action(ev[1])
                except Exception as e:  # noqa: BLE001 - one bad event must not end the simulation
                    self._log("event_errors", f"{ev[0]} failed: {type(e).__name__}: {e}", "error", every=0.0)
                if (self._awaiting is not None and time.monotonic() - self._sent_at > p["action_timeout"]):
                    self._count("action_timeouts")
                    self._log("action_timeouts", f"no trimodal/action for the frame at sim time "
                                                 f"{self._awaiting / 1e9:.4f} s within {p['action_timeout']} s: "
                                                 f"publishing it again", "warning")
                    self._publish_observation(again=True)
        except Exception as e:  # noqa: BLE001 - say why the sim stopped instead of dying silently
            self.get_logger().fatal(f"sim thread failed: {type(e).__name__}: {e}")
            raise
        finally:
            scene.close()

    def _start(self, layout, instruction, ready) -> None:
        p = self.params
        if self._running:
            self.get_logger().warning("new episode requested: the running one ends unscored")
        if layout is None:
            n = self.episodes_done
            held = self.sim.heldout_layouts
            layout = p["layout"] if p["layout"] >= 0 else held[n % len(held)]
        if not instruction:
            instruction = p["instruction"] or self.sim.instruction(p, self._rng)
        st = self._stepper
        st.reset(int(layout))
        self._scene_t0 = st.scene.time_ns
        self._sim_ns = self._scene_t0 if self._sim_ns is None else self._sim_ns + self.dt_ns
        self._episode_t0_ns = self._sim_ns
        if instruction == self._instruction:  # the same words again only go on with a task: stop it first
            self._pub_instruction.publish(String(data=""))
        self._instruction, self._trace, self._running = instruction, [], True
        self._at_start = self.counts()
        self._pub_instruction.publish(String(data=instruction))
        self.get_logger().info(f"episode {self.episodes_done}: {st.scene.task} layout {layout}: {instruction!r}")
        # vla_node must hold the new instruction before the first frame; the driver can tell
        # (``ready``), a remote node cannot: wait for a camera subscriber, then let the latched
        # instruction settle. A frame that still goes unanswered is re-sent after action_timeout.
        end = time.monotonic() + p["action_timeout"]
        if ready is None:
            ready = lambda: self._pub_image.get_subscription_count() > 0  # noqa: E731
            settle = p["instruction_settle"]
        else:
            settle = 0.0
        while time.monotonic() < end and not ready():
            time.sleep(0.005)
        time.sleep(settle)
        self._publish_observation()

    def _publish_observation(self, again: bool = False) -> None:
        views, pos, vel = self._stepper.observe()
        t = self._sim_ns
        stamp = ns_to_stamp(t)
        self._pub_clock.publish(Clock(clock=stamp))
        self._pub_joints.publish(joints_to_msg(self._stepper.scene.joint_names, pos, vel, stamp))
        for cam in reversed(list(views)):  # the primary last: its frame is the tick vla_node answers
            to_msg = compressed_image_to_msg if self._compressed[cam] else image_to_msg
            self._pub_views[cam].publish(to_msg(views[cam], stamp=stamp, frame_id=self._frame_ids[cam]))
        self._awaiting, self._sent_at = t, time.monotonic()
        if not again:
            self._count("frames")

    def _on_action(self, msg: JointTrajectory) -> None:
        if not msg.points and list(msg.joint_names) == list(self.params["action_names"]):
            return self._count("holds")  # vla_node's hold (no points): the simulated robot is stepped only on actions
        try:
            chunk = chunk_from_trajectory(msg, self.params["action_names"])
        except BadInput as e:
            self._count(e.kind)
            return self._log(e.kind, f"REFUSED trimodal/action: {e}; the robot did not move", "error")
        t = stamp_ns(msg)
        if self._awaiting is None or t < self._awaiting:
            self._count("stale_actions")
            return self._log("stale_actions", f"ignored a trajectory stamped {t / 1e9:.4f} s, older than the "
                                              f"current frame", "info")
        if t != self._awaiting:
            self._count("unmatched_actions")
            return self._log("unmatched_actions", f"ignored a trajectory stamped {t / 1e9:.4f} s: no frame has "
                                                  f"that stamp (current {self._awaiting / 1e9:.4f} s)", "warning")
        self._check_timing(msg)
        st, self._awaiting = self._stepper, None
        done = st.apply(chunk)
        self._trace.extend(done)
        self._sim_ns = self._episode_t0_ns + (st.scene.time_ns - self._scene_t0)
        with self._lock:
            self.counters["steps"] += len(done)
        if st.done:
            self._finish()
        else:
            self._publish_observation()

    def _check_timing(self, msg: JointTrajectory) -> None:
        """Point k is executed at env step k after the frame; say so once if the sender meant
        another spacing (vla_node's control_period should equal the sim's step: 12.5 ms in Meta-World)."""
        dt = self.dt_ns / 1e9
        if any(abs(duration_to_sec(q.time_from_start) - (k + 1) * dt) > dt / 2 for k, q in enumerate(msg.points)):
            self._log("timing", f"trajectory points are not spaced by the sim step {dt * 1e3:.1f} ms "
                                f"(time_from_start); executing them one per step anyway", "warning", every=60.0)

    def _finish(self) -> None:
        st = self._stepper
        o = st.outcome()
        c = self.counts()
        out = {"event": "episode_end", "episode": self.episodes_done, "task": o.task, "layout": o.layout,
               "instruction": self._instruction, "success": o.success, "length": o.length, "ticks": o.ticks,
               "seconds": o.seconds, "control_rate_hz": o.ticks / o.seconds if o.seconds > 0 else None,
               "sim_time_start": self._episode_t0_ns / 1e9, "sim_time_end": self._sim_ns / 1e9,
               **{k: c[k] - self._at_start[k] for k in ("refused_actions", "stale_actions", "unmatched_actions",
                                                          "action_timeouts")}}
        self._running = False
        with self._lock:  # record first: whoever sees sim/episode can read outcomes and traces
            self.counters["episodes"] += 1
            self.outcomes.append(out)
            self.traces.append(self._trace)
            self.episodes_done += 1
            self._lock.notify_all()
        self._pub_episode.publish(String(data=json.dumps(out)))
        self.get_logger().info(
            f"episode {out['episode']} done: {o.task} layout {o.layout} "
            f"{'SUCCESS' if o.success else 'failure'} after {o.length} steps ({o.ticks} ticks, "
            f"{o.ticks / max(o.seconds, 1e-9):.1f} Hz)")
        p = self.params
        if p["autostart"]:
            if p["episodes"] <= 0 or self.episodes_done < p["episodes"]:
                self.start_episode()
            else:
                self.finished.set()

    # --- bookkeeping -------------------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        with self._lock:
            self.counters[kind] += 1

    def destroy_node(self):
        """Stop the sim thread (it owns the renderer) before the node's handles go away."""
        self._events.put(("stop",))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
        return super().destroy_node()


def spin_until_finished(node: SimNode, context=None) -> None:
    """Spin ``node`` until its ``episodes`` are done, Ctrl-C, or an external shutdown."""
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while not node.finished.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # executors first: rclpy.shutdown() under a spinning executor aborts


def main(args=None) -> int:
    from trimodal_ros.ros import signals

    return signals.run_node(SimNode, "sim_node", args, spin_until_finished)


if __name__ == "__main__":
    import sys

    sys.exit(main())
