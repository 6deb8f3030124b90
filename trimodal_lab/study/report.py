"""The study's analysis, from the committed run files only: per-cell success on the test cases,
each primary contrast's paired difference with a two-level bootstrap interval (cases, then seeds),
Holm's correction over the primary contrasts, and the smallest difference the design detects at
80% power. Missing runs are listed, never imputed."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Dict, List, Optional, Tuple

import numpy as np

from trimodal_ros.io import atomic_savefig, atomic_write_text
from trimodal_ros.schema import ConfigError

from .plan import STUDY, Plan, TestSet, config_diff, config_sha256, load_plan, resolved_config
from .runner import missing, result_path

Case = Tuple[str, int, str]  # (task, layout, wording)


def read_results(plan: Plan) -> Dict[Tuple[str, int], dict]:
    """{(cell, seed): result file} of the result files that exist, each checked against its name and
    its test set: a file that would be counted wrongly is an error, not a silent answer."""
    from trimodal_lab.metaworld import parse_layouts
    from trimodal_ros.data.instructions import resolve_tasks

    out: Dict[Tuple[str, int], dict] = {}
    for cell, seed in plan.runs():
        p = result_path(cell, seed)
        if not p.exists():
            continue
        r = json.loads(p.read_text())
        if (r.get("cell"), r.get("seed")) != (cell, seed):
            raise ConfigError(f"{p}: holds cell {r.get('cell')!r} seed {r.get('seed')!r}, not its name's")
        cases = {(e["task"], e["layout"], e["wording"]) for e in r["episodes"]}
        t = plan.test(cell)
        want = {(task, layout, w) for task in resolve_tasks(t.tasks) for layout in parse_layouts(t.layouts)
                for w in t.wordings}
        if len(cases) != len(r["episodes"]) or len(cases) != len(want):
            raise ConfigError(f"{p}: {len(r['episodes'])} episodes, {len(cases)} distinct cases; its test set "
                              f"has {len(want)}")
        if cases != want:
            odd = sorted(cases - want)[:3]
            raise ConfigError(f"{p}: cases outside its test set, e.g. {odd}")
        out[(cell, seed)] = r
    return out


def outcomes(results: Dict[Tuple[str, int], dict]) -> Dict[str, Dict[int, Dict[Case, bool]]]:
    """{cell: {seed: {case: success}}} of the checked result files (``read_results``)."""
    out: Dict[str, Dict[int, Dict[Case, bool]]] = {}
    for (cell, seed), r in results.items():
        out.setdefault(cell, {})[seed] = {(e["task"], e["layout"], e["wording"]): bool(e["success"])
                                          for e in r["episodes"]}
    return out


def matrix(runs: Dict[int, Dict[Case, bool]], cases: List[Case]) -> np.ndarray:
    """(seeds, cases) 0/1 outcomes of one cell."""
    return np.array([[runs[s][c] for c in cases] for s in sorted(runs)], dtype=float)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, reps: int, seed: int = 0,
                     groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Bootstrap distribution of mean(a) − mean(b) for (seeds, cases) outcome matrices on the same
    cases: resample the cases (shared by both cells: the pairing), or with ``groups`` (a cluster id
    per case, equal-sized clusters) whole clusters of cases; then each cell's seeds. Resampling n
    seeds with replacement sees only (n − 1)/n of their variance, so each seed's deviation from the
    cell's per-case mean is first widened by sqrt(n / (n − 1))."""
    rng = np.random.default_rng(seed)
    a, b = _widen_seeds(a), _widen_seeds(b)
    members = _clusters(groups, a.shape[1])
    n = len(members)
    out = np.empty(reps)
    for r in range(reps):
        idx = members[rng.integers(0, n, n)].ravel()
        sa = a[rng.integers(0, a.shape[0], a.shape[0])][:, idx]
        sb = b[rng.integers(0, b.shape[0], b.shape[0])][:, idx]
        out[r] = sa.mean() - sb.mean()
    return out


def _clusters(groups: Optional[np.ndarray], cases: int) -> np.ndarray:
    """(clusters, size) case indices of ``groups`` (a cluster id per case, in id order; None: each case
    its own); clusters of unequal size are an error: a test set is incomplete."""
    if groups is None:
        return np.arange(cases)[:, None]
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    if len({len(m) for m in members}) != 1:
        raise ValueError(f"clusters of unequal size {sorted({len(m) for m in members})}: a test set is incomplete")
    return np.stack(members)


def _widen_seeds(x: np.ndarray) -> np.ndarray:
    """(seeds, cases) with each seed's deviation from the per-case mean scaled by sqrt(n / (n − 1)):
    the same means, the seeds' unbiased spread under resampling (one seed: unchanged)."""
    n = x.shape[0]
    if n < 2:
        return x
    mean = x.mean(0, keepdims=True)
    return mean + (x - mean) * np.sqrt(n / (n - 1))


def scene_ids(cases: List[Case]) -> np.ndarray:
    """A cluster id per case: its first frame, the same for every wording of a (task, layout) and for
    the tasks of a language-critical pair, which start from one scene at a layout."""
    from trimodal_ros.data.language_tasks import layout_key

    keys = [(layout_key(task), layout) for task, layout, _ in cases]
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([index[k] for k in keys])


def holm(pvalues: List[float]) -> List[float]:
    """Holm-adjusted p-values, in the input's order."""
    m, order = len(pvalues), np.argsort(pvalues)
    adj, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adj[i] = running
    return adj


