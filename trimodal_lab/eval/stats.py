"""Statistics that claim no more than the data supports (numpy + scipy, no torch).

* Frames of one episode are strongly correlated, so every interval over frames resamples whole
  **episodes** (a cluster bootstrap), and runs that share a seed are resampled together.
* Differences between configurations are **paired** (same frames, same layouts, same seeds) and a
  family of comparisons is corrected with **Holm**'s step-down method.
* A fusion × loss grid is analysed with a two-way ANOVA on the per-run outcomes, so a fusion
  effect that depends on the loss (an interaction) is reported as such instead of averaged away.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

N_BOOT = 2000


def _ci(boot: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def boot_p(boot: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0" (percentile method)."""
    b = np.asarray(boot, np.float64)
    if b.size == 0:
        return float("nan")
    return float(min(1.0, 2 * min((b <= 0).mean(), (b >= 0).mean())))


def cluster_ratio(num: np.ndarray, den: np.ndarray, clusters: Sequence, n_boot: int = N_BOOT,
                  seed: int = 0) -> Dict[str, float]:
    """sum(num) / sum(den) (e.g. correct tokens / tokens) with a 95% interval from resampling
    whole clusters (episodes): {"value", "lo", "hi"}."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
    cn, cd = np.bincount(inv, num, len(ids)), np.bincount(inv, den, len(ids))
    value = cn.sum() / max(cd.sum(), 1e-12)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ids), (n_boot, len(ids)))
    boot = cn[pick].sum(1) / np.maximum(cd[pick].sum(1), 1e-12)
    lo, hi = _ci(boot)
    return {"value": float(value), "lo": lo, "hi": hi, "clusters": int(len(ids))}


def paired_cluster_delta(num_a: np.ndarray, num_b: np.ndarray, den: np.ndarray, clusters: Sequence,
                         n_boot: int = N_BOOT, seed: int = 0) -> Dict[str, float]:
    """(sum a − sum b) / sum den on the SAME frames, with a cluster-bootstrap interval and p-value."""
    a, b, den = (np.asarray(x, np.float64) for x in (num_a, num_b, den))
    ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
    ca, cb, cd = (np.bincount(inv, x, len(ids)) for x in (a, b, den))
    value = (ca.sum() - cb.sum()) / max(cd.sum(), 1e-12)
    pick = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))
    boot = (ca[pick].sum(1) - cb[pick].sum(1)) / np.maximum(cd[pick].sum(1), 1e-12)
    lo, hi = _ci(boot)
    return {"delta": float(value), "lo": lo, "hi": hi, "p": boot_p(boot), "clusters": int(len(ids))}


def runs_bootstrap(outcomes: Dict[int, np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean outcome over runs (seed → per-episode outcomes, all
    runs on the same episodes): resample seeds, then episodes (the same episode indices for
    every seed drawn, since the layouts are shared)."""
    seeds = sorted(outcomes)
    m = np.stack([np.asarray(outcomes[s], np.float64) for s in seeds])  # (S, E)
    rng = np.random.default_rng(seed)
    si = rng.integers(0, m.shape[0], (n_boot, m.shape[0]))
    ei = rng.integers(0, m.shape[1], (n_boot, m.shape[1]))
    return np.array([m[si[b]][:, ei[b]].mean() for b in range(n_boot)])


