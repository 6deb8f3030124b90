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

    def action(self, tick: int, hold_last: bool = True) -> Optional[np.ndarray]:
        """The (A,) command for ``tick`` (None before any chunk arrived; when starved, the last
        command again, or None without ``hold_last``)."""
        self.counts["ticks"] += 1
        cover = self.covering(tick)
        if not cover:
            if self.last is not None:
                self.counts["starved"] += 1
            return None if self.last is None or not hold_last else self.last.copy()
        if self.blend == "ensemble":
            preds = np.stack([c[tick - o] for o, c in cover])  # oldest first
            w = np.exp(-self.m * np.arange(len(preds)))
            a = (w[:, None] * preds).sum(0) / w.sum()
        else:
            o, c = cover[-1]
            a = c[tick - o]
            if self._switch is None or self._switch[0] != o:
                self._switch = (o, self.last if self.last is not None else a, tick)
            _, start, t_switch = self._switch
            if self.crossfade and tick - t_switch < self.crossfade:
                f = (tick - t_switch + 1) / (self.crossfade + 1)
                a = (1 - f) * start + f * a
        self.last = np.asarray(a, np.float64)
        return self.last.copy()
