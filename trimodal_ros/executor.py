"""The chunk executor: actions at the control rate from chunks that arrive late and irregularly.

A model slower than the controller cannot answer every control tick. Inference then runs
asynchronously on the newest inputs while the robot keeps executing the chunks it already has:
a chunk computed from the inputs of tick ``t0`` holds the actions for ticks ``t0 … t0+K-1`` and
arrives some ticks later, so its first rows are already past and are skipped. At each tick the
executor answers with

* ``blend="ensemble"``: ACT's temporal ensembling across every stored chunk that covers the tick
  (weight exp(−m·i), i = 0 for the oldest: m > 0 favours older predictions, 0 the plain mean), so
  a new chunk pulls the command over gradually instead of jumping to it;
* ``blend="latest"``: the newest chunk that covers the tick, cross-faded linearly from the previous
  command over ``crossfade`` ticks (a simple form of real-time chunking's smooth hand-over).

When no chunk covers the tick (the model fell further behind than a chunk is long) the last
command is held and the tick counted in ``starved``. Pure numpy: no rclpy, no torch; the node, the
rollouts and the tests use the same object.
"""

from __future__ import annotations

import collections
from typing import Deque, Dict, Optional, Tuple

import numpy as np

BLENDS = ("ensemble", "latest")


class ChunkExecutor:
    def __init__(self, chunk: int, blend: str = "ensemble", m: float = 0.0, crossfade: int = 2,
                 keep: Optional[int] = None):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        if crossfade < 0:
            raise ValueError(f"crossfade must be >= 0, got {crossfade}")
        self.chunk, self.blend, self.m, self.crossfade = int(chunk), blend, float(m), int(crossfade)
        self._chunks: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=keep or self.chunk)
        self.last: Optional[np.ndarray] = None
        self._switch: Optional[Tuple[int, np.ndarray, int]] = None  # (origin, command, tick) of the last hand-over
        self.counts: Dict[str, int] = {"chunks": 0, "stale_chunks": 0, "starved": 0, "ticks": 0}

    def reset(self) -> None:
        self._chunks.clear()
        self.last, self._switch = None, None

    def add(self, chunk, origin: int, now: Optional[int] = None) -> None:
        """Store a (K, A) chunk whose row k is the action for tick ``origin + k``. One that lies wholly
        before ``now`` is counted stale and dropped."""
        c = np.asarray(chunk, np.float64)
        if c.ndim != 2 or c.shape[0] != self.chunk or not np.all(np.isfinite(c)):
            raise ValueError(f"expected a finite ({self.chunk}, A) chunk, got {c.shape}")
        if now is not None and origin + self.chunk <= now:
            self.counts["stale_chunks"] += 1
            return
        if self._chunks and origin < self._chunks[-1][0]:
            self.counts["stale_chunks"] += 1  # older than the newest stored: arrived out of order
            return
        self._chunks.append((int(origin), c))
        self.counts["chunks"] += 1

    def covering(self, tick: int):
        """The stored (origin, chunk) pairs with a row for ``tick``, oldest first."""
        return [(o, c) for o, c in self._chunks if o <= tick < o + self.chunk]

    def _blend(self, cover, tick: int) -> np.ndarray:
        if self.blend == "ensemble":
            preds = np.stack([c[tick - o] for o, c in cover])  # oldest first
            w = np.exp(-self.m * np.arange(len(preds)))
            return (w[:, None] * preds).sum(0) / w.sum()
        o, c = cover[-1]
        return c[tick - o]

    def planned(self, tick: int) -> Optional[np.ndarray]:
        """The command the chunks stored now give for a coming ``tick`` (a cross-fade under way is
        not applied); past them, the one for the last tick they cover (held while starved); None
        before any. Counts and changes nothing: what the robot will have been sent by then, for
        ``forecast``."""
        if self._chunks:
            tick = min(tick, self._chunks[-1][0] + self.chunk - 1)
        cover = self.covering(tick)
        if cover:
            return self._blend(cover, tick)
        return None if self.last is None else self.last.copy()

    def forecast(self, positions, tick: int, delay: int, joints) -> Tuple[int, np.ndarray]:
        """Latency compensation for position-commanded joints: an inference starting at ``tick`` whose
        chunk will arrive ``delay`` ticks later is given, for the joints the actions command
        (``joints``: (proprio index, action index) pairs), the target the robot will have been sent
        just before then instead of where it is now, and its chunk counts from the arrival tick.
        Returns (origin, positions to infer on); ``delay`` 0 or nothing planned: the positions as
        they are (before the first chunk the arm holds where it is)."""
        q = np.array(positions, np.float64, copy=True)
        if delay <= 0:
            return tick, q
        plan = self.planned(tick + delay - 1)
        if plan is not None:
            for j, i in joints:
                q[j] = plan[i]
        return tick + delay, q

    def action(self, tick: int, hold_last: bool = True) -> Optional[np.ndarray]:
        """The (A,) command for ``tick`` (None before any chunk arrived; when starved, the last
        command again, or None without ``hold_last``)."""
        self.counts["ticks"] += 1
        cover = self.covering(tick)
        if not cover:
            if self.last is not None:
                self.counts["starved"] += 1
            return None if self.last is None or not hold_last else self.last.copy()
        a = self._blend(cover, tick)
        if self.blend == "latest":
            o = cover[-1][0]
            if self._switch is None or self._switch[0] != o:
                self._switch = (o, self.last if self.last is not None else a, tick)
            _, start, t_switch = self._switch
            if self.crossfade and tick - t_switch < self.crossfade:
                f = (tick - t_switch + 1) / (self.crossfade + 1)
                a = (1 - f) * start + f * a
        self.last = np.asarray(a, np.float64)
        return self.last.copy()
