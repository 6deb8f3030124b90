#!/usr/bin/env python3
"""Recompute the study's MT10 figures from the run files alone, with none of this package's code:
each cell's success over its seeds and each primary contrast's paired difference (over both wordings,
and over each alone) with a 95% interval from a two-level bootstrap (the scenes, a task's layout with
both its wordings, which is what a scene is on MT10, not in the language arm; then each cell's seeds,
their spread widened by sqrt(n / (n - 1))), the sensitivity analysis's standard errors and those
with the held-out phrasings a sample (heldout_words.json names each case's phrasing). It draws
the report's resamples in the report's order, so the test checks the arithmetic, not the choice of
method. A second implementation of the report's analysis, for a reviewer to read in one sitting; the
test suite checks that the two agree.

    python docs/results/study/recompute.py            # needs numpy and PyYAML only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent


def load(here: Path = HERE):
    """(plan, {cell: {seed: {(task, layout, wording): success}}}) for the cells of the MT10 test set."""
    plan = yaml.safe_load((here / "plan.yaml").read_text())
    outcomes: dict = {}
    for name, cell in plan["cells"].items():
        if (cell or {}).get("arm"):
            continue
        for seed in cell["seeds"]:
            f = here / "runs" / f"{name}_s{seed}.json"
            if f.exists():
                outcomes.setdefault(name, {})[seed] = {
                    (e["task"], e["layout"], e["wording"]): float(e["success"])
                    for e in json.loads(f.read_text())["episodes"]}
    return plan, outcomes


def load_words(here: Path = HERE) -> dict:
    """{(task, layout): its held-out phrasing} of the MT10 test set, from heldout_words.json."""
    cases = json.loads((here / "heldout_words.json").read_text())["test"]
    return {(key.rsplit(" ", 1)[0], int(key.rsplit(" ", 1)[1])): words for key, words in cases.items()}


def success(seeds: dict, wordings) -> float:
    """Mean success over every seed's cases in ``wordings``."""
    return float(np.mean([s for run in seeds.values() for (_, _, w), s in run.items() if w in wordings]))


def contrast(a: dict, b: dict, wordings, reps: int = 10000, seed: int = 0):
    """(difference, low, high) of mean success a − b over the cases both share. With the plan's
    number of resamples and seed 0 it draws what the report's bootstrap draws: the same interval."""
    cases = sorted(set.intersection(*[set(run) for run in [*a.values(), *b.values()]]))
    cases = [c for c in cases if c[2] in wordings]
    scenes = sorted({(t, x) for t, x, _ in cases})
    by_scene = [[i for i, c in enumerate(cases) if (c[0], c[1]) == s] for s in scenes]

    def matrix(seeds):  # (seeds, cases), each seed's deviation from the per-case mean widened
        m = np.array([[seeds[s][c] for c in cases] for s in sorted(seeds)])
        n = len(m)
        return m if n < 2 else m.mean(0) + (m - m.mean(0)) * np.sqrt(n / (n - 1))

    ma, mb = matrix(a), matrix(b)
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for r in range(reps):
        idx = np.concatenate([by_scene[k] for k in rng.integers(0, len(scenes), len(scenes))])
        boot[r] = (ma[rng.integers(0, len(ma), len(ma))][:, idx].mean()
                   - mb[rng.integers(0, len(mb), len(mb))][:, idx].mean())
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(ma.mean() - mb.mean()), float(lo), float(hi)


def gap(seeds: dict) -> dict:
    """Each seed's held-out minus training-phrasing outcome per (task, layout), as a one-wording cell
    (wording "gap") for ``contrast``: does a treatment lose less to new words?"""
    return {k: {(t, x, "gap"): run[(t, x, "heldout")] - run[(t, x, "train")] for t, x, w in run if w == "train"}
            for k, run in seeds.items()}


def moments(a: dict, b: dict, wordings):
    """(difference, standard error, degrees of freedom) of the report's sensitivity analysis: each
    source of error counted once. Per scene and seed the mean over its cases; the variance across
    scenes of the seed-averaged difference (at least the residual's share of it) over the scenes, plus
    per cell the variance of its seeds' means net of the seeds x scenes residual (a two-way table;
    kept >= 0) over its seeds; Satterthwaite's degrees of freedom over those mean squares."""
    cases = sorted(set.intersection(*[set(run) for run in [*a.values(), *b.values()]]))
    scenes = sorted({(t, x) for t, x, w in cases if w in wordings})

    def table(seeds):  # (seeds, scenes)
        return np.array([[np.mean([run[c] for c in cases if c[:2] == sc and c[2] in wordings]) for sc in scenes]
                         for run in (seeds[k] for k in sorted(seeds))])

    ta, tb = table(a), table(b)
    g = len(scenes)
    scene = (ta.mean(0) - tb.mean(0)).var(ddof=1)  # its mean square: g - 1 degrees of freedom
    noise, seed_terms, seed_var = 0.0, [], 0.0
    for t in (ta, tb):
        s = len(t)
        resid = t - t.mean(1, keepdims=True) - t.mean(0, keepdims=True) + t.mean()
        mse = (resid ** 2).sum() / ((s - 1) * (g - 1))  # (s - 1)(g - 1) degrees of freedom
        rows = t.mean(1).var(ddof=1)  # s - 1 degrees of freedom
        noise += mse / s  # the episodes' noise in the seed-averaged difference: the scenes' part is no less
        if rows - mse / g > 0:  # a seed variance estimated at 0 adds no term
            seed_var += (rows - mse / g) / s
            seed_terms += [(rows / s, s - 1), (mse / (g * s), (s - 1) * (g - 1))]
    var = max(scene, noise) / g + seed_var
    terms = [(max(scene, noise) / g, g - 1)] + seed_terms  # Satterthwaite over the mean squares
    df = var ** 2 / sum(v ** 2 / f for v, f in terms if v)
    return float(ta.mean() - tb.mean()), float(np.sqrt(var)), float(df)


