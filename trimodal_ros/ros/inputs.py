"""vla_node's latest inputs, without rclpy and thread-safe: the task (instruction, restart count,
timeout), and buffers of joint states and of the other cameras' frames that hold a span of *time*,
not a count of messages."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from ..data.align import MISSING, STALE, select_latest  # the alignment training used

JointSample = Tuple[float, object, object]  # (stamp s, positions, velocities or None)


class Gate(NamedTuple):
    """What a frame may use (``Inputs.gate``)."""

    generation: int              # the task in force (a new instruction or a restart makes a new one)
    instruction: Optional[str]
    joints: Any                  # the joint sample at the frame, or None
    expired: bool                # the task just timed out
    wait: Optional[str]          # what holds the frame back: waiting_for_instruction, waiting_for_joint_state,
                                 # stale_joint_state; None: go


class Inputs:
    def __init__(self):
        self._lock = threading.Lock()
        self._task: Tuple[int, Optional[str]] = (0, None)  # (generation, instruction or None)
        self._at = 0.0  # time.monotonic() of the last instruction message
        self._seen: collections.deque = collections.deque(maxlen=64)  # message orders already taken
        self._newest = None  # the order of the newest instruction message taken
        self._joints = _TimeBuffer()  # JointSample items
        self._parts: Dict[str, tuple] = {}  # joint name → (stamp s, position, velocity or None), the latest
        self._views: Dict[str, _TimeBuffer] = {}  # other cameras: (H, W, 3) frames

    # --- the task --------------------------------------------------------------------------------
    def admit(self, order) -> Optional[str]:
        """Whether an instruction message may change the task, by ``order`` = (source timestamp ns,
        publication sequence number) from its message info: None when it is the newest sent so far;
        "duplicate" for one taken already (a latched publisher's message reaches both instruction
        subscriptions); "superseded" for one sent before the message in force (the two subscriptions
        deliver interleaved, so a command may arrive after the stop sent behind it). A message
        without a source timestamp (an RMW that gives none) is taken in arrival order."""
        if not order or not order[0]:
            return None
        with self._lock:
            if order in self._seen:
                return "duplicate"
            self._seen.append(order)
            if self._newest is not None and order < self._newest:
                return "superseded"
            self._newest = order
            return None

    def instruct(self, text: str) -> bool:
        """An instruction message ("" stops). A different instruction (or the first) starts a new task
        generation: True. The one in force again (``ros2 topic pub`` repeats its message every
        second) only refreshes the timeout: False; ``restart`` starts it over."""
        text = text or None
        with self._lock:
            self._at = time.monotonic()
            if text is not None and text == self._task[1]:
                return False
            self._task = (self._task[0] + 1, text)
            return True

    def restart(self) -> None:
        """The task in force starts over: a new generation (the policy's history starts over)."""
        with self._lock:
            self._task = (self._task[0] + 1, self._task[1])

    def task(self, timeout: float = 0.0) -> Tuple[int, Optional[str], bool]:
        """(generation, instruction or None, whether it just timed out): with ``timeout`` > 0 a task
        whose last message is older than that many seconds ends."""
        with self._lock:
            expired = self._task[1] is not None and timeout > 0 and time.monotonic() - self._at > timeout
            if expired:
                self._task = (self._task[0] + 1, None)
            return self._task[0], self._task[1], expired

    @property
    def instruction(self) -> Optional[str]:
        with self._lock:
            return self._task[1]

    # --- joint states and other cameras' frames ------------------------------------------------------
    def add_joints(self, t: float, positions, velocities, keep: float) -> None:
        """Append a joint state stamped ``t`` s, keeping ``keep`` seconds before the newest one."""
        with self._lock:
            self._joints.add(t, (t, positions, velocities), keep)

    def merge_joints(self, t: float, values: dict, names, max_age: float, keep: float) -> Optional[list]:
        """Joints of one message stamped ``t`` ({name: (position, velocity or None)}) joined with the
        latest of the others (arm and gripper from separate publishers): when every joint of ``names``
        has a value no further than ``max_age`` from ``t``, a joint state stamped ``t`` is added and
        None returned; else the joints still missing."""
        with self._lock:
            for j, pv in values.items():
                self._parts[j] = (t, *pv)
            missing = [j for j in names if j not in self._parts or abs(t - self._parts[j][0]) > max_age]
            if missing:
                return missing
            pos = np.array([self._parts[j][1] for j in names], np.float32)
            vel = [self._parts[j][2] for j in names]
        self.add_joints(t, pos, None if None in vel else np.array(vel, np.float32), keep)
        return None

    def joints_at(self, t: float, max_age: float):
        """The latest joint state at or before ``t`` (``select_latest``): a JointSample, or
        MISSING / STALE."""
        with self._lock:
            return self._joints.at(t, max_age)

    def add_view(self, camera: str, t: float, rgb, keep: float) -> None:
        """A frame of a camera other than the primary, stamped ``t`` s (kept like joint states)."""
        with self._lock:
            self._views.setdefault(camera, _TimeBuffer()).add(t, rgb, keep)

    def views_at(self, cameras, t: float, max_age: float):
        """{camera: its latest frame at or before ``t``} for ``cameras``, or the outcome holding the
        frame back: "waiting_for_camera" (none yet) / "stale_camera" (older than ``max_age``)."""
        out = {}
        with self._lock:
            for c in cameras:
                v = self._views.get(c, _TimeBuffer()).at(t, max_age)
                if isinstance(v, int):
                    return "waiting_for_camera" if v == MISSING else "stale_camera"
                out[c] = v
        return out

    def gate(self, t: float, max_age: float, timeout: float = 0.0) -> Gate:
        """What a frame stamped ``t`` s may use (``Gate``); ``expired`` as ``task`` says it."""
        gen, text, expired = self.task(timeout)
        if text is None:
            return Gate(gen, None, None, expired, "waiting_for_instruction")
        joints = self.joints_at(t, max_age)
        if isinstance(joints, int):  # MISSING or STALE, not a sample
            return Gate(gen, text, None, expired,
                        "waiting_for_joint_state" if joints == MISSING else "stale_joint_state")
        return Gate(gen, text, joints, expired, None)

    def span(self) -> float:
        """Seconds of joint states held."""
        with self._lock:
            return self._joints.span()


class _TimeBuffer:
    """Items stamped in seconds, oldest first, holding a span of time; not thread-safe (Inputs locks)."""

    def __init__(self):
        self.times: list = []
        self.items: list = []

    def add(self, t: float, item, keep: float) -> None:
        """Append ``item`` stamped ``t``, keeping ``keep`` seconds before the newest item."""
        if self.times and t < self.times[-1]:
            self.times, self.items = [], []  # time went backwards (bag loop, sim reset): start over
        self.times.append(t)
        self.items.append(item)
        cut = 0
        while self.times[-1] - self.times[cut] > keep:
            cut += 1
        if cut:
            del self.times[:cut], self.items[:cut]

    def at(self, t: float, max_age: float):
        """The latest item at or before ``t`` (``select_latest``), or MISSING / STALE."""
        i = select_latest(self.times, t, max_age)
        return i if i in (MISSING, STALE) else self.items[i]

    def span(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0
