"""Metrics on embeddings and action tokens. Pure numpy/torch: used by evaluate, ablate and tests."""

from __future__ import annotations

import itertools
import math
from typing import Dict, Sequence

import numpy as np

PAIRS = [(a, b) for a, b in itertools.permutations(("image", "text", "action"), 2)]


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(queries: np.ndarray, gallery: np.ndarray, query_labels: Sequence[int],
                      gallery_labels: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """Recall@k and median rank by cosine similarity, where a retrieved item is a hit when it
    carries the query's label (its task): several positives per query, as clip_benchmark counts.

    rank = 1 + position of the first hit in the sorted gallery. Ties are broken pessimistically
    (a gallery of identical vectors does not score R@1 = 1 by luck of the sort).
    """
    q, g = _normalize(queries), _normalize(gallery)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    sim = q @ g.T  # (Q, G)
    hit = ql[:, None] == gl[None, :]
    if not hit.any(axis=1).all():
        raise ValueError("every query needs at least one positive in the gallery")
    best_hit = np.where(hit, sim, -np.inf).max(axis=1)
    # pessimistic: every non-hit scoring >= the best hit ranks before it
    rank = 1 + (np.where(~hit, sim, -np.inf) >= best_hit[:, None]).sum(axis=1)
    out = {f"R@{k}": float((rank <= k).mean()) for k in ks}
    out["median_rank"] = float(np.median(rank))
    return out


def chance_recall(query_labels, gallery_labels, k: int) -> float:
    """Expected R@k of a random ranking: 1 - C(G-P, k)/C(G, k), averaged over queries."""
    gl = np.asarray(gallery_labels)
    n = len(gl)
    vals = []
    for lab in np.asarray(query_labels):
        p = int((gl == lab).sum())
        vals.append(1.0 - (math.comb(n - p, k) / math.comb(n, k) if n - p >= k else 0.0))
    return float(np.mean(vals))


def all_pair_retrieval(emb: Dict[str, np.ndarray], labels: Sequence[int], ks=(1, 5, 10)) -> Dict[str, Dict[str, float]]:
    """The six directed pairs (image→text, text→image, …) plus their mean."""
    res = {f"{a}->{b}": retrieval_metrics(emb[a], emb[b], labels, labels, ks) for a, b in PAIRS}
    res["mean"] = {m: float(np.mean([r[m] for r in res.values()])) for m in next(iter(res.values()))}
    return res


def token_metrics(pred_tokens: np.ndarray, true_tokens: np.ndarray,
                  mask: np.ndarray | None = None) -> Dict[str, object]:
    """Accuracy per action dimension (and overall) over (N, K, A) tokens; mask (N, K) drops padding."""
    pred, true = np.asarray(pred_tokens), np.asarray(true_tokens)
    m = np.ones(pred.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    correct = (pred == true) & m[..., None]
    denom = max(int(m.sum()), 1)
    per_dim = correct.sum(axis=(0, 1)) / denom
    return {"token_accuracy": float(correct.sum() / (denom * pred.shape[-1])),
            "token_accuracy_per_dim": per_dim.tolist(),
            "token_accuracy_first_step": float((pred[:, 0] == true[:, 0]).mean())}


def action_mae(pred_actions: np.ndarray, true_actions: np.ndarray, mask: np.ndarray | None = None) -> Dict[str, object]:
    err = np.abs(np.asarray(pred_actions, np.float64) - np.asarray(true_actions, np.float64))  # (N, K, A)
    m = np.ones(err.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    per_dim = (err * m[..., None]).sum(axis=(0, 1)) / max(int(m.sum()), 1)
    return {"action_mae": float(per_dim.mean()), "action_mae_per_dim": per_dim.tolist(),
            "action_mae_first_step": float(err[:, 0].mean())}


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve of a score that should be higher for ``positive`` than for
    ``negative``: the probability that a random positive outscores a random negative (ties half),
    from ranks (Mann–Whitney U)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    _, inv, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]  # tied values share their mean rank
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of a t-based 95% interval (0 for a single value)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), 0.0
    from scipy import stats

    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sensible at 0 or n successes)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)
