"""Alignment of asynchronous topics to camera frames: hold the latest message at or before each
camera stamp, and call it stale when it is older than a maximum age.

One function serves offline datasets (many camera stamps at once) and the live node (one stamp),
so training and serving cannot drift apart.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..decode import stamp_ns

MISSING = -1  # no message at or before the camera stamp
STALE = -2  # the latest such message is older than max_age


def select_latest(stamps, query, max_age: Optional[float] = None) -> Union[int, np.ndarray]:
    """Index of the latest message with stamp ≤ each query stamp (seconds).

    ``stamps`` must be sorted ascending (ties keep the later one). Returns ``MISSING`` where no
    message came before the query and ``STALE`` where the latest is older than ``max_age``.
    A scalar query gives an int, an array query an int64 array.
    """
    s = np.asarray(stamps, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError("stamps must be 1-D")
    if s.size > 1 and np.any(np.diff(s) < 0):
        raise ValueError("stamps must be sorted ascending")
    q = np.asarray(query, dtype=np.float64)
    idx = np.searchsorted(s, q, side="right") - 1
    out = np.where(idx >= 0, idx, MISSING).astype(np.int64)
    if max_age is not None and s.size:
        age = q - s[np.clip(idx, 0, None)]
        out = np.where((idx >= 0) & (age > max_age), STALE, out)
    return int(out) if out.ndim == 0 else out


def alignment_counts(indices) -> dict:
    """How many results of ``select_latest`` are usable, MISSING and STALE (for drop reports)."""
    i = np.asarray(indices)
    return {"ok": int(np.sum(i >= 0)), "missing": int(np.sum(i == MISSING)), "stale": int(np.sum(i == STALE))}


def header_s(msgs) -> np.ndarray:
    """Header stamps of ``msgs`` in seconds (int64 ns / 1e9, as the node computes them)."""
    return np.array([stamp_ns(m) for m in msgs], dtype=np.int64) / 1e9


def latest_for(msgs, cam_s: np.ndarray, max_age: float):
    """``msgs`` in header-stamp order, and for each camera stamp (s) the index of the latest of them
    at or before it (``select_latest``: MISSING / STALE when there is none or it is too old)."""
    s = header_s(msgs)
    order = np.argsort(s, kind="stable")
    return [msgs[i] for i in order], select_latest(s[order], cam_s, max_age)