def new_words(a: dict, b: dict, wording: str, words: dict):
    """(difference, standard error, degrees of freedom) of the report's figures for words no run has
    seen: the cases of ``wording`` grouped by the held-out phrasing of their (task, layout) (``words``:
    heldout_words.json); each phrasing's mean difference over its cases and seeds, averaged per task,
    then over tasks; its variance: per task the variance of its phrasings' figures over their count,
    summed over the tasks squared, plus per cell its seeds' variance net of the seeds x cases residual
    (when above 0) over its seeds; Satterthwaite's degrees of freedom (one per task, n - 1 per cell).
    For cells of two seeds or more and two phrasings per task, as the primary contrasts have."""
    cases = sorted(c for c in set.intersection(*[set(run) for run in [*a.values(), *b.values()]]) if c[2] == wording)
    ma, mb = (np.array([[run[c] for c in cases] for run in (s[k] for k in sorted(s))]) for s in (a, b))
    d = ma.mean(0) - mb.mean(0)
    phrasings: dict = {}
    for i, c in enumerate(cases):
        phrasings.setdefault((c[0], words[c[:2]]), []).append(d[i])
    per_task: dict = {}
    for (task, _), v in sorted(phrasings.items()):
        per_task.setdefault(task, []).append(np.mean(v))
    k = len(per_task)
    terms = [(np.var(v, ddof=1) / len(v) / k ** 2, len(v) - 1) for v in per_task.values() if len(v) > 1]
    for m in (ma, mb):
        s, g = m.shape
        if s > 1:
            resid = m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + m.mean()
            seed = m.mean(1).var(ddof=1) - (resid ** 2).sum() / ((s - 1) * (g - 1)) / g
            if seed > 0:
                terms.append((seed / s, s - 1))
    var = sum(v for v, _ in terms)
    df = var ** 2 / sum(v ** 2 / f for v, f in terms if v) if var > 0 else float("nan")
    return float(np.mean([np.mean(v) for v in per_task.values()])), float(np.sqrt(var)), float(df)


def main() -> int:
    plan, outcomes = load()
    wordings = plan["test"]["wordings"]
    print("cell | seeds | success")
    for name in plan["cells"]:
        if name in outcomes:
            print(f"{name} | {len(outcomes[name])} | {success(outcomes[name], wordings):.3f}")
    print("\ntreatment - reference | difference | 95% interval")
    for t, ref in plan["primary"]:
        if t in outcomes and ref in outcomes:
            d, lo, hi = contrast(outcomes[t], outcomes[ref], wordings, reps=plan["analysis"]["bootstrap"])
            print(f"{t} - {ref} | {d:+.3f} | [{lo:+.3f}, {hi:+.3f}]")
    print("\nheld-out minus training phrasing (exploratory): treatment - reference | difference | 95% interval")
    for t, ref in plan["primary"]:
        if t in outcomes and ref in outcomes:
            d, lo, hi = contrast(gap(outcomes[t]), gap(outcomes[ref]), ["gap"], reps=plan["analysis"]["bootstrap"])
            print(f"{t} - {ref} | {d:+.3f} | [{lo:+.3f}, {hi:+.3f}]")
    print("\nsensitivity, each source of error once: treatment - reference | difference | se | df")
    for t, ref in plan["primary"]:
        if t in outcomes and ref in outcomes:
            d, se, df = moments(outcomes[t], outcomes[ref], wordings)
            print(f"{t} - {ref} | {d:+.3f} | {se:.3f} | {df:.0f}")
    words = load_words()
    print("\nfor new words (exploratory), the held-out phrasings a sample: treatment - reference | "
          "held-out: difference, se, df | held-out - train: difference, se, df")
    for t, ref in plan["primary"]:
        if t in outcomes and ref in outcomes:
            held = new_words(outcomes[t], outcomes[ref], "heldout", words)
            gaps = new_words(gap(outcomes[t]), gap(outcomes[ref]), "gap", words)
            print(f"{t} - {ref} | " + " | ".join(f"{d:+.3f}, {se:.3f}, {df:.0f}" for d, se, df in (held, gaps)))
    print("\nper wording (exploratory): treatment - reference | wording | difference | 95% interval")
    for t, ref in plan["primary"]:
        if t in outcomes and ref in outcomes:
            for w in wordings:
                d, lo, hi = contrast(outcomes[t], outcomes[ref], [w], reps=plan["analysis"]["bootstrap"])
                print(f"{t} - {ref} | {w} | {d:+.3f} | [{lo:+.3f}, {hi:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
