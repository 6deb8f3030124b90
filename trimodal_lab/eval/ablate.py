"""``trimodal-ros ablate``: does mixing the encoders (fusion) or aligning the modalities (a
contrastive loss) make the policy *succeed* more often? Closed-loop success on held-out layouts is
the primary outcome; offline token accuracy, MAE and language reliance are secondary columns, with
their rank correlation to success reported (offline accuracy does not rank closed-loop success).

Design, in two stages sized by ``--budget`` (``BUDGETS``):

A. every fusion × loss cell with ``seeds`` seeds: train; score the held-out frames offline; drive
   Meta-World for ``val_episodes`` per task on the VALIDATION layouts (35-39: used only to choose
   stage B's cells) and ``screen_episodes`` per task on the HELD-OUT layouts (40-49). Every run
   uses the same layouts and instructions, so every comparison is paired.
B. the ``top`` cells by validation success get ``confirm_seeds`` seeds in all and
   ``confirm_episodes`` held-out episodes per task (an extension of stage A's episode list).

Analysis (``eval/stats.py``): per cell, success with a Wilson interval (episodes pooled) and a
seeds-then-episodes bootstrap interval; paired contrasts within each loss (each fusion against
``REFERENCE_FUSION``) and within each fusion (each loss against ``none``), Holm-corrected over the
whole family; a two-way ANOVA on per-run success for the fusion × loss interaction; Spearman
between the offline metrics and success; the difference the design can detect. Optional confound
checks (``--confounds``): pairwise − none with 4× the steps and with contrastive_weight 0.1.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from trimodal_ros.config import load_config
from trimodal_ros.io import atomic_savefig, atomic_write_json, atomic_write_text
from trimodal_lab.eval.stats import (holm, min_detectable_difference, paired_runs_delta, runs_bootstrap, spearman,
                                     two_way_anova)

log = logging.getLogger(__name__)
LOSSES = ["pairwise", "joint", "clip", "none"]
REFERENCE_FUSION = "weighted_sum"
LANGUAGE_EVERY = 4  # the language section scores every 4th held-out frame (5 passes per run)


@dataclasses.dataclass(frozen=True)
class Budget:
    steps: int
    batch: int
    seeds: int              # stage A seeds per cell
    val_episodes: int       # per task, validation layouts, every run (choosing stage B's cells)
    screen_episodes: int    # per task, held-out layouts, every run
    top: int                # cells confirmed in stage B
    confirm_seeds: int      # seeds in all for those cells
    confirm_episodes: int   # held-out episodes per task for those cells (≤ 10 layouts)
    max_steps: int = 150    # episode length limit


BUDGETS = {
    "tiny": Budget(steps=6, batch=8, seeds=2, val_episodes=1, screen_episodes=1, top=1, confirm_seeds=2,
                   confirm_episodes=2, max_steps=10),
    # sized for under an hour on a 2-core CPU (MT10 at 192², mt10_policy's towers; README "Results" has the
    # measured time): one seed per cell screens, seeds come in stage B. The ANOVA needs ≥ 2 seeds per cell.
    "small": Budget(steps=200, batch=32, seeds=1, val_episodes=1, screen_episodes=2, top=3, confirm_seeds=3,
                    confirm_episodes=3),
    # the same episodes per screened cell spread over 2 seeds (seed variance in stage A, the ANOVA): ~1.4× the time
    "medium": Budget(steps=200, batch=32, seeds=2, val_episodes=1, screen_episodes=1, top=3, confirm_seeds=3,
                     confirm_episodes=3),
    "full": Budget(steps=3000, batch=128, seeds=3, val_episodes=2, screen_episodes=5, top=4, confirm_seeds=5,
                   confirm_episodes=10),
}


def _plan(tasks: List[str], split: str, episodes: int):
    from trimodal_lab.sim.rollout import episode_plan

    return episode_plan(tasks, episodes, split, seed=0)


_SCENES: dict = {}  # one simulated scene per (task, camera, size), reused by every run


def _closed_loop(policy, plan, max_steps: int, size: int, camera: str) -> List[list]:
    from trimodal_lab.sim.rollout import RolloutSpec, rollout_in_process

    spec = RolloutSpec(plan=plan, max_steps=max_steps, size=size, camera=camera)
    rep = rollout_in_process(policy, spec, progress=False, scenes=_SCENES)
    return [[e["task"], e["layout"], bool(e["success"])] for e in rep["episodes"]]


def _conflicts(metrics_csv: Path) -> Tuple[float, float]:
    import csv

    pairs = []
    if metrics_csv.exists():
        with open(metrics_csv) as f:
            for row in csv.DictReader(f):
                c, n = float(row["grad_conflict"]), float(row.get("grad_conflict_null", "nan") or "nan")
                if not math.isnan(c):
                    pairs.append((c, n))
    if not pairs:
        return float("nan"), float("nan")
    a = np.array(pairs)
    return float(np.nanmean(a[:, 0])), float(np.nanmean(a[:, 1])) if np.isfinite(a[:, 1]).any() else float("nan")


class Grid:
    """The datasets, plans and run bookkeeping of one ablation folder."""

    def __init__(self, data: str, out, budget: Budget, config: str, device: str, tasks: Optional[List[str]] = None):
        from trimodal_ros.data.dataset import BagDataset

        self.data, self.out, self.b, self.config, self.device = data, Path(out), budget, config, device
        cfg = load_config(config)
        mc = cfg.model
        self.train_ds = BagDataset.from_config(data, mc, robot=cfg.robot, split="train", tasks=tasks)
        self.held_ds = BagDataset.from_config(data, mc, robot=cfg.robot, split="heldout", tasks=tasks)
        if len(self.held_ds) == 0:
            raise ValueError(f"{data}: no episodes on held-out layouts; generate more episodes per task")
        self.tasks = sorted({ep.task for ep in self.train_ds.episodes})
        self.size = int(self.train_ds.frames.shape[1])
        self.camera = self.train_ds.episodes[0].meta.get("camera", "corner")  # roll out as the data was recorded
        self.trained = 0  # runs this invocation trained (the others' summaries were found in ``out``)

    def run(self, fusion: str, loss: str, seed: int, heldout_episodes: int, tag: str = "", **train_over) -> dict:
        """Train one run (or reuse its summary) and score it; returns its summary."""
        from trimodal_ros.policy import Policy
        from trimodal_ros.train.trainer import train
        from trimodal_ros.utils import pick_device
        from trimodal_lab.eval.evaluate import evaluate

        name = f"{fusion}__{loss}__s{seed}{tag}"
        run_dir = self.out / "runs" / name
        path = run_dir / "summary.json"
        s = json.loads(path.read_text()) if path.exists() else None
        if s is None:
            b, self.trained = self.b, self.trained + 1
            cfg = load_config(self.config, fusion=fusion)
            steps = train_over.pop("steps", b.steps)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(
                cfg.train, loss=loss, seed=seed, steps=steps, batch_size=b.batch, ckpt_every=steps,
                warmup_steps=min(cfg.train.warmup_steps, steps // 5), log_every=max(1, steps // 10),
                conflict_every=max(1, steps // 5), **train_over))
            t0 = time.perf_counter()
            ckpt = train(cfg, self.data, run_dir, device=self.device, progress=False, dataset=self.train_ds).checkpoint
            seconds = time.perf_counter() - t0
            policy = Policy.load(str(ckpt), device=pick_device(self.device))
            rep = evaluate(ckpt, self.data, None, dataset=self.held_ds, progress=False, policy=policy,
                           with_language=True, train_dataset=self.train_ds, language_every=LANGUAGE_EVERY)
            conflict, null = _conflicts(run_dir / "metrics.csv")
            s = {"fusion": fusion, "loss": loss, "seed": seed, "tag": tag, "train_seconds": seconds,
                 "steps": steps, **{k: v for k, v in train_over.items()},
                 "token_accuracy": rep["token_accuracy"], "action_mae": rep["action_mae"],
                 "retrieval_r1": rep["retrieval"]["mean"]["R@1"], "baselines": rep["baselines"],
                 "language_reliance": rep["language"]["reliance"]["recorded - other_task"]["delta"],
                 "empty_instruction_drop": rep["language"]["reliance"]["recorded - empty"]["delta"],
                 "wording_robustness":
                     rep["language"]["wording_robustness"]["heldout_paraphrase - train_paraphrase"]["delta"],
                 "grad_conflict": conflict, "grad_conflict_null": null,
                 "val": _closed_loop(policy, _plan(self.tasks, "val", self.b.val_episodes), b.max_steps, self.size,
                                     self.camera),
                 "heldout": []}
            atomic_write_json(path, s)
        have = {(t, ly) for t, ly, _ in s["heldout"]}
        plan = [e for e in _plan(self.tasks, "heldout", heldout_episodes) if (e[0], e[1]) not in have]
        if plan:  # stage B extends stage A's list: only the new episodes run
            from trimodal_ros.policy import Policy
            from trimodal_ros.utils import pick_device

            policy = Policy.load(str(run_dir / "last.pt"), device=pick_device(self.device))
            s["heldout"] += _closed_loop(policy, plan, self.b.max_steps, self.size, self.camera)
            atomic_write_json(path, s)
        return s


def _success(runs: List[dict], split: str = "heldout") -> Dict[int, Dict[Tuple[str, int], float]]:
    """seed → {(task, layout): success} of a cell's runs."""
    return {r["seed"]: {(t, ly): float(ok) for t, ly, ok in r[split]} for r in runs}


