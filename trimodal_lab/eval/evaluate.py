"""``trimodal-ros evaluate``: replay bags offline through the node's preprocessing, alignment and
``Policy`` (batched), and write report.json, report.md and PNG plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from trimodal_ros.data.instructions import has_paraphrases, instruction_for
from trimodal_ros.io import atomic_savefig, atomic_write_json, atomic_write_text
from trimodal_ros.scores import agreement
from trimodal_lab.eval.metrics import PAIRS, action_mae, all_pair_retrieval, chance_recall, roc_auc, token_metrics
from trimodal_lab.eval.stats import cluster_ratio, majority_baselines, mean_action_baselines, paired_cluster_delta

log = logging.getLogger(__name__)
MAX_RETRIEVAL = 4000  # retrieval is O(N²): above this, a fixed-seed subsample is scored


INSTRUCTION_MODES = ("bag", "train", "heldout", "other_task", "empty")
LANGUAGE_CONDITIONS = {  # report name → instruction mode, all on the same frames
    "recorded": "bag", "train_paraphrase": "train", "heldout_paraphrase": "heldout",
    "other_task": "other_task", "empty": "empty"}


def instruction_texts(items, mode: str, rng, tasks: List[str], recorded: Optional[Dict[str, str]] = None) -> List[str]:
    """The instruction each sample is scored with: the recorded one ("bag"), a train / held-out
    paraphrase of its task, a train paraphrase of ANOTHER task ("other_task": the next task of
    ``tasks`` in sorted order, a counterfactual; for a task outside Meta-World its recorded words,
    ``recorded``), or none ("empty")."""
    if mode == "bag":
        return [it["instruction"] for it in items]
    if mode == "empty":
        return ["" for _ in items]
    if mode == "other_task":
        other = [tasks[(tasks.index(it["task"]) + 1) % len(tasks)] for it in items]
        return [recorded[t] if recorded and t in recorded else instruction_for(t, rng, "train") for t in other]
    return [instruction_for(it["task"], rng, mode) for it in items]



def run_inference(policy, dataset, batch_size: int = 64, instructions: str = "bag", seed: int = 0,
                  progress: bool = True) -> Dict[str, np.ndarray]:
    """Every sample of ``dataset`` through ``policy.infer`` (the node's forward pass and text
    cache, batched); returns embeddings, tokens, timings and each sample's episode.
    ``instructions``: one of INSTRUCTION_MODES (``instruction_texts``)."""
    if instructions not in INSTRUCTION_MODES:
        raise ValueError(f"instructions must be one of {INSTRUCTION_MODES}, got {instructions!r}")
    rng = np.random.default_rng(seed)
    tasks = sorted({ep.task for ep in dataset.episodes})
    recorded = {ep.task: ep.instructions[0] for ep in reversed(dataset.episodes) if ep.instructions}
    if instructions in ("train", "heldout") and not has_paraphrases(tasks):
        raise ValueError(f"instructions {instructions!r}: the package's phrasings exist for Meta-World tasks only, "
                         f"not for {[t for t in tasks if not has_paraphrases([t])][:3]}; use bag")
    if len(tasks) == 1 and instructions == "other_task":  # one task in the data: take its MT50 neighbour
        from trimodal_ros.data.instructions import MT50

        if not has_paraphrases(tasks):
            raise ValueError("instructions 'other_task' needs two tasks in the data (or a Meta-World task)")
        tasks = sorted({tasks[0], MT50[(MT50.index(tasks[0]) + 1) % len(MT50)]})
    keys = ("image", "text", "action", "fused")
    acc = {k: [] for k in keys + ("pred", "true", "mask", "task_id", "tasks", "pred_actions", "true_actions",
                                  "episode")}
    model_time, t0 = 0.0, time.perf_counter()
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="evaluate", disable=not progress, dynamic_ncols=True):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        texts = instruction_texts(items, instructions, rng, tasks, recorded)
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
        acc["episode"].append(np.array([it["episode"] for it in items]))
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
        "episodes": int(len(set(res["episode"].tolist()))),
        "token_accuracy_ci95": _ci(cluster_ratio(*_correct(res), res["episode"], seed=seed)),
        "action_mae_ci95": _ci(cluster_ratio(*_abs_error(res), res["episode"], seed=seed)),
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


def _correct(res) -> tuple:
    """Per sample: correct tokens and tokens counted (padding past the episode end masked)."""
    m = res["mask"][..., None]
    return ((res["pred"] == res["true"]) & m).sum((1, 2)), np.broadcast_to(m, res["pred"].shape).sum((1, 2))


def _abs_error(res) -> tuple:
    m = res["mask"][..., None]
    err = np.abs(res["pred_actions"].astype(np.float64) - res["true_actions"]) * m
    return err.sum((1, 2)), np.broadcast_to(m, err.shape).sum((1, 2))


def _ci(r: Dict[str, float]) -> List[float]:
    return [r["lo"], r["hi"]]


class EveryKth:
    """Every ``k``-th sample of a dataset (consecutive frames are near-duplicates): a cheaper view."""

    def __init__(self, dataset, k: int):
        self.ds, self.k, self.episodes = dataset, max(1, int(k)), dataset.episodes

    def __len__(self) -> int:
        return (len(self.ds) + self.k - 1) // self.k

    def __getitem__(self, i: int):
        return self.ds[i * self.k]


def language(policy, dataset, batch_size: int = 64, seed: int = 0, progress: bool = False,
             every: int = 1) -> Dict[str, object]:
    """How much the policy reads the instruction, on the same frames: token accuracy and MAE with
    each of LANGUAGE_CONDITIONS, and paired episode-bootstrap deltas. "Language reliance":
    recorded − other task's instruction, recorded − empty; "wording robustness": held-out − train
    paraphrases (both sets of the package's own wording; other wordings need their own run).
    ``every`` > 1 scores every k-th frame only (the ablation's budget)."""
    dataset = EveryKth(dataset, every) if every > 1 else dataset
    tasks = sorted({ep.task for ep in dataset.episodes})
    conditions = {k: m for k, m in LANGUAGE_CONDITIONS.items()  # tasks outside Meta-World: no paraphrases,
                  if has_paraphrases(tasks) or (m not in ("train", "heldout")  # another task needs two
                                                and (m != "other_task" or len(tasks) > 1))}
    runs = {name: run_inference(policy, dataset, batch_size, mode, seed, progress) for name, mode in conditions.items()}
    ep = runs["recorded"]["episode"]
    out: Dict[str, object] = {"conditions": {}}
    for name, r in runs.items():
        acc, mae = cluster_ratio(*_correct(r), ep, seed=seed), cluster_ratio(*_abs_error(r), ep, seed=seed)
        out["conditions"][name] = {"token_accuracy": acc["value"], "token_accuracy_ci95": _ci(acc),
                                   "action_mae": mae["value"], "action_mae_ci95": _ci(mae)}

    def delta(a: str, b: str) -> Dict[str, float]:
        (na, den), (nb, _) = _correct(runs[a]), _correct(runs[b])
        return paired_cluster_delta(na, nb, den, ep, seed=seed)

    out["reliance"] = {f"recorded - {k}": delta("recorded", k) for k in ("other_task", "empty") if k in runs}
    out["wording_robustness"] = ({"heldout_paraphrase - train_paraphrase": delta("heldout_paraphrase",
                                                                                  "train_paraphrase")}
                                 if "train_paraphrase" in runs else {})
    if "other_task" in runs:  # the node's instruction–scene agreement as a detector of the wrong instruction
        right, wrong = (agreement(runs[k]["image"], runs[k]["text"]) for k in ("recorded", "other_task"))
        out["agreement"] = {"auc_recorded_vs_other_task": roc_auc(right, wrong),
                            "median_recorded": float(np.median(right)),
                            "median_other_task": float(np.median(wrong))}
    return out


OOD_TRAIN_FRAMES = 512  # training frames the ood score of the evaluated ones is compared with


def ood_report(policy, res: Dict[str, np.ndarray], train_frames, batch_size: int = 64) -> Dict[str, float]:
    """The node's ood score on the evaluated frames against the same score on training frames (a
    view of at most OOD_TRAIN_FRAMES of them): ROC AUC of "unseen" (higher is further), medians, and
    the share of evaluated frames above 1 (the training frames' 99th percentile)."""
    if policy.stats is None:
        return {}
    k = max(1, len(train_frames) // OOD_TRAIN_FRAMES)
    words = "train" if has_paraphrases({ep.task for ep in train_frames.episodes}) else "bag"  # as trained
    seen = run_inference(policy, EveryKth(train_frames, k), batch_size, words, progress=False)
    ev, tr = policy.stats.ood(res["fused"]), policy.stats.ood(seen["fused"])
    return {"auc_evaluated_vs_train": roc_auc(ev, tr), "median_train": float(np.median(tr)),
            "median_evaluated": float(np.median(ev)), "share_evaluated_above_1": float((ev > 1).mean()),
            "train_frames": int(len(tr))}


def baselines(train_dataset, res: Dict[str, np.ndarray], tokenizer) -> Dict[str, float]:
    """Most-common-token and mean-action baselines from the training samples, scored on the
    evaluated frames: what a policy that ignores its inputs would get."""
    idx = range(len(train_dataset))
    tr_actions = np.stack([train_dataset.action_chunk(i)[0] for i in idx])
    tr_tasks = [train_dataset.episodes[train_dataset._episode[i]].task for i in idx]
    return {**majority_baselines(tokenizer.encode(tr_actions), tr_tasks, res["true"], res["tasks"], res["mask"]),
            **mean_action_baselines(tr_actions, tr_tasks, res["true_actions"], res["tasks"], res["mask"])}


def markdown(report: Dict[str, object], title: str) -> str:
    r = report
    lines = [f"# {title}", "", f"- samples: {r['samples']} (retrieval on {r['retrieval_samples']})",
             f"- action-token accuracy: {r['token_accuracy']:.3f} {_fmt_ci(r['token_accuracy_ci95'])} (first step "
             f"{r['token_accuracy_first_step']:.3f}); "
             f"per dim {', '.join(f'{x:.3f}' for x in r['token_accuracy_per_dim'])}",
             f"- action MAE after decoding: {r['action_mae']:.4f} {_fmt_ci(r['action_mae_ci95'], 4)} (first step "
             f"{r['action_mae_first_step']:.4f})",
             f"- intervals: 95%, resampling the {r['episodes']} episodes (frames of an episode are not independent)",
             f"- throughput: {r['throughput_samples_per_s']:.1f} samples/s end to end, "
             f"{r['model_only_samples_per_s']:.1f} samples/s model only", "",
             "## Retrieval (hit = same task)", "", f"action: the {r.get('retrieval_action', 'proprio embedding')}", "",
             "| pair | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|"]
    for k, v in r["retrieval"].items():
        lines.append(f"| {k} | {v['R@1']:.3f} | {v['R@5']:.3f} | {v['R@10']:.3f} | {v['median_rank']:.1f} |")
    c = r["retrieval_chance"]
    lines.append(f"| chance | {c['R@1']:.3f} | {c['R@5']:.3f} | {c['R@10']:.3f} | |")
    if r.get("baselines"):
        b = r["baselines"]
        lines.insert(5, f"- baselines (from the training frames): most common token {b['most_common_token']:.3f}, "
                        f"per task "
                        f"{b['most_common_token_per_task']:.3f}; mean action MAE {b['mean_action_mae']:.4f}, per task "
                        f"{b['mean_action_mae_per_task']:.4f}")
    if r.get("language"):
        lang = r["language"]
        lines += ["", "## Language: the same frames, other instructions", "",
                  "| instruction | token acc | 95% CI | MAE |", "|---|---|---|---|"]
        for name, v in lang["conditions"].items():
            lines.append(f"| {name} | {v['token_accuracy']:.3f} | {_fmt_ci(v['token_accuracy_ci95'])} | "
                         f"{v['action_mae']:.4f} |")
        lines += ["", "| contrast (token accuracy) | Δ | 95% CI | p |", "|---|---|---|---|"]
        for group in ("reliance", "wording_robustness"):
            for name, d in lang[group].items():
                lines.append(f"| {group.replace('_', ' ')}: {name} | {d['delta']:+.3f} | "
                             f"[{d['lo']:+.3f}, {d['hi']:+.3f}] | {d['p']:.3f} |")
        if "agreement" in lang:
            g = lang["agreement"]
            lines += ["", f"Instruction–scene agreement (trimodal/scores) as a detector of another task's "
                          f"instruction: ROC AUC {g['auc_recorded_vs_other_task']:.3f} (median agreement "
                          f"{g['median_recorded']:.3f} with the recorded instruction, {g['median_other_task']:.3f} "
                          f"with another task's)."]
    if r.get("ood"):
        o = r["ood"]
        lines += ["", f"Out-of-distribution score (trimodal/scores) of these frames against {o['train_frames']} "
                      f"training frames: ROC AUC {o['auc_evaluated_vs_train']:.3f}, median {o['median_evaluated']:.2f} "
                      f"vs {o['median_train']:.2f}; {o['share_evaluated_above_1']:.1%} above the training "
                      f"frames' 99th percentile."]
    lines += ["", "## Per task", "", "| task | samples | token acc | MAE |", "|---|---|---|---|"]
    for t, v in r["per_task"].items():
        lines.append(f"| {t} | {v['samples']} | {v['token_accuracy']:.3f} | {v['action_mae']:.4f} |")
    return "\n".join(lines) + "\n"


def _fmt_ci(ci, digits: int = 3) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


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


def demonstrated_chunk_embeddings(checkpoint, policy, res) -> Optional[np.ndarray]:
    """(N, D) with a checkpoint trained with ``train.align_action: chunk``: the recorded action chunks
    through the training-only encoder it carries, the "action" its alignment term used (the proprio
    embedding was never aligned there); else None. With ``train.ema`` it is averaged as the model is
    (in checkpoints written before that was so, it is the last step's weights)."""
    if checkpoint is None or policy.config.train.align_action != "chunk":
        return None
    import torch

    from trimodal_ros.checkpoint import read_checkpoint
    from trimodal_ros.model.objective import ActionChunkEncoder

    state = read_checkpoint(checkpoint, mmap=True).get("chunk_encoder")  # the model is loaded already
    if state is None:
        return None
    enc = ActionChunkEncoder.for_model(policy.config.model)
    enc.load_state_dict(state)
    with torch.no_grad():
        return enc.eval()(torch.as_tensor(res["true"]), torch.as_tensor(res["mask"])).numpy()


def evaluate(checkpoint, bags, out, split: str = "heldout", instructions: str = "bag", batch_size: int = 64,
             device: str = "auto", fusion: Optional[str] = None, progress: bool = True, dataset=None,
             policy=None, with_language: bool = False, train_dataset=None,
             language_every: int = 1) -> Dict[str, object]:
    """Score ``checkpoint`` on the ``split`` layouts of ``bags`` (or ``dataset``). ``with_language``
    adds the language section (five passes over the same frames); baselines come from
    ``train_dataset`` (default: the train layouts of ``bags``, labels only)."""
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.policy import Policy
    from trimodal_ros.utils import pick_device

    policy = policy or Policy.load(str(checkpoint), fusion=fusion, device=pick_device(device))
    cfg = policy.config
    ds = dataset or BagDataset.from_config(bags, cfg.model, robot=cfg.robot, split=split, verbose=progress)
    if len(ds) == 0:
        raise ValueError(f"{bags}: no samples in split {split!r}")
    res = run_inference(policy, ds, batch_size, instructions, progress=progress)
    chunk = demonstrated_chunk_embeddings(checkpoint, policy, res)
    retrieved = res if chunk is None else {**res, "action": chunk}
    report = {"checkpoint": str(checkpoint), "fusion": cfg.model.fusion, "loss": cfg.train.loss, "bags": str(bags),
              "split": split, "instructions": instructions,
              "retrieval_action": "proprio embedding" if chunk is None else "demonstrated chunk", **score(retrieved)}
    if train_dataset is None and bags is not None:
        train_dataset = BagDataset.from_config(bags, cfg.model, robot=cfg.robot, split="train", verbose=False,
                                               images=False)
    if train_dataset is not None and len(train_dataset):
        report["baselines"] = baselines(train_dataset, res, policy.tokenizer)
    if split != "train" and bags is not None and policy.stats is not None:  # frames with images, this time
        train_frames = BagDataset.from_config(bags, cfg.model, robot=cfg.robot, split="train", verbose=False)
        if len(train_frames):
            report["ood"] = ood_report(policy, res, train_frames, batch_size)
    if with_language:
        report["language"] = language(policy, ds, batch_size, every=language_every)
        report["language"]["frames_every"] = language_every
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", markdown(report, f"Evaluation of {cfg.model.fusion} / {cfg.train.loss}"))
        plots(report, out)
    return report