def paired_runs_delta(a: Dict[int, np.ndarray], b: Dict[int, np.ndarray], n_boot: int = N_BOOT,
                      seed: int = 0) -> Dict[str, float]:
    """Mean(a) − mean(b) for two configurations run with the same seeds on the same episodes
    (seed → per-episode outcome arrays), with a seeds-then-episodes bootstrap interval and p."""
    common = sorted(set(a) & set(b))
    if not common:
        return {"delta": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "pairs": 0}
    d = {s: np.asarray(a[s], np.float64) - np.asarray(b[s], np.float64) for s in common}
    boot = runs_bootstrap(d, n_boot, seed)
    lo, hi = _ci(boot)
    return {"delta": float(np.mean([v.mean() for v in d.values()])), "lo": lo, "hi": hi, "p": boot_p(boot),
            "pairs": len(common), "episodes": int(len(next(iter(d.values()))))}


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def two_way_anova(values: Dict[Tuple[str, str], Sequence[float]]) -> Dict[str, Dict[str, float]]:
    """Balanced two-way ANOVA with interaction on per-run outcomes {(row, col): [runs]}:
    {"rows"|"cols"|"interaction": {"F", "df", "p"}, "residual_df"}. Needs ≥ 2 runs per cell."""
    from scipy import stats

    rows = sorted({r for r, _ in values})
    cols = sorted({c for _, c in values})
    n = min(len(values[(r, c)]) for r in rows for c in cols)
    if n < 2:
        raise ValueError("two_way_anova needs at least 2 runs per cell")
    y = np.array([[np.asarray(values[(r, c)][:n], np.float64) for c in cols] for r in rows])  # (R, C, n)
    grand = y.mean()
    rm, cm, cell = y.mean((1, 2)), y.mean((0, 2)), y.mean(2)
    R, C = len(rows), len(cols)
    ss = {"rows": n * C * ((rm - grand) ** 2).sum(), "cols": n * R * ((cm - grand) ** 2).sum(),
          "interaction": n * ((cell - rm[:, None] - cm[None, :] + grand) ** 2).sum()}
    ss_res = ((y - cell[..., None]) ** 2).sum()
    df = {"rows": R - 1, "cols": C - 1, "interaction": (R - 1) * (C - 1)}
    df_res = R * C * (n - 1)
    ms_res = ss_res / df_res
    out: Dict[str, Dict[str, float]] = {}
    for k in ss:
        F = (ss[k] / df[k]) / ms_res if ms_res > 0 else float("inf")
        out[k] = {"F": float(F), "df": df[k], "p": float(stats.f.sf(F, df[k], df_res)) if ms_res > 0 else 0.0}
    out["residual_df"] = {"df": df_res}
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:  # no ranking to correlate
        return {"rho": float("nan"), "p": float("nan"), "n": int(ok.sum())}
    r = stats.spearmanr(x[ok], y[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(ok.sum())}


def min_detectable_difference(n: int, p: float = 0.5, alpha: float = 0.05, power: float = 0.8,
                              comparisons: int = 1) -> float:
    """The success-rate difference two arms of ``n`` episodes each detect with ``power`` at
    two-sided ``alpha`` (Bonferroni over ``comparisons``), by the normal approximation with
    both rates near ``p``. Pairing on layouts only helps, so this is conservative."""
    from scipy import stats

    if n <= 0:
        return float("nan")
    z = stats.norm.ppf(1 - alpha / (2 * comparisons)) + stats.norm.ppf(power)
    return float(z * math.sqrt(2 * p * (1 - p) / n))


def majority_baselines(train_tokens: np.ndarray, train_tasks: Sequence, eval_tokens: np.ndarray,
                       eval_tasks: Sequence, eval_mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Token accuracy of predicting the training set's most common token per (chunk step, action
    dim): globally, and per task (the task known). Tokens are (N, K, A)."""
    def mode(t: np.ndarray) -> np.ndarray:  # (N, K, A) → (K, A)
        K, A = t.shape[1:]
        return np.array([[np.bincount(t[:, k, a]).argmax() for a in range(A)] for k in range(K)])

    tt, et = np.asarray(train_tokens), np.asarray(eval_tokens)
    m = np.ones(et.shape[:2], bool) if eval_mask is None else np.asarray(eval_mask, bool)
    glob = mode(tt)
    per_task_pred = np.empty_like(et)
    tr_tasks, ev_tasks = np.asarray(train_tasks), np.asarray(eval_tasks)
    for task in np.unique(ev_tasks):
        sel = tr_tasks == task
        per_task_pred[ev_tasks == task] = mode(tt[sel]) if sel.any() else glob
    denom = max(int(m.sum()), 1) * et.shape[-1]
    acc = lambda pred: float((((pred == et) & m[..., None]).sum()) / denom)  # noqa: E731
    return {"most_common_token": acc(np.broadcast_to(glob, et.shape)), "most_common_token_per_task": acc(per_task_pred)}


def mean_action_baselines(train_actions: np.ndarray, train_tasks: Sequence, eval_actions: np.ndarray,
                          eval_tasks: Sequence, eval_mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Action MAE of predicting the training mean action (globally, and per task); (N, K, A)."""
    ta, ea = np.asarray(train_actions, np.float64), np.asarray(eval_actions, np.float64)
    m = np.ones(ea.shape[:2], bool) if eval_mask is None else np.asarray(eval_mask, bool)
    glob = ta.reshape(-1, ta.shape[-1]).mean(0)
    per = np.empty_like(ea)
    tr_tasks, ev_tasks = np.asarray(train_tasks), np.asarray(eval_tasks)
    for task in np.unique(ev_tasks):
        sel = tr_tasks == task
        per[ev_tasks == task] = ta[sel].reshape(-1, ta.shape[-1]).mean(0) if sel.any() else glob
    denom = max(int(m.sum()), 1) * ea.shape[-1]
    mae = lambda pred: float((np.abs(pred - ea) * m[..., None]).sum() / denom)  # noqa: E731
    return {"mean_action_mae": mae(np.broadcast_to(glob, ea.shape)), "mean_action_mae_per_task": mae(per)}