def _aligned(a: Dict[int, dict], b: Dict[int, dict]) -> Tuple[Dict[int, np.ndarray], Dict[int, np.ndarray]]:
    """The two cells' outcomes on their common seeds and common episodes, in one order."""
    seeds = sorted(set(a) & set(b))
    keys = sorted(set.intersection(*[set(a[s]) & set(b[s]) for s in seeds])) if seeds else []
    return ({s: np.array([a[s][k] for k in keys]) for s in seeds},
            {s: np.array([b[s][k] for k in keys]) for s in seeds})


def analyse(runs: List[dict], fusions: List[str], losses: List[str], budget: Budget) -> dict:
    """Cells, paired Holm-corrected contrasts, interaction, correlations, detectable difference."""
    from trimodal_lab.eval.metrics import mean_ci95, wilson_interval

    cells: Dict[str, dict] = {}
    for f, loss in itertools.product(fusions, losses):
        rs = [r for r in runs if r["fusion"] == f and r["loss"] == loss and not r.get("tag")]
        if not rs:
            continue
        outcomes = [ok for r in rs for _, _, ok in r["heldout"]]
        k, n = int(sum(outcomes)), len(outcomes)
        per_seed = {r["seed"]: np.array([ok for _, _, ok in r["heldout"]], float) for r in rs}
        equal = len({len(v) for v in per_seed.values()}) == 1 and n
        boot = runs_bootstrap(per_seed) if equal else np.array([k / max(n, 1)])
        val = [ok for r in rs for _, _, ok in r["val"]]
        cells[f"{f}/{loss}"] = {
            "fusion": f, "loss": loss, "seeds": len(rs), "episodes": n, "successes": k,
            "success": k / n if n else float("nan"), "wilson95": list(wilson_interval(k, n)),
            "bootstrap95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "val_success": float(np.mean(val)) if val else float("nan"),
            **{m: mean_ci95([r[m] for r in rs]) for m in ("token_accuracy", "action_mae", "retrieval_r1",
                                                         "language_reliance", "empty_instruction_drop",
                                                         "wording_robustness", "grad_conflict", "grad_conflict_null")},
            "run_success": [float(np.mean([ok for _, _, ok in r["heldout"]])) for r in rs],
        }
    contrasts = []
    ref = REFERENCE_FUSION if REFERENCE_FUSION in fusions else fusions[0]
    for loss in losses:
        for f in fusions:
            if f != ref and f"{f}/{loss}" in cells and f"{ref}/{loss}" in cells:
                contrasts.append((f"{f} − {ref} | loss {loss}", f, loss, ref, loss))
    for f in fusions:
        for loss in losses:
            if loss != "none" and f"{f}/{loss}" in cells and f"{f}/none" in cells:
                contrasts.append((f"{loss} − none | fusion {f}", f, loss, f, "none"))
    table = []
    for name, fa, la, fb, lb in contrasts:
        a = _success([r for r in runs if r["fusion"] == fa and r["loss"] == la and not r.get("tag")])
        b = _success([r for r in runs if r["fusion"] == fb and r["loss"] == lb and not r.get("tag")])
        table.append({"contrast": name, **paired_runs_delta(*_aligned(a, b))})
    for row, p in zip(table, holm([t["p"] if not math.isnan(t["p"]) else 1.0 for t in table])):
        row["p_holm"] = p
    anova = None
    runs_per_cell = {(c["fusion"], c["loss"]): c["run_success"] for c in cells.values()}
    if len(fusions) > 1 and len(losses) > 1 and min(len(v) for v in runs_per_cell.values()) >= 2:
        anova = two_way_anova(runs_per_cell)
    cl = [c["success"] for c in cells.values()]
    corr = {m: spearman([c[m][0] for c in cells.values()], cl)
            for m in ("token_accuracy", "action_mae", "retrieval_r1")}
    n_tasks = _n_tasks(runs)
    base = float(np.mean(cl)) if cl else 0.5
    k = max(1, len(table))
    n_screen = budget.screen_episodes * n_tasks * budget.seeds
    n_conf = budget.confirm_episodes * n_tasks * budget.confirm_seeds
    mde = {"episodes_per_cell_screened": n_screen, "episodes_per_cell_confirmed": n_conf,
           "screened": min_detectable_difference(n_screen, base, comparisons=k),
           "confirmed": min_detectable_difference(n_conf, base, comparisons=k), "comparisons": k, "base_rate": base}
    return {"cells": cells, "contrasts": table, "anova": anova, "rank_correlation_with_success": corr,
            "detectable_difference": mde, "reference_fusion": ref}


