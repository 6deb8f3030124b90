"""vla_node's control loop for ``execution:=ensemble`` or ``latest``: one command per control
period from the chunk executor (``trimodal_ros.executor``), for a model slower than the controller.

With ``execution:=chunk`` (the default) each answered frame publishes its whole chunk as a
JointTrajectory and the controller executes it until the next one replaces it. With a model that
answers every few control periods, a twist controller (MoveIt Servo) instead gets one command per
frame, late, and a trajectory controller jumps at every replacement. Here a timer at the control
period, in its own callback group (so it runs while the model runs on the other executor thread),
publishes the executor's blend of the chunks that cover the current tick: each chunk counts from the
tick its inference started on, so the rows that went by while the model ran are skipped (with
``forecast:=on``, from the tick it is expected to arrive, inferred on the targets commanded by then). A tick no
chunk covers publishes nothing (the trajectory controller holds its last point; Servo stops at its
command timeout) and is counted ``starved``.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Callable

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from ..executor import ChunkExecutor


class ControlLoop:
    def __init__(self, node, chunk: int, period: float, blend: str, publish: Callable[[np.ndarray], None]):
        """``blend``: the executor's (ensemble: the plain mean, m = 0, as chosen on the reacher's validation
        layouts; latest: a 2-tick cross-fade). ``publish(action)`` sends one (A,) command unless a hold
        stands (the node's output gate decides)."""
        self.executor = ChunkExecutor(chunk, blend=blend)
        self.period, self._publish, self._lock = float(period), publish, threading.Lock()
        self.tick, self._node, self._group = 0, node, MutuallyExclusiveCallbackGroup()
        self._started, self._took = 0, collections.deque(maxlen=20)  # ticks each inference took, to its add
        self.timer = node.create_timer(self.period, self._on_tick, callback_group=self._group)

    def retime(self, period: float) -> None:
        """A new control period (the live parameter): the timer is made again, the ticks go on."""
        with self._lock:
            self._node.destroy_timer(self.timer)
            self.period = float(period)
            self.timer = self._node.create_timer(self.period, self._on_tick, callback_group=self._group)

    def start(self, positions: np.ndarray, forecast=(), reset: bool = False):
        """An inference starts now: (the tick its chunk's row 0 is for, the joint positions to infer on).
        Without ``forecast`` ((joint, action) index pairs) this tick and the positions as they are; with
        it, the tick the chunk is expected to arrive (``latency_ticks`` from now) and the targets
        commanded by then (``ChunkExecutor.forecast``). ``reset``: a new task's first inference: the
        old task's chunks go."""
        with self._lock:
            if reset:
                self.executor.reset()
            self._started = self.tick
            if not forecast:
                return self.tick, positions
            return self.executor.forecast(positions, self.tick, self._latency_ticks(), forecast)

    def latency_ticks(self) -> int:
        with self._lock:
            return self._latency_ticks()

    def _latency_ticks(self) -> int:
        """Control periods an inference is expected to take: the median of the last 20 (1 before any)."""
        return max(1, math.ceil(float(np.median(self._took)))) if self._took else 1

    def add(self, actions: np.ndarray, origin: int) -> None:
        with self._lock:
            self._took.append(self.tick - self._started)
            self.executor.add(actions, origin, now=self.tick)

    def reset(self) -> None:
        """A hold, stop or new task: no stored chunk may be executed after it."""
        with self._lock:
            self.executor.reset()

    def _on_tick(self) -> None:
        with self._lock:
            tick, self.tick = self.tick, self.tick + 1
            a = self.executor.action(tick, hold_last=False)  # starved: nothing, not the last command again
        if a is not None:
            self._publish(a)

    def counts(self) -> dict:
        with self._lock:
            return dict(self.executor.counts)