def contrast(a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray], plan: Plan, m: int) -> Dict[str, float]:
    """The paired difference a − b, its 95% interval and two-sided bootstrap p (resampling ``groups``'
    clusters of cases, if given), and the smallest difference detected at 80% power at the
    Holm-strictest level alpha / m."""
    boot = paired_bootstrap(a, b, plan.bootstrap, groups=groups)
    d = float(a.mean() - b.mean())
    se = float(boot.std(ddof=1))
    p = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"diff": d, "lo": float(lo), "hi": float(hi), "p": p, "se": se, "mde": _z(plan, m) * se}


def _primary(plan: Plan, a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray], t: str, r: str,
             comp: Optional[Dict[str, object]] = None) -> Dict:
    """A primary contrast, with ``mde_planned``: the detectable difference expected once both cells
    have every planned seed (the bootstrap's now, scaled by the analytic error's ratio between the
    planned and the present seed counts, from ``comp``, their ``variance_components``; nan where no
    cell has two seeds yet)."""
    c = contrast(a, b, groups, plan, len(plan.primary))
    comp = comp or variance_components(a, b, groups)
    now = components_error(comp, a.shape[0], b.shape[0], borrow=False)[0]
    later = components_error(comp, len(plan.cells[t].seeds), len(plan.cells[r].seeds))[0]
    return {**c, "mde_planned": float(c["mde"] * later / now) if now > 0 else float("nan")}


def _counted_once(plan: Plan, a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray], t: str, r: str,
                  comp: Dict[str, object]) -> Dict:
    """A primary contrast by ``components_contrast``, with ``mde_planned``: the detectable difference an
    analysis with every planned seed would have, its error and degrees of freedom projected alike."""
    c = components_contrast(a, b, groups, plan, len(plan.primary), comp)
    se, df = components_error(comp, len(plan.cells[t].seeds), len(plan.cells[r].seeds))
    return {**c, "mde_planned": _detectable(plan, len(plan.primary), se, df)}


def _z(plan: Plan, m: int) -> float:
    """z of a two-sided test at alpha / m plus z of 80% power: detectable = this × standard error."""
    return NormalDist().inv_cdf(1 - plan.alpha / (2 * m)) + NormalDist().inv_cdf(0.8)


def variance_components(a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray]) -> Dict[str, object]:
    """Moment estimates for a paired difference of two (seeds, cases) outcome matrices, seeds crossed
    with scenes (``groups``' equal clusters of cases, or single cases): the variance across scenes of
    the seed-averaged difference (``scene``), and per cell (``a``, ``b``) its between-seed variance
    net of the episodes' noise and that noise, (seed, residual) from its two-way table of seeds ×
    scenes (the seed variance kept >= 0), None with one seed. Each source is counted once, where
    resampling both scenes and seeds counts the episodes' noise in both."""
    members = _clusters(groups, a.shape[1])
    xa, xb = (x[:, members].mean(2) for x in (a, b))  # (seeds, scenes) means
    out: Dict[str, object] = {"scenes": xa.shape[1], "seeds": (xa.shape[0], xb.shape[0]),
                              "scene": float((xa.mean(0) - xb.mean(0)).var(ddof=1)) if xa.shape[1] > 1 else 0.0}
    for key, x in (("a", xa), ("b", xb)):
        s, g = x.shape
        if s < 2 or g < 2:
            out[key] = None
            continue
        resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
        mse = float((resid ** 2).sum() / ((s - 1) * (g - 1)))
        out[key] = (max(0.0, float(x.mean(1).var(ddof=1)) - mse / g), mse)
    return out


def components_error(comp: Dict[str, object], n_a: int, n_b: int, borrow: bool = True) -> Tuple[float, float]:
    """(standard error, Satterthwaite's degrees of freedom) of the difference as an analysis with
    ``n_a`` and ``n_b`` seeds would estimate it, from ``variance_components``: the true per-scene
    differences' variance stays, the episodes' noise and each cell's seed variance go as one over its
    seeds. The error is the mean squares' combination scene/g + Σ (seeds' − residual/g)/n, the
    degrees of freedom those of its mean squares (g − 1, n − 1, (n − 1)(g − 1)); a cell whose seed
    variance came out 0 adds no seed term. A one-seed cell borrows the other's figures (nan when
    neither has two); with ``borrow`` False it has none."""
    parts = _seed_parts(comp, (0.0, 0.0) if not borrow else None)
    g = comp["scenes"]
    if any(p is None for p in parts) or g < 2:
        return float("nan"), float("nan")
    true = max(0.0, comp["scene"] - sum(p[1] / n for p, n in zip(parts, comp["seeds"])))
    counts = (n_a, n_b)
    terms = [((true + sum(p[1] / n for p, n in zip(parts, counts))) / g, g - 1)]  # the scenes' mean square
    for (seed, resid), n in zip(parts, counts):
        if seed > 0:  # the seeds' mean square over n, less the residual's share of it (one seed: borrowed)
            k = max(n - 1, 1)
            terms += [((seed + resid / g) / n, k), (-resid / (g * n), k * (g - 1))]
    var = sum(v for v, _ in terms)
    df = var ** 2 / sum(v ** 2 / d for v, d in terms if v) if var > 0 else float("nan")
    return float(np.sqrt(var)), float(df)


def _seed_parts(comp: Dict[str, object], missing: Optional[Tuple[float, float]] = None) -> list:
    """Each cell's (seed variance, residual) from ``variance_components``; a one-seed cell's is
    ``missing``, or by default the other cell's (None when neither has two seeds)."""
    parts = [comp["a"], comp["b"]]
    return [p if p is not None else missing if missing is not None else parts[1 - i] for i, p in enumerate(parts)]