def _n_tasks(runs: List[dict]) -> int:
    return len({t for r in runs for t, _, _ in r["heldout"]}) or 1


def run_grid(data: str, out: str, budget: str = "small", fusions: Optional[List[str]] = None,
             losses: Optional[List[str]] = None, device: str = "auto", config: str = REFERENCE_FUSION,
             tasks: Optional[List[str]] = None, confounds: bool = False, seeds: Optional[int] = None) -> dict:
    """Run (or resume) the two-stage grid in ``out`` and write ablation.json, ablation.md, plots."""
    from trimodal_ros.model import FUSIONS
    from trimodal_lab.sim.rollout import expert_success

    fusions, losses = fusions or FUSIONS.names(), losses or LOSSES
    b = BUDGETS[budget]
    if seeds is not None:
        b = dataclasses.replace(b, seeds=seeds, confirm_seeds=max(seeds, b.confirm_seeds))
    t_start = time.perf_counter()
    previous = Path(out) / "ablation.json"  # a resumed grid adds its wall time to the earlier invocations'
    earlier = json.loads(previous.read_text()).get("seconds", 0.0) if previous.exists() else 0.0
    g = Grid(data, out, b, config, device, tasks)
    stage_a = list(itertools.product(fusions, losses, range(b.seeds)))
    runs = [g.run(f, loss, s, b.screen_episodes) for f, loss, s in tqdm(stage_a, desc="ablate A", dynamic_ncols=True)]
    val = {(f, loss): np.mean([ok for r in runs if (r["fusion"], r["loss"]) == (f, loss) for _, _, ok in r["val"]])
           for f, loss in itertools.product(fusions, losses)}
    top = sorted(val, key=lambda c: (-val[c], c))[:b.top]
    stage_b = [(f, loss, s) for f, loss in top for s in range(b.confirm_seeds)]
    done = {(r["fusion"], r["loss"], r["seed"]): r for r in runs}
    for f, loss, s in tqdm(stage_b, desc="ablate B", dynamic_ncols=True):
        done[(f, loss, s)] = g.run(f, loss, s, b.confirm_episodes)
    runs = list(done.values())
    checks = []
    if confounds:  # is "alignment hurts" a budget or a weighting effect? (the confound check)
        ref = REFERENCE_FUSION if REFERENCE_FUSION in fusions else fusions[0]
        for tag, over in (("_x4", {"steps": 4 * b.steps}), ("_w01", {"contrastive_weight": 0.1})):
            for loss in ("pairwise", "none"):
                if tag == "_w01" and loss == "none":
                    continue  # a weight on no contrastive term changes nothing: the 1x none runs serve
                for s in range(b.seeds):
                    checks.append(g.run(ref, loss, s, b.screen_episodes, tag=tag, **dict(over)))
    expert = expert_success(g.tasks, max(b.confirm_episodes, b.screen_episodes), split="heldout",
                            max_steps=b.max_steps)
    result = analyse(runs, fusions, losses, b)
    result["confounds"] = _confound_table(runs + checks) if checks else []
    result.update({"budget": budget, "budget_spec": dataclasses.asdict(b), "config": config, "data": str(data),
                   "tasks": g.tasks, "top_cells_by_validation": [f"{f}/{loss}" for f, loss in top],
                   "expert_success": expert["overall"]["success_rate"], "train_samples": len(g.train_ds),
                   "heldout_samples": len(g.held_ds), "runs": runs + checks,
                   "seconds": earlier + time.perf_counter() - t_start if g.trained or not earlier else earlier})
    out = Path(out)
    atomic_write_json(out / "ablation.json", result)
    atomic_write_text(out / "ablation.md", report_md(result))
    plot(result, out)
    return result


