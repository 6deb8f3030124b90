"""What the joint space tells a robot about each frame, beside the action.

- **agreement**: the cosine of the image and the instruction embeddings in the joint space: how well
  the words fit what the camera sees. Meaningful for a checkpoint trained with an alignment loss
  (``train.loss`` clip, pairwise or joint); without one the two embeddings were never compared.
- **ood** (out of distribution): how far the fused embedding lies from the training frames', as the
  mean squared per-dimension z-score against the training embeddings' mean and spread, divided by
  its 99th percentile over training frames: about 1 or less in distribution, well above it on
  inputs unlike the training data.

``EmbeddingStats`` is fitted at the end of training on training samples and carried by the
checkpoint (``embedding_stats``); a checkpoint without it has no ood score (NaN). Plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

AGREEMENT_QUANTILES = (0.01, 0.05, 0.5)


def agreement(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """(..., D), (..., D) → (...) cosine similarity."""
    a, b = np.asarray(image, np.float64), np.asarray(text, np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(den, 1e-12)


@dataclass
class EmbeddingStats:
    mean: np.ndarray            # (D,) of the fused embedding over training samples
    std: np.ndarray             # (D,)
    ood_q99: float              # the raw score's 99th percentile over those samples
    agreement_q: Dict[float, float]  # quantiles of the agreement with the right instruction
    samples: int

    @classmethod
    def fit(cls, fused: np.ndarray, image: np.ndarray, text: np.ndarray) -> "EmbeddingStats":
        fused = np.asarray(fused, np.float64)
        if fused.ndim != 2 or len(fused) < 2:
            raise ValueError(f"need (N >= 2, D) fused embeddings, got {fused.shape}")
        stats = cls(fused.mean(0), fused.std(0) + 1e-6, 1.0, {}, len(fused))
        stats.ood_q99 = float(np.quantile(stats.raw_ood(fused), 0.99)) or 1.0
        ag = agreement(image, text)
        stats.agreement_q = {q: float(np.quantile(ag, q)) for q in AGREEMENT_QUANTILES}
        return stats

    def raw_ood(self, fused: np.ndarray) -> np.ndarray:
        z = (np.asarray(fused, np.float64) - self.mean) / self.std
        return (z * z).mean(-1)

    def ood(self, fused: np.ndarray) -> np.ndarray:
        """(..., D) → (...): 1.0 = the 99th percentile of training frames."""
        return self.raw_ood(fused) / self.ood_q99

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "ood_q99": self.ood_q99,
                "agreement_q": {str(k): v for k, v in self.agreement_q.items()}, "samples": self.samples}

    @classmethod
    def from_dict(cls, d: Optional[dict], dim: int) -> Optional["EmbeddingStats"]:
        """None for a checkpoint without statistics; a ValueError names what does not fit."""
        if d is None:
            return None
        mean, std = np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
        if mean.shape != (dim,) or std.shape != (dim,) or not (std > 0).all() or not d["ood_q99"] > 0:
            raise ValueError(f"embedding_stats do not fit a {dim}-dim embedding (mean {mean.shape}, std {std.shape})")
        return cls(mean, std, float(d["ood_q99"]), {float(k): float(v) for k, v in d["agreement_q"].items()},
                   int(d["samples"]))