def projected_se(a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray], n_a: int, n_b: int,
                 borrow: bool = True) -> float:
    """An analytic standard error of mean(a) − mean(b) with ``n_a`` and ``n_b`` seeds, from the
    spread seen so far (``components_error``); ``analyse`` scales the bootstrap's detectable
    difference by its ratio between the planned and the present seed counts."""
    return components_error(variance_components(a, b, groups), n_a, n_b, borrow)[0]


def _detectable(plan: Plan, m: int, se: float, df: float) -> float:
    """The difference found at 80% power by a two-sided t test at alpha / m."""
    from scipy import stats

    return float((stats.t.ppf(1 - plan.alpha / (2 * m), df) + stats.t.ppf(0.8, df)) * se) if se > 0 else float("nan")


def components_contrast(a: np.ndarray, b: np.ndarray, groups: Optional[np.ndarray], plan: Plan, m: int,
                        comp: Optional[Dict[str, object]] = None) -> Dict[str, float]:
    """The paired difference with the moment estimate of its error (``components_error``), a t
    interval at Satterthwaite's degrees of freedom, the two-sided p and the detectable difference at
    80% power at alpha / m; nan while a cell has one seed."""
    from scipy import stats

    comp = comp or variance_components(a, b, groups)
    d, nan = float(a.mean() - b.mean()), float("nan")
    if comp["a"] is None or comp["b"] is None:
        return {"diff": d, "se": nan, "df": nan, "lo": nan, "hi": nan, "p": nan, "mde": nan}
    se, df = components_error(comp, *comp["seeds"])
    if not se > 0:
        return {"diff": d, "se": se, "df": df, "lo": d, "hi": d, "p": 1.0 if d == 0 else 0.0, "mde": 0.0}
    q = stats.t.ppf(0.975, df)
    return {"diff": d, "se": se, "df": df, "lo": d - q * se, "hi": d + q * se,
            "p": float(2 * stats.t.sf(abs(d) / se, df)), "mde": _detectable(plan, m, se, df)}


def analyse(plan: Plan) -> Dict[str, object]:
    results = read_results(plan)
    runs = outcomes(results)
    by_arm: Dict[str, set] = {}
    for name, seeds in runs.items():  # each test set's cases: a cell is paired only with cells of its own
        by_arm.setdefault(plan.cells[name].arm, set()).update(c for seed in seeds.values() for c in seed)
    cases = {arm: sorted(cs) for arm, cs in by_arm.items()}
    pools = {"": plan.wordings, **{arm: t.pooled for arm, t in plan.arms.items()}}
    scored = {arm: [c for c in cs if c[2] in pools[arm]] for arm, cs in cases.items()}  # what success pools
    cells = {}
    for name, seeds in runs.items():
        arm_cases = cases[plan.cells[name].arm]
        mat = matrix(seeds, arm_cases)
        by_wording = {w: float(mat[:, [i for i, c in enumerate(arm_cases) if c[2] == w]].mean())
                      for w in plan.test(name).wordings}
        pooled = matrix(seeds, scored[plan.cells[name].arm])
        cells[name] = {"seeds": sorted(seeds), "success": float(pooled.mean()), "per_seed": pooled.mean(1).tolist(),
                       **{f"success_{w}": v for w, v in by_wording.items()}}

    def pair(t: str, r: str, wordings: Optional[List[str]] = None):
        on = [c for c in scored[plan.cells[t].arm] if wordings is None or c[2] in wordings]
        groups = scene_ids(on) if plan.resample == "scene" else None
        return matrix(runs[t], on), matrix(runs[r], on), groups

    ready = [(t, r) for t, r in plan.primary if t in runs and r in runs]
    rows, counted_once = [], []  # the pre-registered bootstrap's, and the sensitivity analysis's
    for t, r in ready:
        m = pair(t, r)
        comp = variance_components(*m)
        rows.append(dict(treatment=t, reference=r, seeds=min(len(runs[t]), len(runs[r])),
                         planned=max(len(plan.cells[c].seeds) for c in (t, r)),
                         complete=all(len(runs[c]) == len(plan.cells[c].seeds) for c in (t, r)),
                         **_primary(plan, *m, t, r, comp)))
        counted_once.append(dict(treatment=t, reference=r, **_counted_once(plan, *m, t, r, comp)))
    for row, p in zip(rows, holm([r["p"] for r in rows] + [1.0] * (len(plan.primary) - len(rows)))):
        row["p_holm"] = p
    for row, p in zip(counted_once, holm([1.0 if np.isnan(r["p"]) else r["p"] for r in counted_once]
                                         + [1.0] * (len(plan.primary) - len(rows)))):
        row["p_holm"] = p
    secondary = [dict(treatment=t, reference=r, **contrast(*pair(t, r), plan, 1))
                 for t, r in plan.secondary if t in runs and r in runs]
    by_wording = [dict(treatment=t, reference=r, wording=w, **contrast(*pair(t, r, [w]), plan, 1))
                  for t, r in ready for w in pools[plan.cells[t].arm]]  # the wordings success pools
    worded = [(t, r) for t, r in ready if {"train", "heldout"} <= set(pools[plan.cells[t].arm])]
    words = {plan.cells[t].arm: heldout_words(plan.test(t)) for t, _ in worded}
    gap, new_words = [], []  # new_words: the held-out difference and the gap again, the phrasings a sample
    for t, r in worded:
        held = [c for c in scored[plan.cells[t].arm] if c[2] == "heldout"]
        names, tasks = [words[plan.cells[t].arm][c[:2]] for c in held], [c[0] for c in held]
        m_gap = _wording_gap(plan, runs, scored, t, r)
        gap.append(dict(treatment=t, reference=r, **contrast(*m_gap, plan, 1)))
        new_words.append(dict(treatment=t, reference=r, **{
            key: phrasing_contrast(m[0], m[1], names, tasks, variance_components(*m))
            for key, m in (("heldout", pair(t, r, ["heldout"])), ("gap", m_gap))}))
    changed, added, unrecorded = _config_drift(plan, results)
    data, undigested = _data_copies(plan, results)
    return {"runs": runs, "offline": {k: r.get("offline") for k, r in results.items()}, "cells": cells,
            "config_changed": changed, "config_added": added, "config_unrecorded": unrecorded, "data": data,
            "data_unrecorded": undigested,
            "contrasts": rows, "counted_once": counted_once, "by_wording": by_wording, "gap": gap,
            "new_phrasings": new_words,
            "secondary": secondary,
            "missing": missing(plan), "unplanned": _unplanned(plan),
            "cases": len(cases.get("", [])), "arm_cases": {arm: len(cs) for arm, cs in cases.items()}}


