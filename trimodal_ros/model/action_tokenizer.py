"""RT-2 / OpenVLA style action tokenizer: each action dimension is cut into ``bins`` uniform bins.

Bounds are per dimension; ``fit`` takes them as the 1st/99th percentiles of data so that rare
outliers do not waste bins. Values outside the bounds go to the end bins. Works on any shape
whose last axis is the action dimension, so chunks (..., K, dims) need nothing special.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np


class ActionTokenizer:
    def __init__(self, low, high, bins: int = 256):
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(f"low {low.shape} and high {high.shape} must have one shape")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("action bounds must be finite")
        if np.any(high < low):
            raise ValueError(f"every high must be >= low: low={low.tolist()} high={high.tolist()}")
        if not 2 <= int(bins) <= 65536:
            raise ValueError(f"bins must be in [2, 65536], got {bins}")
        # A constant dimension (high == low) still gets a bin width, so decode(encode(x)) == low.
        self.low, self.high, self.bins = low, np.maximum(high, low + 1e-6), int(bins)

    @property
    def dims(self) -> int:
        return self.low.size

    @property
    def bin_width(self) -> np.ndarray:
        return (self.high - self.low) / self.bins

    @classmethod
    def fit(cls, actions, bins: int = 256, lower_pct: float = 1.0, upper_pct: float = 99.0):
        a = np.asarray(actions, dtype=np.float64)
        a = a.reshape(-1, a.shape[-1])
        a = a[np.all(np.isfinite(a), axis=1)]
        if len(a) == 0:
            raise ValueError("cannot fit an action tokenizer on no finite actions")
        return cls(np.percentile(a, lower_pct, axis=0), np.percentile(a, upper_pct, axis=0), bins)

    def _check(self, x: np.ndarray) -> None:
        if x.shape[-1] != self.dims:
            raise ValueError(f"last axis must be the {self.dims} action dims, got shape {x.shape}")

    def encode(self, actions) -> np.ndarray:
        """Continuous actions (..., dims) → int64 tokens in [0, bins)."""
        a = np.asarray(actions, dtype=np.float64)
        self._check(a)
        if not np.all(np.isfinite(a)):
            raise ValueError("cannot tokenize non-finite actions")
        t = np.floor((a - self.low) / self.bin_width)
        return np.clip(t, 0, self.bins - 1).astype(np.int64)

    def decode(self, tokens) -> np.ndarray:
        """Tokens (..., dims) → bin centres (..., dims), float32."""
        t = np.asarray(tokens)
        self._check(t)
        if np.any(t < 0) or np.any(t >= self.bins):
            raise ValueError(f"tokens must lie in [0, {self.bins})")
        return (self.low + (t + 0.5) * self.bin_width).astype(np.float32)

    def to_dict(self) -> Dict[str, Any]:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "bins": self.bins}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ActionTokenizer":
        return cls(d["low"], d["high"], d["bins"])

    def __repr__(self) -> str:
        return f"ActionTokenizer(dims={self.dims}, bins={self.bins})"