def _confound_table(runs: List[dict]) -> List[dict]:
    """pairwise − none of the reference fusion at 1× steps, 4× steps, and contrastive_weight 0.1."""
    ref = next((r["fusion"] for r in runs if r.get("tag")), REFERENCE_FUSION)
    pick = lambda loss, tag: _success([r for r in runs if r["fusion"] == ref and r["loss"] == loss  # noqa: E731
                                    and r.get("tag", "") == tag])
    rows = []
    for label, tag_p, tag_n in (("1x steps", "", ""), ("4x steps", "_x4", "_x4"),
                                ("contrastive_weight 0.1", "_w01", "")):
        a, b = pick("pairwise", tag_p), pick("none", tag_n)
        if a and b:
            acc = lambda loss, tag: float(np.mean([r["token_accuracy"] for r in runs if r["fusion"] == ref  # noqa: E731
                                                and r["loss"] == loss and r.get("tag", "") == tag]))
            rows.append({"setting": label, **paired_runs_delta(*_aligned(a, b)),
                         "token_accuracy_delta": acc("pairwise", tag_p) - acc("none", tag_n)})
    return rows


def verdict(result: dict) -> List[str]:
    """Plain sentences generated from the numbers."""
    cells, lines = result["cells"], []
    if not cells:
        return ["- no runs"]
    best = max(cells.values(), key=lambda c: c["success"])
    worst = min(cells.values(), key=lambda c: c["success"])
    mde = result["detectable_difference"]
    lines.append(f"- Closed-loop success on held-out layouts ranges from {worst['success']:.2f} ({worst['fusion']}/"
                 f"{worst['loss']}) to {best['success']:.2f} ({best['fusion']}/{best['loss']}); the scripted expert "
                 f"succeeds {result['expert_success']:.2f} on the same layouts.")
    lines.append(f"- What this design can detect (80% power, Holm over {mde['comparisons']} contrasts): a difference "
                 f"of about {mde['screened']:.2f} between screened cells ({mde['episodes_per_cell_screened']} "
                 f"episodes each) and {mde['confirmed']:.2f} between confirmed cells "
                 f"({mde['episodes_per_cell_confirmed']} episodes each). Smaller true effects would go unseen.")
    sig = [c for c in result["contrasts"] if c["p_holm"] < 0.05]
    if sig:
        for c in sig:
            lines.append(f"- {c['contrast']}: Δ success {c['delta']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}], Holm p "
                         f"{c['p_holm']:.3f}: a real difference.")
    else:
        lines.append(f"- None of the {len(result['contrasts'])} paired contrasts (each fusion against "
                     f"{result['reference_fusion']} within a loss, each loss against none within a fusion) is "
                     f"distinguishable from noise after Holm correction: at this budget neither the mix of encoders "
                     f"nor the alignment loss changes closed-loop success by more than the design detects.")
    if result["anova"]:
        a = result["anova"]
        lines.append(f"- Fusion × loss interaction (two-way ANOVA on per-run success): F={a['interaction']['F']:.2f}, "
                     f"p={a['interaction']['p']:.3f}" + (" — the fusion effect depends on the loss."
                                                           if a["interaction"]["p"] < 0.05 else
                                                           " — no evidence that the fusion effect depends on the loss.")
                     + f" Main effects: fusion p={a['rows']['p']:.3f}, loss p={a['cols']['p']:.3f}.")
    elif len({c["fusion"] for c in cells.values()}) > 1 and len({c["loss"] for c in cells.values()}) > 1:
        lines.append("- Fusion × loss interaction: not tested (the two-way ANOVA needs ≥ 2 seeds in every cell; "
                     "`--budget medium` has them).")
    if min(c["seeds"] for c in cells.values()) < 2:
        lines.append("- Cells screened with one seed: their intervals and contrasts cover episode variation, not "
                     "seed variation (the confirmed cells' 3 seeds show how much that adds).")
    rc = result["rank_correlation_with_success"]["token_accuracy"]
    lines.append(f"- Offline token accuracy vs closed-loop success across cells: Spearman ρ={rc['rho']:+.2f} "
                 f"(p={rc['p']:.3f}, {rc['n']} cells)"
                 + (": it ranks the cells as success does." if rc["p"] < 0.05 and rc["rho"] > 0
                    else ": it does not rank closed-loop success."))
    rel = {k: c["language_reliance"] for k, c in cells.items()}
    seeded = [k for k in rel if cells[k]["seeds"] >= 2]  # a seed interval needs two seeds
    reads = [k for k in seeded if rel[k][0] - rel[k][1] > 0]
    lines.append(f"- Language reliance (token accuracy with the recorded instruction minus with another task's, "
                 f"same frames): range {min(m for m, _ in rel.values()):+.3f} to "
                 f"{max(m for m, _ in rel.values()):+.3f}; "
                 f"{len([k for k in rel if rel[k][0] > 0])}/{len(rel)} cells above 0"
                 + (f", {len(reads)}/{len(seeded)} cells with ≥ 2 seeds above 0 by their seed interval." if seeded
                    else " (one seed each: no interval)."))
    gc = [(c["grad_conflict"][0], c["grad_conflict_null"][0]) for c in cells.values()
          if not math.isnan(c["grad_conflict"][0])]
    if gc:
        lines.append(f"- Gradient conflict cos(∇action, ∇contrastive) over shared parameters: "
                     f"{np.mean([a for a, _ in gc]):+.3f} "
                     f"on average, against {np.nanmean([b for _, b in gc]):+.3f} between two halves of a batch of the "
                     f"action loss alone (the null).")
    for c in result.get("confounds", []):
        lines.append(f"- Confound check, pairwise − none ({c['setting']}): Δ success {c['delta']:+.2f} "
                     f"[{c['lo']:+.2f}, {c['hi']:+.2f}], Δ token accuracy {c['token_accuracy_delta']:+.3f}.")
    return lines


