"""``trimodal-ros evaluate``: replay bags offline through the node's preprocessing, alignment and
``Policy`` (batched), and write report.json, report.md and PNG plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from tqdm import tqdm

from ..data.instructions import instruction_for
from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from .metrics import PAIRS, action_mae, all_pair_retrieval, chance_recall, token_metrics

log = logging.getLogger(__name__)
MAX_RETRIEVAL = 4000  # retrieval is O(N²): above this, a fixed-seed subsample is scored


def run_inference(policy, dataset, batch_size: int = 64, instructions: str = "bag", seed: int = 0,
                  progress: bool = True) -> Dict[str, np.ndarray]:
    """Every sample of ``dataset`` through ``policy.infer`` (the node's forward pass and text
    cache, batched); returns embeddings, tokens and timings. ``instructions``: the recorded one
    ("bag") or a paraphrase drawn from the "train" / "heldout" set per sample."""
    rng = np.random.default_rng(seed)
    keys = ("image", "text", "action", "fused")
    acc = {k: [] for k in keys + ("pred", "true", "mask", "task_id", "tasks", "pred_actions", "true_actions")}
    model_time, t0 = 0.0, time.perf_counter()
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="evaluate", disable=not progress, dynamic_ncols=True):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        texts = [it["instruction"] if instructions == "bag" else instruction_for(it["task"], rng, instructions)
                 for it in items]
        actions = np.stack([it["actions"] for it in items])
        out = policy.infer(np.stack([it["image"] for it in items]), np.stack([it["proprio"] for it in items]), texts)
        model_time += out.seconds
        for k in keys:
            acc[k].append(getattr(out, k))
        acc["pred"].append(out.tokens)
        acc["true"].append(policy.tokenizer.encode(actions))
        acc["mask"].append(np.stack([it["action_mask"] for it in items]))
        acc["task_id"].append(np.array([it["task_id"] for it in items]))
        acc["tasks"].append(np.array([it["task"] for it in items]))
        acc["pred_actions"].append(out.actions)
        acc["true_actions"].append(actions)
    total = time.perf_counter() - t0
    res = {k: np.concatenate(v) for k, v in acc.items() if v}
    res["seconds_total"], res["seconds_model"] = total, model_time
    return res


def score(res: Dict[str, np.ndarray], seed: int = 0) -> Dict[str, object]:
    n = len(res["task_id"])
    labels = res["task_id"]
    sel = np.arange(n)
    if n > MAX_RETRIEVAL:
        sel = np.sort(np.random.default_rng(seed).choice(n, MAX_RETRIEVAL, replace=False))
    emb = {k: res[k][sel] for k in ("image", "text", "action")}
    retrieval = all_pair_retrieval(emb, labels[sel]) if len(set(labels[sel].tolist())) > 0 else {}
    report = {
        "samples": int(n),
        "retrieval": retrieval,
        "retrieval_samples": int(len(sel)),
        "retrieval_chance": {f"R@{k}": chance_recall(labels[sel], labels[sel], k) for k in (1, 5, 10)},
        **token_metrics(res["pred"], res["true"], res["mask"]),
        **action_mae(res["pred_actions"], res["true_actions"], res["mask"]),
        "throughput_samples_per_s": n / max(res["seconds_total"], 1e-9),
        "model_only_samples_per_s": n / max(res["seconds_model"], 1e-9),
    }
    per_task = {}
    for t in sorted(set(res["tasks"].tolist())):
        m = res["tasks"] == t
        per_task[t] = {"samples": int(m.sum()),
                       **token_metrics(res["pred"][m], res["true"][m], res["mask"][m]),
                       **action_mae(res["pred_actions"][m], res["true_actions"][m], res["mask"][m])}
    report["per_task"] = per_task
    return report


def markdown(report: Dict[str, object], title: str) -> str:
    r = report
    lines = [f"# {title}", "", f"- samples: {r['samples']} (retrieval on {r['retrieval_samples']})",
             f"- action-token accuracy: {r['token_accuracy']:.3f} (first step {r['token_accuracy_first_step']:.3f}); "
             f"per dim {', '.join(f'{x:.3f}' for x in r['token_accuracy_per_dim'])}",
             f"- action MAE after decoding: {r['action_mae']:.4f} (first step {r['action_mae_first_step']:.4f})",
             f"- throughput: {r['throughput_samples_per_s']:.1f} samples/s end to end, "
             f"{r['model_only_samples_per_s']:.1f} samples/s model only", "",
             "## Retrieval (hit = same task)", "", "| pair | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|"]
    for k, v in r["retrieval"].items():
        lines.append(f"| {k} | {v['R@1']:.3f} | {v['R@5']:.3f} | {v['R@10']:.3f} | {v['median_rank']:.1f} |")
    c = r["retrieval_chance"]
    lines.append(f"| chance | {c['R@1']:.3f} | {c['R@5']:.3f} | {c['R@10']:.3f} | |")
    lines += ["", "## Per task", "", "| task | samples | token acc | MAE |", "|---|---|---|---|"]
    for t, v in r["per_task"].items():
        lines.append(f"| {t} | {v['samples']} | {v['token_accuracy']:.3f} | {v['action_mae']:.4f} |")
    return "\n".join(lines) + "\n"


def plots(report: Dict[str, object], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [f"{a}->{b}" for a, b in PAIRS]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(pairs))
    for i, k in enumerate(("R@1", "R@5", "R@10")):
        ax.bar(x + (i - 1) * 0.27, [report["retrieval"][p][k] for p in pairs], 0.27, label=k)
        ax.axhline(report["retrieval_chance"][k], color=f"C{i}", ls=":", lw=1)
    ax.set_xticks(x, pairs, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall (same task)")
    ax.set_title("Cross-modal retrieval (dotted: chance)")
    ax.legend()
    atomic_savefig(fig, out / "retrieval.png")
    plt.close(fig)
    tasks = list(report["per_task"])
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(tasks) + 2), 3.5))
    ax.bar(range(len(tasks)), [report["per_task"][t]["token_accuracy"] for t in tasks])
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("action-token accuracy")
    ax.set_title("Per-task action-token accuracy")
    atomic_savefig(fig, out / "per_task.png")
    plt.close(fig)


def evaluate(checkpoint, bags, out, split: str = "heldout", instructions: str = "bag", batch_size: int = 64,
             device: str = "auto", fusion: Optional[str] = None, progress: bool = True, dataset=None,
             policy=None) -> Dict[str, object]:
    from ..data.dataset import BagDataset
    from ..policy import Policy
    from ..utils import pick_device

    policy = policy or Policy.load(str(checkpoint), fusion=fusion, device=pick_device(device))
    cfg = policy.config
    ds = dataset or BagDataset.from_config(bags, cfg.model, split=split, verbose=progress)
    if len(ds) == 0:
        raise ValueError(f"{bags}: no samples in split {split!r}")
    res = run_inference(policy, ds, batch_size, instructions, progress=progress)
    report = {"checkpoint": str(checkpoint), "fusion": cfg.model.fusion, "loss": cfg.train.loss, "bags": str(bags),
              "split": split, "instructions": instructions, **score(res)}
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", markdown(report, f"Evaluation of {cfg.model.fusion} / {cfg.train.loss}"))
        plots(report, out)
    return report