def _unplanned(plan: Plan) -> List[str]:
    """Result files no planned run writes (a cell or seed not in the plan, a misnamed copy): not counted."""
    planned = {result_path(c, s).name for c, s in plan.runs()}
    folder = result_path("x", 0).parent
    return sorted(f.name for f in folder.glob("*.json") if f.name not in planned) if folder.is_dir() else []


def _wording_gap(plan: Plan, runs, scored, t: str, r: str):
    """(seeds, scenes) held-out minus training-phrasing outcomes of cells ``t`` and ``r``, case by case
    of one (task, layout), and the scene ids: their paired difference says whether ``t`` loses less
    than ``r`` to new words."""
    on = scored[plan.cells[t].arm]
    held, train = ([c for c in on if c[2] == w] for w in ("heldout", "train"))
    if [c[:2] for c in held] != [c[:2] for c in train]:
        raise ValueError("the held-out and training-phrasing cases are not the same (task, layout)s")
    groups = scene_ids(held) if plan.resample == "scene" else None
    return (*(matrix(runs[c], held) - matrix(runs[c], train) for c in (t, r)), groups)


def _data_copies(plan: Plan, results: Dict[tuple, Dict]):
    """({training bags' folder: {digest: runs trained on that copy}}, how many trained runs recorded
    no digest): a folder with two digests was regenerated or changed between runs."""
    data: Dict[str, Dict[str, list]] = {}
    for k, r in sorted(results.items()):
        if r.get("data_files_sha256"):
            data.setdefault(plan.test(k[0]).data, {}).setdefault(r["data_files_sha256"], []).append(k)
    trained = [r for k, r in results.items() if plan.cells[k[0]].kind == "train"]
    return data, sum(1 for r in trained if not r.get("data_files_sha256") and not r.get("data_sha256"))


def _config_drift(plan: Plan, results: Dict[tuple, Dict]):
    """The runs whose recorded config differs from what the plan resolves to now ({run: what
    changed}), those lacking fields the code gained since ({run: fields}), and how many recorded no
    config. A run that recorded only the hash says "changed" without naming a field."""
    changed, added, unrecorded = {}, {}, 0
    for k, r in sorted(results.items()):
        if "config" in r:
            d = config_diff(r["config"], resolved_config(plan, *k))
            if d["changed"]:
                changed[k] = d["changed"]
            if d["added"]:
                added[k] = d["added"]
        elif "config_sha256" in r:
            if r["config_sha256"] != config_sha256(plan, *k):
                changed[k] = ["only its hash was recorded: a field added to the config since changes it too"]
        else:
            unrecorded += 1
    return changed, added, unrecorded


def _cells_table(plan: Plan, a: Dict[str, object], arm: str) -> List[str]:
    """The success table of the cells rolled out on one test set."""
    names = [n for n, c in plan.cells.items() if c.arm == arm]
    if not names:
        return []
    wordings = plan.test(names[0]).wordings
    lines = ["| cell | seeds done | success | " + " | ".join(wordings) + " | per seed |",
             "|---|---|---|" + "---|" * len(wordings) + "---|"]
    for name in names:
        c, cell = a["cells"].get(name), plan.cells[name]
        if c is None:
            lines.append(f"| {name} | 0/{len(cell.seeds)} | — |" + " — |" * len(wordings) + " — |")
            continue
        lines.append(f"| {name} | {len(c['seeds'])}/{len(cell.seeds)} | {c['success']:.3f} | " +
                     " | ".join(f"{c['success_' + w]:.3f}" for w in wordings) + " | " +
                     ", ".join(f"{x:.3f}" for x in c["per_seed"]) + " |")
    return lines


def heldout_words(t: TestSet) -> Dict[Tuple[str, int], str]:
    """{(task, layout): the held-out phrasing its case was given} on test set ``t``, drawn again as the
    runner drew them (the run files record the wording condition, not the words)."""
    from trimodal_lab.metaworld import parse_layouts
    from trimodal_lab.sim.rollout import episode_plan
    from trimodal_ros.data.instructions import resolve_tasks

    layouts = parse_layouts(t.layouts)
    return {(task, layout): words for task in resolve_tasks(t.tasks)
            for _, layout, words in episode_plan([task], 0, seed=t.wording_seed, instructions="heldout",
                                                 layouts=layouts)}