CAVEATS = [
    "- The third modality the contrastive losses align is **proprioception** (joint positions and velocities; "
    "`action_history` is 0 in these configs), not actions: \"image–action–text\" here means image–proprio–text.",
    "- `clip` is an image–text-only loss on towers **trained from scratch**, not the EF-VLA baseline "
    "(which relies on a frozen, pretrained CLIP).",
    "- Task-level retrieval on MT10 is close to 10-way scene classification: each task has its own scene.",
    "- Small budget: tiny towers trained from scratch for a few hundred steps on 2 CPU cores; the answer at a real "
    "budget (`--budget full`, pretrained towers) may differ.",
]


def report_md(result: dict) -> str:
    b = result["budget_spec"]
    cells = result["cells"]
    lines = ["# Ablation: fusion × contrastive loss, scored by closed-loop success", "",
             f"budget `{result['budget']}`: {b['steps']} steps × batch {b['batch']}; "
             f"stage A {b['seeds']} seeds per cell, "
             f"{b['val_episodes']} validation + {b['screen_episodes']} held-out episodes per task and run; "
             f"stage B: the "
             f"{b['top']} best cells on the validation layouts ({', '.join(result['top_cells_by_validation'])}) with "
             f"{b['confirm_seeds']} seeds and {b['confirm_episodes']} held-out episodes per task. Tasks: "
             f"{', '.join(result['tasks'])}. {result['train_samples']} train samples, {result['heldout_samples']} "
             f"held-out frames. Took {result['seconds'] / 60:.1f} min of wall time (resumed invocations added up).",
             "", "## Verdict", "", *verdict(result),
             "", "## Cells", "",
             "| fusion / loss | seeds | episodes | **success** | Wilson 95% | bootstrap 95% | val success | "
             "token acc | MAE | language reliance | grad conflict (null) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, c in sorted(cells.items(), key=lambda kv: -kv[1]["success"]):
        pm = (lambda h: f" ± {h:.3f}") if c["seeds"] > 1 else (lambda h: "")  # no seed interval from one seed
        lines.append(f"| {k} | {c['seeds']} | {c['episodes']} | **{c['success']:.2f}** | [{c['wilson95'][0]:.2f}, "
                     f"{c['wilson95'][1]:.2f}] | [{c['bootstrap95'][0]:.2f}, {c['bootstrap95'][1]:.2f}] | "
                     f"{c['val_success']:.2f} | {c['token_accuracy'][0]:.3f}{pm(c['token_accuracy'][1])} | "
                     f"{c['action_mae'][0]:.3f} | {c['language_reliance'][0]:+.3f}{pm(c['language_reliance'][1])} | "
                     f"{c['grad_conflict'][0]:+.3f} ({c['grad_conflict_null'][0]:+.3f}) |")
    base = next(iter(result["runs"]))["baselines"] if result["runs"] else {}
    if base:
        lines += ["", f"Baselines on the same held-out frames: most common token {base['most_common_token']:.3f} "
                      f"(per task {base['most_common_token_per_task']:.3f}); "
                      f"mean action MAE {base['mean_action_mae']:.3f} "
                      f"(per task {base['mean_action_mae_per_task']:.3f})."]
    lines += ["", "## Paired contrasts (same layouts, same seeds; Holm over the family)", "",
              "| contrast | seeds | episodes | Δ success | 95% CI | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for c in result["contrasts"]:
        lines.append(f"| {c['contrast'].replace(' | ', ', ')} | {c['pairs']} | {c.get('episodes', 0)} | "
                     f"{c['delta']:+.3f} | "
                     f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p']:.3f} | {c['p_holm']:.3f} |")
    if result["anova"]:
        a = result["anova"]
        lines += ["", "## Two-way ANOVA on per-run success", "", "| effect | F | df | p |", "|---|---|---|---|"]
        for k, name in (("rows", "fusion"), ("cols", "loss"), ("interaction", "fusion × loss")):
            lines.append(f"| {name} | {a[k]['F']:.2f} | {a[k]['df']} | {a[k]['p']:.3f} |")
    lines += ["", "## Offline metrics vs closed-loop success (Spearman over cells)", "",
              "| offline metric | ρ | p |", "|---|---|---|"]
    for m, r in result["rank_correlation_with_success"].items():
        lines.append(f"| {m} | {r['rho']:+.2f} | {r['p']:.3f} |")
    if result.get("confounds"):
        lines += ["", "## Confound checks: pairwise − none of the reference fusion", "",
                  "| setting | Δ success | 95% CI | Δ token acc |", "|---|---|---|---|"]
        for c in result["confounds"]:
            lines.append(f"| {c['setting']} | {c['delta']:+.3f} | [{c['lo']:+.3f}, {c['hi']:+.3f}] | "
                         f"{c['token_accuracy_delta']:+.3f} |")
    lines += ["", "## What the names mean here", "", *CAVEATS]
    return "\n".join(lines) + "\n"


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fusions = sorted({c["fusion"] for c in cells.values()})
    losses = [loss for loss in LOSSES if any(c["loss"] == loss for c in cells.values())]
    fig, ax = plt.subplots(figsize=(11, 4))
    w = 0.8 / max(1, len(losses))
    for i, loss in enumerate(losses):
        xs, ys, err = [], [], [[], []]
        for j, f in enumerate(fusions):
            c = cells.get(f"{f}/{loss}")
            if c:
                xs.append(j + (i - (len(losses) - 1) / 2) * w)
                ys.append(c["success"])
                err[0].append(c["success"] - c["wilson95"][0])
                err[1].append(c["wilson95"][1] - c["success"])
        ax.bar(xs, ys, w, yerr=err, capsize=2, label=loss)
    ax.axhline(result["expert_success"], color="k", ls=":", lw=1, label="scripted expert")
    ax.set_xticks(range(len(fusions)), fusions)
    ax.set_ylim(0, 1)
    ax.set_ylabel("closed-loop success (held-out layouts)")
    ax.set_title("Closed-loop success per fusion × loss cell (95% Wilson intervals)")
    ax.legend(title="contrastive loss", fontsize=8)
    atomic_savefig(fig, out / "ablation_success.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rho = result["rank_correlation_with_success"]["token_accuracy"]
    for c in cells.values():
        axes[0].errorbar(c["token_accuracy"][0], c["success"], xerr=c["token_accuracy"][1],
                         yerr=[[c["success"] - c["wilson95"][0]], [c["wilson95"][1] - c["success"]]], fmt="o",
                         color=f"C{losses.index(c['loss'])}", alpha=0.8)
    axes[0].set_xlabel("offline token accuracy (held-out frames)")
    axes[0].set_ylabel("closed-loop success")
    axes[0].set_title(f"Offline vs closed loop (Spearman ρ={rho['rho']:+.2f}, p={rho['p']:.2f})")
    for i, loss in enumerate(losses):
        xs = [j + (i - (len(losses) - 1) / 2) * w for j, f in enumerate(fusions) if f"{f}/{loss}" in cells]
        ys = [cells[f"{f}/{loss}"]["language_reliance"] for f in fusions if f"{f}/{loss}" in cells]
        axes[1].bar(xs, [m for m, _ in ys], w, yerr=[h for _, h in ys], capsize=2, label=loss)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_xticks(range(len(fusions)), fusions, rotation=15)
    axes[1].set_ylabel("token acc: own − other task's instruction")
    axes[1].set_title("Language reliance per fusion")
    axes[1].legend(title="loss", fontsize=7)
    atomic_savefig(fig, out / "ablation_offline_vs_closed_loop.png")
    plt.close(fig)


def register(sub) -> None:
    p = sub.add_parser("ablate", help="fusion × loss grid scored by closed-loop success (two stages), with "
                                      "paired Holm-corrected contrasts and offline metrics as secondary columns")
    p.add_argument("--data", required=True, help="bags (trimodal-ros generate): train, val and held-out layouts")
    p.add_argument("--out", required=True, help="folder: runs/, ablation.json, ablation.md, plots (resumable)")
    p.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    p.add_argument("--config", default=REFERENCE_FUSION, help="base config (its fusion is replaced per cell)")
    p.add_argument("--fusions", default=None, help="comma list (default: all)")
    p.add_argument("--losses", default=None, help="comma list (default: pairwise,joint,clip,none)")
    p.add_argument("--tasks", default=None, help="comma list of the bag folder's tasks to use (default: all)")
    p.add_argument("--seeds", type=int, default=None, help="stage A seeds per cell (default: the budget's)")
    p.add_argument("--confounds", action="store_true", help="also pairwise − none at 4x steps and at weight 0.1")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cli_ablate)


def cli_ablate(args) -> int:
    from trimodal_ros.data.instructions import resolve_tasks

    logging.basicConfig(level=logging.WARNING)
    result = run_grid(args.data, args.out, args.budget, args.fusions.split(",") if args.fusions else None,
                      args.losses.split(",") if args.losses else None, args.device, args.config,
                      resolve_tasks(args.tasks) if args.tasks else None, args.confounds, args.seeds)
    print(report_md(result))
    return 0
