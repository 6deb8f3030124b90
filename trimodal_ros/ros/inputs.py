"""vla_node's latest inputs, without rclpy and thread-safe: the task (instruction, restart count,
timeout) and a joint-state buffer that holds a span of *time*, not a count of messages."""

from __future__ import annotations

import collections
import threading
import time
from typing import Optional, Tuple

from ..data.align import MISSING, STALE, select_latest  # the alignment training used

JointSample = Tuple[float, object, object]  # (stamp s, positions, velocities or None)


class Inputs:
    def __init__(self):
        self._lock = threading.Lock()
        self._task: Tuple[int, Optional[str]] = (0, None)  # (generation, instruction or None)
        self._at = 0.0  # time.monotonic() of the last instruction message
        self._seen: collections.deque = collections.deque(maxlen=16)  # message ids already taken
        self._times: list = []
        self._joints: list = []

    # --- the task --------------------------------------------------------------------------------
    def first_delivery(self, msg_id) -> bool:
        """False for a message seen already: one message delivered through both instruction
        subscriptions (latched and volatile) counts once."""
        with self._lock:
            if msg_id in self._seen:
                return False
            self._seen.append(msg_id)
            return True

    def instruct(self, text: str) -> None:
        """A new instruction message ("" stops): a new task generation."""
        with self._lock:
            self._task, self._at = (self._task[0] + 1, text or None), time.monotonic()

    def restart(self) -> None:
        """The same instruction again: a new generation (the policy's history starts over)."""
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

    # --- joint states -----------------------------------------------------------------------------
    def add_joints(self, t: float, positions, velocities, keep: float) -> None:
        """Append a joint state stamped ``t`` s, keeping ``keep`` seconds before the newest one."""
        with self._lock:
            if self._times and t < self._times[-1]:
                self._times, self._joints = [], []  # time went backwards (bag loop, sim reset): start over
            self._times.append(t)
            self._joints.append((t, positions, velocities))
            cut = 0
            while self._times[-1] - self._times[cut] > keep:
                cut += 1
            if cut:
                del self._times[:cut], self._joints[:cut]

    def joints_at(self, t: float, max_age: float):
        """The latest joint state at or before ``t`` (``select_latest``): a JointSample, or
        MISSING / STALE."""
        with self._lock:
            i = select_latest(self._times, t, max_age)
            return i if i in (MISSING, STALE) else self._joints[i]

    def gate(self, t: float, max_age: float, timeout: float = 0.0):
        """What a frame stamped ``t`` s may use: (generation, instruction, joint sample, expired, wait),
        where ``wait`` is the outcome holding the frame back ("waiting_for_instruction",
        "waiting_for_joint_state", "stale_joint_state") or None, and ``expired`` says the task just
        timed out (``task``)."""
        gen, text, expired = self.task(timeout)
        if text is None:
            return gen, None, None, expired, "waiting_for_instruction"
        joints = self.joints_at(t, max_age)
        if isinstance(joints, int):  # MISSING or STALE, not a sample
            return gen, text, None, expired, "waiting_for_joint_state" if joints == MISSING else "stale_joint_state"
        return gen, text, joints, expired, None

    def span(self) -> float:
        with self._lock:
            return self._times[-1] - self._times[0] if self._times else 0.0