def phrasing_contrast(a: np.ndarray, b: np.ndarray, words: List[str], tasks: List[str],
                      comp: Dict[str, object]) -> Dict[str, float]:
    """The paired difference of two (seeds, cases) matrices with the held-out phrasings taken as a
    sample of the ways each of these tasks could be worded, not as fixed: each phrasing's difference
    (its cases' and seeds' mean; ``words`` and ``tasks`` name each case's), averaged per task, then
    over tasks. Its error: the spread between a task's phrasings over their count (each scene has one
    held-out phrasing, so the spread holds the scenes' and the episodes' variation too), plus each
    cell's seed variance from ``comp`` (``variance_components`` of the same matrices: shared by every
    phrasing, so absent from their spread) over its seeds, a one-seed cell borrowing the other's; a t
    interval at Satterthwaite's degrees of freedom (one per task, n − 1 per cell). No interval (nan)
    where a task has one phrasing, or a cell's seed variance is unknown."""
    from scipy import stats

    d = a.mean(0) - b.mean(0)  # (cases,) the seeds' mean difference per case
    per_task: Dict[str, List[float]] = {}
    for w, k in sorted(set(zip(words, tasks))):
        per_task.setdefault(k, []).append(float(d[[i for i, c in enumerate(zip(words, tasks)) if c == (w, k)]].mean()))
    nan, n_tasks = float("nan"), len(per_task)
    out = {"diff": float(np.mean([np.mean(v) for v in per_task.values()])), "se": nan, "df": nan, "lo": nan,
           "hi": nan, "phrasings": sum(len(v) for v in per_task.values())}
    parts = _seed_parts(comp)
    if min(len(v) for v in per_task.values()) < 2 or any(p is None for p in parts):
        return out
    terms = [(float(np.var(v, ddof=1)) / len(v) / n_tasks ** 2, len(v) - 1) for v in per_task.values()]
    terms += [(p[0] / n, max(n - 1, 1)) for p, n in zip(parts, comp["seeds"]) if p[0] > 0]
    var = sum(v for v, _ in terms)
    if var > 0:
        df = var ** 2 / sum(v ** 2 / f for v, f in terms if v)
        half = float(stats.t.ppf(0.975, df) * np.sqrt(var))
        out.update(se=float(np.sqrt(var)), df=float(df), lo=out["diff"] - half, hi=out["diff"] + half)
    return out


