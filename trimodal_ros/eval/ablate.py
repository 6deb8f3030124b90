"""``trimodal-ros ablate``: fusion × contrastive loss × seeds, trained on the train layouts and
scored on held-out layouts and held-out instruction paraphrases, with 95% intervals.

It answers the research question with numbers: does a joint image–action–text space (pairwise
or joint InfoNCE), compared with image–text only (clip, the EF-VLA baseline) and no alignment
(none), and does the choice of fusion, change how well the policy predicts held-out actions? The
report states plainly when the differences are inside the noise.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from ..config import load_config
from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from .metrics import mean_ci95

log = logging.getLogger(__name__)
LOSSES = ["pairwise", "joint", "clip", "none"]
# steps, batch size: "small" fits the whole 5×4×3 grid into ~60 min on a 2-core CPU (README)
BUDGETS = {"tiny": (6, 8), "small": (250, 32), "full": (3000, 128)}
METRICS = [  # (key in the run summary, label, higher is better)
    ("layouts_token_acc", "token acc, held-out layouts", True),
    ("paraphrase_token_acc", "token acc, held-out paraphrases", True),
    ("layouts_mae", "action MAE, held-out layouts", False),
    ("layouts_retrieval_r1", "mean R@1 (6 pairs)", True),
    ("layouts_image_text_r1", "image→text R@1", True),
    ("grad_conflict", "cos(∇CE, ∇contrastive)", None),
    ("closed_loop_success", "closed-loop success, held-out layouts", True),
]


def _summary(rep_layouts: dict, rep_para: dict, metrics_csv: Path, seconds: float,
             rollout: Optional[dict] = None) -> dict:
    conflicts = []
    if metrics_csv.exists():
        with open(metrics_csv) as f:
            for row in csv.DictReader(f):
                v = float(row["grad_conflict"])
                if not math.isnan(v):
                    conflicts.append(v)
    return {
        "layouts_token_acc": rep_layouts["token_accuracy"],
        "paraphrase_token_acc": rep_para["token_accuracy"],
        "layouts_mae": rep_layouts["action_mae"],
        "layouts_retrieval_r1": rep_layouts["retrieval"]["mean"]["R@1"],
        "layouts_image_text_r1": rep_layouts["retrieval"]["image->text"]["R@1"],
        "grad_conflict": float(np.mean(conflicts)) if conflicts else float("nan"),
        "grad_conflict_curve": conflicts,
        "train_seconds": seconds,
        "closed_loop_success": rollout["overall"]["success_rate"] if rollout else float("nan"),
    }


def run_grid(data: str, out: str, seeds: int = 3, budget: str = "small", fusions: Optional[List[str]] = None,
             losses: Optional[List[str]] = None, device: str = "auto", config: str = "weighted_sum",
             rollout_episodes: int = 0, rollout_steps: int = 150) -> dict:
    """Train and score the grid; ``rollout_episodes`` > 0 also drives Meta-World with every
    checkpoint on that many held-out layouts per task (closed-loop success) and runs the scripted
    expert on the same layouts for reference."""
    from ..data.dataset import BagDataset
    from ..policy import Policy
    from ..train.trainer import train
    from ..utils import pick_device
    from .evaluate import evaluate

    from ..model import FUSIONS

    fusions = fusions or FUSIONS.names()
    losses = losses or LOSSES
    steps, batch = BUDGETS[budget]
    out = Path(out)
    base = load_config(config)
    mc = base.model
    train_ds = BagDataset.from_config(data, mc, split="train")
    held_ds = BagDataset.from_config(data, mc, split="heldout")
    if len(held_ds) == 0:
        raise ValueError(f"{data}: no episodes on held-out layouts; generate more episodes per task")
    tasks = sorted({ep.task for ep in train_ds.episodes})
    image_size = int(train_ds.frames.shape[1])
    expert = None
    if rollout_episodes:
        from ..sim.rollout import expert_success

        expert = expert_success(tasks, rollout_episodes, split="heldout", max_steps=rollout_steps)
    runs: Dict[str, dict] = {}
    grid = list(itertools.product(fusions, losses, range(seeds)))
    for fusion, loss, seed in tqdm(grid, desc="ablate", dynamic_ncols=True):
        name = f"{fusion}__{loss}__s{seed}"
        run_dir = out / "runs" / name
        summary_path = run_dir / "summary.json"
        if summary_path.exists():  # an interrupted ablation resumes where it stopped
            runs[name] = json.loads(summary_path.read_text())
            continue
        cfg = load_config(config, fusion=fusion)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, loss=loss, seed=seed, steps=steps, batch_size=batch,
            warmup_steps=min(cfg.train.warmup_steps, steps // 5), ckpt_every=steps, log_every=max(1, steps // 10)))
        t0 = time.perf_counter()
        ckpt = train(cfg, data, run_dir, device=device, progress=False, dataset=train_ds).checkpoint
        seconds = time.perf_counter() - t0
        policy = Policy.load(str(ckpt), device=pick_device(device))
        rep_l = evaluate(ckpt, data, None, dataset=held_ds, instructions="train", progress=False, policy=policy)
        rep_p = evaluate(ckpt, data, None, dataset=held_ds, instructions="heldout", progress=False, policy=policy)
        rollout = None
        if rollout_episodes:
            from ..sim.rollout import rollout_in_process

            rollout = rollout_in_process(policy, tasks, rollout_episodes, split="heldout",
                                         max_steps=rollout_steps, size=image_size, progress=False)
        s = {"fusion": fusion, "loss": loss, "seed": seed,
             **_summary(rep_l, rep_p, run_dir / "metrics.csv", seconds, rollout)}
        atomic_write_json(summary_path, s)
        runs[name] = s
    result = aggregate(list(runs.values()), fusions, losses)
    result.update({"expert_closed_loop_success": expert["overall"]["success_rate"] if expert else None,
                   "rollout_episodes_per_task": rollout_episodes, "rollout_tasks": tasks if rollout_episodes else [],
                   "budget": budget, "steps": steps, "batch_size": batch, "seeds": seeds, "data": str(data),
                   "train_samples": len(train_ds), "heldout_samples": len(held_ds)})
    atomic_write_json(out / "ablation.json", result)
    atomic_write_text(out / "ablation.md", report_md(result))
    plot(result, out)
    return result


def aggregate(runs: List[dict], fusions: List[str], losses: List[str]) -> dict:
    cells = {}
    for f, l in itertools.product(fusions, losses):
        rs = [r for r in runs if r["fusion"] == f and r["loss"] == l]
        cells[f"{f}/{l}"] = {k: mean_ci95([r[k] for r in rs]) for k, _, _ in METRICS}
        cells[f"{f}/{l}"]["n"] = len(rs)
    # paired comparisons (same fusion and seed): does alignment help, does the tri-modal space help?
    comparisons = {}
    for a, b in [("pairwise", "none"), ("joint", "none"), ("clip", "none"), ("pairwise", "clip"), ("joint", "clip")]:
        if a in losses and b in losses:
            diffs = []
            for r in runs:
                if r["loss"] != a:
                    continue
                twin = [x for x in runs if x["loss"] == b and x["fusion"] == r["fusion"] and x["seed"] == r["seed"]]
                if twin:
                    diffs.append(r["layouts_token_acc"] - twin[0]["layouts_token_acc"])
            comparisons[f"{a} - {b}"] = mean_ci95(diffs) + (len(diffs),)
    by_fusion = {f: mean_ci95([r["layouts_token_acc"] for r in runs if r["fusion"] == f]) for f in fusions}
    return {"cells": cells, "comparisons": comparisons, "by_fusion": by_fusion, "runs": runs}


def verdict(result: dict) -> List[str]:
    lines = []
    for name, (m, h, n) in result["comparisons"].items():
        if math.isnan(m):
            continue
        sig = abs(m) > h and n > 1
        lines.append(f"- {name}: Δ token accuracy on held-out layouts = {m:+.3f} ± {h:.3f} (95% CI, {n} paired runs): "
                     + (("helps" if m > 0 else "hurts") if sig else "no difference distinguishable from noise"))
    if result.get("expert_closed_loop_success") is not None:
        cl = {c: v["closed_loop_success"] for c, v in result["cells"].items()}
        best = max(cl, key=lambda c: cl[c][0])
        lines.append(f"- closed loop: best cell {best} succeeds {cl[best][0]:.2f} ± {cl[best][1]:.2f} on held-out layouts; "
                     f"the scripted expert {result['expert_closed_loop_success']:.2f} on the same layouts")
    bf = result["by_fusion"]
    if len(bf) < 2:
        return lines
    best = max(bf, key=lambda f: bf[f][0])
    worst = min(bf, key=lambda f: bf[f][0])
    overlap = bf[best][0] - bf[best][1] <= bf[worst][0] + bf[worst][1]
    lines.append(f"- fusion: best {best} ({bf[best][0]:.3f} ± {bf[best][1]:.3f}), worst {worst} "
                 f"({bf[worst][0]:.3f} ± {bf[worst][1]:.3f}): "
                 + ("the intervals overlap, so the mix of encoders makes no clear difference at this budget"
                    if overlap else "the choice of fusion matters at this budget"))
    return lines


def report_md(result: dict) -> str:
    cells = result["cells"]
    # a metric nobody measured (closed loop without --rollout-episodes) gets no column
    metrics = [m for m in METRICS if any(not math.isnan(c[m[0]][0]) for c in cells.values())]
    hdr = "| fusion / loss | n | " + " | ".join(lbl for _, lbl, _ in metrics) + " |"
    lines = ["# Ablation: fusion × contrastive loss", "",
             f"budget `{result['budget']}`: {result['steps']} steps × batch {result['batch_size']}, "
             f"{result['seeds']} seeds; {result['train_samples']} train samples, {result['heldout_samples']} "
             "held-out-layout samples. Cells: mean ± 95% CI (t) over seeds.", "", "## Verdict", "",
             *verdict(result), "", "## Table", "", hdr, "|" + "---|" * (len(metrics) + 2)]
    for cell, v in cells.items():
        vals = " | ".join(f"{v[k][0]:.3f} ± {v[k][1]:.3f}" for k, _, _ in metrics)
        lines.append(f"| {cell} | {v['n']} | {vals} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fusions = sorted({c.split("/")[0] for c in cells})
    losses = [l for l in LOSSES if any(c.endswith("/" + l) for c in cells)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, key, title in [(axes[0], "layouts_token_acc", "held-out layouts"),
                           (axes[1], "paraphrase_token_acc", "held-out paraphrases")]:
        x = np.arange(len(fusions))
        w = 0.8 / len(losses)
        for i, l in enumerate(losses):
            m = [cells[f"{f}/{l}"][key][0] for f in fusions]
            h = [cells[f"{f}/{l}"][key][1] for f in fusions]
            ax.bar(x + (i - (len(losses) - 1) / 2) * w, m, w, yerr=h, capsize=2, label=l)
        ax.set_xticks(x, fusions, rotation=15)
        ax.set_ylabel("action-token accuracy")
        ax.set_title(f"Token accuracy, {title} (95% CI)")
    axes[0].legend(title="contrastive loss")
    atomic_savefig(fig, out / "ablation_token_accuracy.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in result["runs"]:
        if r["grad_conflict_curve"] and r["seed"] == 0:
            ax.plot(r["grad_conflict_curve"], label=f"{r['fusion']}/{r['loss']}", lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("log point")
    ax.set_ylabel("cos(∇CE, ∇contrastive)")
    ax.set_title("Gradient conflict between action and contrastive losses (seed 0)")
    ax.legend(fontsize=6, ncol=2)
    atomic_savefig(fig, out / "ablation_grad_conflict.png")
    plt.close(fig)


def register(sub) -> None:
    p = sub.add_parser("ablate", help="fusion × loss × seeds grid: train, score held-out data, report")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    p.add_argument("--fusions", default=None, help="comma list (default: all)")
    p.add_argument("--losses", default=None, help="comma list (default: pairwise,joint,clip,none)")
    p.add_argument("--rollout-episodes", type=int, default=0,
                   help="closed-loop episodes per task and run on held-out layouts (0: offline metrics only)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cli_ablate)


def cli_ablate(args) -> int:
    logging.basicConfig(level=logging.WARNING)
    result = run_grid(args.data, args.out, args.seeds, args.budget,
                      args.fusions.split(",") if args.fusions else None,
                      args.losses.split(",") if args.losses else None, args.device,
                      rollout_episodes=args.rollout_episodes)
    print(report_md(result))
    return 0