def _phrasing_table(plan: Plan, runs: Dict[str, Dict[int, Dict[Case, bool]]], arm: str) -> List[str]:
    """Success per held-out phrasing (pooled over a cell's seeds) of the cells of one test set: the
    words each case was given, so a failure has a name."""
    names = [n for n, c in plan.cells.items() if c.arm == arm and n in runs and not c.rollout_instructions
             and c.kind != "expert"]  # the cells that read the words
    if not names or "heldout" not in plan.test(names[0]).wordings:
        return []
    given: Dict[str, List[Case]] = {}  # phrasing -> its cases
    for (task, layout), words in heldout_words(plan.test(names[0])).items():
        given.setdefault(words, []).append((task, layout, "heldout"))
    lines = ["", "Success per held-out phrasing (its cases, all seeds; the task's difficulty is in it too: compare "
             "the cell's training-phrasing success on the task):", "",
             "| phrasing | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for words in sorted(given, key=lambda w: (given[w][0][0], w)):  # by task, then phrasing
        cells = [np.mean([seed[c] for seed in runs[n].values() for c in given[words]]) for n in names]
        lines.append(f"| {words} | " + " | ".join(f"{x:.2f}" for x in cells) + " |")
    return lines


def _space_table(plan: Plan, offline: Dict[Tuple[str, int], Optional[dict]], arm: str) -> List[str]:
    """Task-level retrieval R@1 on the training bags' held-out layouts, mean over a cell's seeds
    (``offline`` of the run files): above chance, a shared image–text–action space formed."""
    pairs = ("image->text", "text->image", "image->action", "text->action")
    rows, absent, why = [], 0, set()
    for name, c in plan.cells.items():
        if c.arm != arm or c.kind == "expert":  # the scripted expert has no embeddings
            continue
        offs = [offline[(name, s)] for s in c.seeds if (name, s) in offline]
        figs = [o for o in offs if o and "R@1" in o]
        absent += sum(1 for o in offs if o is None)
        why.update(o.get("skipped") or o.get("error") for o in offs if o and "R@1" not in o)
        if figs:
            rows.append(f"| {name} | {len(figs)} | " + " | ".join(f"{np.mean([o['R@1'][k] for o in figs]):.2f}"
                                                          for k in pairs)
                        + f" | {np.mean([o['chance_R@1'] for o in figs]):.2f} |")
    if not rows and not absent and not why:
        return []
    lines = ["", "Did a shared space form? Task-level retrieval R@1 on the training bags' held-out layouts "
             "(never the test set), mean over the seeds with a figure:", ""]
    if rows:
        lines += ["| cell | seeds | " + " | ".join(p.replace("->", " → ") for p in pairs) + " | chance |",
                  "|---|---|" + "---|" * (len(pairs) + 1), *rows]
    notes = [f"Not recorded: {absent} run(s) made before runs recorded retrieval."] if absent else []
    notes += [f"No figure: {w}." for w in sorted(why)]
    return lines + ([""] if rows and notes else []) + notes


def _verdict(row: Dict[str, float], plan: Plan) -> str:
    if not row["complete"]:  # no interim looks: a verdict only on every planned seed of both cells
        return f"none yet: {row['seeds']} of {row['planned']} seeds done"
    tol = 1e-9  # differences are ratios of counts: 0.70 - 0.65 is 0.0499999... in floats
    if row["p_holm"] < plan.alpha and abs(row["diff"]) >= plan.effect - tol:
        return "effect" if row["diff"] > 0 else "harm"
    if row["lo"] > -plan.effect + tol and row["hi"] < plan.effect - tol:
        return f"no effect ≥ {plan.effect:.2f}"
    return "undecided"


def _p(p: float, floor: float) -> str:
    """A bootstrap p: never 0, only below the smallest value its resamples resolve (``floor``)."""
    return f"< {floor:.4f}" if p == 0 else f"{p:.3f}" if p >= 0.001 else f"{p:.4f}"


def _t_p(p: float) -> str:
    return "—" if np.isnan(p) else f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _num(x: float, fmt: str = ".3f") -> str:
    return "—" if np.isnan(x) else f"{x:{fmt}}"


def write_report(plan: Plan = None) -> Path:
    plan = plan or load_plan()
    a = analyse(plan)
    lines = ["# The study: alignment, adapters and fusion on the fresh test set", "",
             "Regenerated by `trimodal-study report` from `runs/*.json` (the committed per-episode results); "
             "the plan is `plan.yaml`, committed before any test rollout.", "",
             f"Test set: {plan.tasks} × layouts {plan.layouts} × wordings {', '.join(plan.wordings)} "
             f"({a['cases']} cases per run), {plan.max_steps} steps, {plan.size}² images.", "",
             "## Cells", ""]
    lines += _cells_table(plan, a, "") + _phrasing_table(plan, a["runs"], "") + _space_table(plan, a["offline"], "")
    for arm, t in plan.arms.items():
        lines += ["", f"## Arm: {arm}", "",
                  f"Its own test set and training bags: {t.tasks} × layouts {t.layouts} × wordings "
                  f"{', '.join(t.wordings)} ({a['arm_cases'].get(arm, 0)} cases per run so far), {t.max_steps} "
                  f"steps, {t.size}² images, trained on `{t.data}`. With `other_task` (the paired task's words from "
                  f"the same first frame) success counts the scene's own task: lower means the words were followed. "
                  f"\"success\", the seeds' figures and the contrasts pool {', '.join(t.pooled)}.",
                  ""]
        lines += (_cells_table(plan, a, arm) + _phrasing_table(plan, a["runs"], arm)
                  + _space_table(plan, a["offline"], arm))
    unit = ("the scenes (a first frame: every wording of a task's layout, both tasks of a language pair's), "
            "whose rollouts are correlated"
            if plan.resample == "scene" else "the cases")
    lines += ["", "## Primary contrasts", "",
              f"Paired by case; 95% interval from a two-level bootstrap ({plan.bootstrap} resamples of {unit}, "
              f"then of each cell's n seeds, their spread widened by √(n/(n−1))); p two-sided from the same "
              f"bootstrap, Holm over the "
              f"{len(plan.primary)} primary contrasts; detectable: the difference found at 80% power at "
              f"α = {plan.alpha}/{len(plan.primary)}, from the observed spread. An effect needs Holm p < "
              f"{plan.alpha} and |difference| ≥ {plan.effect} (the estimate, not its interval's bound); \"no "
              f"effect\" needs the unadjusted 95% interval inside ±{plan.effect}, as the plan has it. "
              f"No verdict is drawn before both cells of a contrast have every planned seed (no interim looks); "
              f"until then the interval holds the cases' "
              f"variation and only part of the seeds'. At planned seeds: the detectable difference expected "
              f"once both cells have every planned seed, from the spread so far (the bootstrap's, scaled by "
              f"an analytic error's ratio between the planned and the present seed counts: the true per-scene "
              f"differences kept, the episodes' noise and each cell's between-seed variance over its seed "
              f"count; a rough guide while a cell has two seeds). "
              f"Rules out: the 95% interval (unadjusted) excludes every difference larger than "
              f"this, either way (below {plan.effect}: \"no effect ≥ {plan.effect}\"); shown once both cells "
              f"have every planned seed.", "",
              "| treatment − reference | difference | 95% interval | p (Holm) | detectable | at planned seeds "
              "| rules out \\|d\\| > | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for r in a["contrasts"]:
        holm_p = _p(r["p_holm"], 2 * len(plan.primary) / plan.bootstrap)
        rules_out = _num(max(-r["lo"], r["hi"]) if r["complete"] else float("nan"))
        lines.append(f"| {r['treatment']} − {r['reference']} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] | "
                     f"{holm_p} | {r['mde']:.3f} | {_num(r['mde_planned'])} | {rules_out} | {_verdict(r, plan)} |")
    done = {(r["treatment"], r["reference"]) for r in a["contrasts"]}
    for t, ref in plan.primary:
        if (t, ref) not in done:
            lines.append(f"| {t} − {ref} | waiting for runs | | | | | | |")
    if a["counted_once"]:
        lines += ["", "### Sensitivity: each source of error counted once (not the pre-registered rule)", "",
                  "Seeds and scenes are crossed: resampling both puts each episode's own noise into a scene's "
                  "seed average and into a seed's mean, so the bootstrap above counts it twice and its intervals "
                  "run wide (conservative: on simulated studies with no difference its standard error was 1.87× "
                  "the difference's actual spread with three seeds alike, 1.34× with five seeds 0.03 apart; the "
                  "estimate here 1.31× and 1.01×, its seed variances kept ≥ 0, and its 95% interval held 0 in "
                  "96-99% of them; `test_study.py`). Here the "
                  "error is estimated by moments, each source once: the variance across scenes of the "
                  "seed-averaged difference, plus each cell's between-seed variance net of the episodes' noise "
                  "over its seed count; a t interval at Satterthwaite's degrees of freedom (of those mean "
                  "squares), Holm over the "
                  f"{len(plan.primary)} primary contrasts, detectable at α = {plan.alpha}/{len(plan.primary)}. "
                  "The verdicts stay the plan's; this says how much finer the design resolves than its "
                  "conservative rule.", "",
                  "| treatment − reference | difference | standard error (bootstrap's) | df | 95% interval "
                  "| p (Holm) | detectable | at planned seeds |", "|---|---|---|---|---|---|---|---|"]
        boot = {(r["treatment"], r["reference"]): r for r in a["contrasts"]}
        for r in a["counted_once"]:
            b = boot[(r["treatment"], r["reference"])]
            lines.append(f"| {r['treatment']} − {r['reference']} | {r['diff']:+.3f} | {_num(r['se'])} "
                         f"({b['se']:.3f}) | {_num(r['df'], '.0f')} | "
                         f"[{_num(r['lo'], '+.3f')}, {_num(r['hi'], '+.3f')}] | "
                         f"{_t_p(r['p_holm'] if r['se'] > 0 else float('nan'))} | {_num(r['mde'])} | "
                         f"{_num(r['mde_planned'])} |")
    if a["by_wording"]:
        wordings = list(dict.fromkeys(r["wording"] for r in a["by_wording"]))
        gap = {(r["treatment"], r["reference"]): r for r in a["gap"]}
        lines += ["", "### The primary contrasts per wording", "",
                  "Exploratory, not pre-registered: each primary contrast on the cases of one wording only (a "
                  "training phrasing, or a held-out one), and whether the change loses less to new words (the "
                  "held-out phrasing's difference minus the training one's, case by case: does it make the "
                  "policy more general?); the same paired bootstrap, unadjusted; no verdict is drawn from it. "
                  "The bootstrap resamples scenes, not phrasings: each task has two held-out phrasings, each "
                  "given to several scenes, so these intervals hold for these phrasings, not for new ones, "
                  "and one phrasing can carry a difference (the per-phrasing table above; the next table takes "
                  "the phrasings as a sample).", "",
                  "| treatment − reference | " + " | ".join(f"{w}: difference [95% interval]" for w in wordings)
                  + (" | held-out − train [95% interval]" if gap else "") + " |",
                  "|---|" + "---|" * (len(wordings) + bool(gap))]
        cell = {(r["treatment"], r["reference"], r["wording"]): r for r in a["by_wording"]}
        def span(c: Dict[str, float]) -> str:
            return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"

        for r in a["contrasts"]:
            key = (r["treatment"], r["reference"])
            lines.append(f"| {key[0]} − {key[1]} | " + " | ".join(span(cell[(*key, w)]) for w in wordings)
                         + (f" | {span(gap[key])}" if key in gap else "") + " |")
    if a["new_phrasings"]:
        n = a["new_phrasings"][0]["heldout"]["phrasings"]
        lines += ["", "### For words no run has seen", "",
                  f"Exploratory, not pre-registered: the held-out column and the gap again, with the {n} held-out "
                  "phrasings taken as a sample of the ways these tasks could be worded, not as fixed (the tasks "
                  "stay fixed): each phrasing's difference (over its scenes and seeds) averaged per task, then "
                  "over tasks, so each phrasing counts alike and the differences move a little from the cases' "
                  "means above; its error from how far a task's phrasings disagree (each scene has one held-out "
                  "phrasing, so that holds the scenes' and the episodes' variation too) plus each cell's seed "
                  "variance over its seeds; a t interval at Satterthwaite's degrees of freedom (at most one per "
                  "task and the seeds' own: few, so wide; a task with one phrasing leaves no interval). It asks "
                  "whether a difference would carry to new words; the intervals above hold for these phrasings "
                  "only.", "",
                  "| treatment − reference | held-out: difference [95% interval] (df) "
                  "| held-out − train: difference [95% interval] (df) |", "|---|---|---|"]
        def spread(c: Dict[str, float]) -> str:
            return f"{c['diff']:+.3f} [{_num(c['lo'], '+.3f')}, {_num(c['hi'], '+.3f')}] ({_num(c['df'], '.0f')})"

        for r in a["new_phrasings"]:
            lines.append(f"| {r['treatment']} − {r['reference']} | {spread(r['heldout'])} | {spread(r['gap'])} |")
    if plan.secondary:
        lines += ["", "## Secondary contrasts", "",
                  "Exploratory: the same paired bootstrap, p uncorrected, detectable at α = "
                  f"{plan.alpha}; no verdict is drawn from them.", "",
                  "| treatment − reference | difference | 95% interval | p | detectable |", "|---|---|---|---|---|"]
        done = {(r["treatment"], r["reference"]): r for r in a["secondary"]}
        for t, ref in plan.secondary:
            r = done.get((t, ref))
            lines.append(f"| {t} − {ref} | waiting for runs | | | |" if r is None else
                         f"| {t} − {ref} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] | "
                         f"{_p(r['p'], 2 / plan.bootstrap)} | {r['mde']:.3f} |")
    lines += ["", f"## Missing runs ({len(a['missing'])} of {len(plan.runs())})", ""]
    lines += [", ".join(f"{c}_s{s}" for c, s in a["missing"]) or "none"]
    if a["unplanned"]:
        lines += ["", f"**Not in the plan, not counted**: {', '.join(a['unplanned'])}."]
    if a["config_changed"]:
        lines += ["", "**Trained with another config than the plan resolves to now** (the base config or a cell's "
                  "overrides changed after the run): " +
                  "; ".join(f"{c}_s{s} ({', '.join(d)})" for (c, s), d in a["config_changed"].items())]
    if a["config_added"]:
        fields = sorted({f for d in a["config_added"].values() for f in d})
        lines += ["", f"Config fields added since {len(a['config_added'])} run(s) were trained (their code had no "
                  f"such setting; today's values, which should leave what they trained unchanged): "
                  f"{', '.join(fields)}."]
    for folder, digests in a["data"].items():
        if len(digests) > 1:
            lines += ["", f"**Trained on different copies of {folder}** (digest of the bags' bytes): " +
                      "; ".join(f"{h[:12]}: " + ", ".join(f"{c}_s{s}" for c, s in ks) for h, ks in digests.items())]
    if a["data_unrecorded"]:
        lines += ["", f"Data not recorded: {a['data_unrecorded']} trained run(s) made before runs recorded a digest "
                  "of their training bags (and not counted here, a few with an earlier digest of the storage "
                  "files only, not compared)."]
    if a["config_unrecorded"]:
        lines += ["", f"Config not recorded: {a['config_unrecorded']} run(s) made before runs recorded a hash of "
                  "their resolved config."]
    _write_words(plan)
    if a["cells"]:
        lines += ["", "![success per cell](report_success.png)"]
        _plot(plan, a)
    if a["contrasts"] or a["secondary"]:
        lines += ["", "![the contrasts' differences and intervals](report_contrasts.png)"]
        _forest(plan, a)
    else:
        (STUDY / "report_contrasts.png").unlink(missing_ok=True)  # not a stale picture of other runs
    return atomic_write_text(STUDY / "report.md", "\n".join(lines) + "\n")


def _write_words(plan: Plan) -> None:
    """heldout_words.json: the held-out phrasing of every test case (``heldout_words``), keyed
    "<task> <layout>", for a reviewer who recomputes the per-phrasing figures from the run files."""
    def cases(t: TestSet) -> Dict[str, str]:
        return {f"{k} {x}": w for (k, x), w in sorted(heldout_words(t).items())} if "heldout" in t.wordings else {}

    atomic_write_text(STUDY / "heldout_words.json", json.dumps(
        {"about": "the held-out phrasing each test case was given, drawn as the runner draws them (a run "
                  "file records the wording condition, not the words); regenerated by trimodal-study report",
         "test": cases(plan.test()), "arms": {name: cases(t) for name, t in plan.arms.items()}}, indent=1) + "\n")


def _plot(plan: Plan, a: Dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [arm for arm in ["", *plan.arms] if any(c.arm == arm and n in a["cells"] for n, c in plan.cells.items())]
    groups = [[n for n, c in plan.cells.items() if c.arm == arm and n in a["cells"]] for arm in arms]
    fig, axes = plt.subplots(1, len(arms), figsize=(max(5, 0.7 * sum(map(len, groups)) + 1), 6), squeeze=False,
                             gridspec_kw={"width_ratios": [max(len(g), 2) for g in groups]})
    for ax, arm, names in zip(axes[0], arms, groups):  # one panel per test set: their successes differ in kind
        for i, n in enumerate(names):
            c = a["cells"][n]
            ax.scatter([i] * len(c["per_seed"]), c["per_seed"], color="0.6", s=12)
            ax.bar(i, c["success"], width=0.6, alpha=0.6)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_title(f"arm: {arm}" if arm else "main test set", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("test success (dots: seeds)")
    fig.tight_layout()
    atomic_savefig(fig, STUDY / "report_success.png", dpi=120)
    plt.close(fig)


def _forest(plan: Plan, a: Dict[str, object]) -> None:
    """Each contrast's paired difference and 95% interval against 0 and ± the plan's effect size:
    the primary ones (filled; open while seeds are missing) above the secondary ones (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r, "primary") for r in a["contrasts"]] + [(r, "secondary") for r in a["secondary"]]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    for y, (r, kind) in enumerate(reversed(rows)):
        colour = "C0" if kind == "primary" else "0.55"
        err = [[max(0.0, r["diff"] - r["lo"])], [max(0.0, r["hi"] - r["diff"])]]  # a quantile may miss the mean
        ax.errorbar(r["diff"], y, xerr=err, fmt="o", color=colour,
                    mfc=colour if kind == "secondary" or r["complete"] else "white", capsize=2, ms=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['treatment']} − {r['reference']}" for r, _ in reversed(rows)], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    for x in (-plan.effect, plan.effect):
        ax.axvline(x, color="k", lw=0.6, ls="--")
    ax.set_xlabel(f"difference in test success, 95% interval (dashed: ±{plan.effect}; blue: primary, open while "
                  f"seeds are missing; grey: secondary)")
    fig.tight_layout()
    atomic_savefig(fig, STUDY / "report_contrasts.png", dpi=120)
    plt.close(fig)
