"""``trimodal-ros train``: minimises ``model.objective.TriModalObjective`` (action tokens, alignment, state).

AdamW with warm-up + cosine decay, gradient clipping, bf16 autocast on CUDA, atomic checkpoints
that resume exactly (model, optimiser, schedule, step and the data order all restored), metrics in
CSV (and TensorBoard when installed). Under ``torchrun`` it runs DistributedDataParallel, gloo on
CPU and nccl on CUDA; every rank takes its own slice of each global batch.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import Config, config_from_dict
from ..data.instructions import instruction_for, perturb_instruction
from ..model import ActionTokenizer, TriModalModel
from ..checkpoint import read_checkpoint, save_checkpoint
from ..io import atomic_write_text
from ..model.losses import gradient_conflict
from ..model.objective import TriModalObjective
from ..model.preprocess import random_shift
from ..utils import pick_device

log = logging.getLogger(__name__)
METRIC_FIELDS = ["step", "loss", "action_ce", "contrastive", "token_acc", "lr", "temperature", "grad_conflict",
                 "grad_conflict_null", "state_mse", "text_text"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float):
    """No weight decay on biases, norms, embeddings, queries and the temperature (as CLIP)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "embedding" in name or "queries" in name or "lora_" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The global batch of a step: epoch-wise shuffles derived from (seed, epoch), so a resumed
    run sees exactly the samples the uninterrupted one would have."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[pos * batch:(pos + 1) * batch]


class Batcher:
    """Turns dataset items into model inputs on ``device`` (same preprocessing as the node, then the
    training-only random shift of ``augment_shift`` pixels, seeded by step like the paraphrases)."""

    def __init__(self, dataset, tokenizer: ActionTokenizer, model: TriModalModel, device, instructions: str, seed: int,
                 augment_shift: int = 0, instruction_noise: float = 0.0, paraphrases: bool = False):
        self.ds, self.tok, self.model, self.device = dataset, tokenizer, model, device
        self.instructions, self.seed, self.augment_shift = instructions, seed, int(augment_shift)
        self.noise, self.paraphrases = float(instruction_noise), paraphrases

    def __call__(self, idx: np.ndarray, step: int) -> Dict[str, torch.Tensor]:
        items = [self.ds[int(i)] for i in idx]
        rng = np.random.default_rng([self.seed, step, 7])
        if self.instructions == "bag":
            texts = [it["instruction"] for it in items]
        elif self.instructions == "empty":  # an instruction-blind baseline: the words never reach the model
            texts = ["" for _ in items]
        else:  # a fresh paraphrase of the split per sample: language augmentation
            texts = [instruction_for(it["task"], rng, split=self.instructions) for it in items]
        extra = {}
        if self.paraphrases:  # a second, independent paraphrase per sample: text–text alignment's pairs
            second = [instruction_for(it["task"], rng, split=self.instructions) for it in items]
            if self.noise:
                second = [perturb_instruction(t, rng, self.noise) for t in second]
            extra["paraphrase_ids"] = self.model.tokenize(second)
        if self.noise:
            texts = [perturb_instruction(t, rng, self.noise) for t in texts]
        frames = np.stack([it["image"] for it in items])
        actions = np.stack([it["actions"] for it in items])  # (B, K, A)
        images = self.model.preprocess(frames)  # (B, 3, S, S), or (B, V, 3, S, S) for V cameras
        if self.augment_shift:
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            images = random_shift(images, self.augment_shift, gen)
        return {
            "images": images,
            "proprio": torch.as_tensor(np.stack([it["proprio"] for it in items]), device=self.device),
            "text_ids": self.model.tokenize(texts),
            "tokens": torch.as_tensor(self.tok.encode(actions), device=self.device),
            "mask": torch.as_tensor(np.stack([it["action_mask"] for it in items]), device=self.device),
            "task_ids": torch.as_tensor([it["task_id"] for it in items], device=self.device),
            **extra,
            **({"state": torch.as_tensor(np.stack([it["state"] for it in items]), device=self.device)}
               if "state" in items[0] else {}),
        }


class WeightAverage:
    """Exponential moving average of the weights (Polyak averaging, as diffusion policy serves its
    behaviour-cloning policies): the average of the last ~1/(1-decay) steps is a smoother policy than
    the final step's weights. The decay ramps up as (1 + step) / (10 + step), so the random
    initialisation does not linger in it."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        src, dst = model.state_dict(), self.model.state_dict()  # views of the live tensors
        floats = [k for k in dst if dst[k].is_floating_point()]
        self._avg, self._live = [dst[k] for k in floats], [src[k] for k in floats]
        self._copied = [(dst[k], src[k]) for k in dst if not dst[k].is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._avg, self._live, 1.0 - d)
        for a, b in self._copied:
            a.copy_(b)


STATS_SAMPLES = 512  # training samples the checkpoint's embedding statistics are fitted on


@torch.no_grad()
def embedding_stats(model: TriModalModel, batcher: "Batcher", n: int, batch: int, seed: int) -> dict:
    """``EmbeddingStats`` of the served model over a fixed sample of the training data (the
    checkpoint's ``embedding_stats``: the node's ood score and agreement quantiles); ``batcher``
    should prepare inputs as serving does (no augmentation)."""
    from ..scores import EmbeddingStats

    was = model.training
    model.eval()
    idx = np.random.default_rng([seed, 11]).permutation(n)[:STATS_SAMPLES]
    parts = {"fused": [], "image": [], "text": []}
    for i in range(0, len(idx), batch):
        b = batcher(idx[i:i + batch], 10**9 + i)  # steps no training batch uses: their own paraphrases
        out = model(b["images"], b["proprio"], text_ids=b["text_ids"])
        for k in parts:
            parts[k].append(getattr(out, k).float().cpu().numpy())
    model.train(was)
    return EmbeddingStats.fit(*(np.concatenate(parts[k]) for k in ("fused", "image", "text"))).to_dict()


class TrainDataError(ValueError):
    """The data cannot train this config (too few samples, a target the bags do not record)."""


@dataclasses.dataclass
class TrainResult:
    checkpoint: Path
    model: TriModalModel
    tokenizer: ActionTokenizer
    rank: int = 0
    seconds: Optional[float] = 0.0  # training time as the last checkpoint has it; None: unknown (resumed
    # from a checkpoint written before the checkpoint carried it)


def train(cfg: Config, data: str, out: str, resume: bool = False, device: str = "auto", progress: bool = True,
          dataset=None) -> TrainResult:
    """Train ``cfg`` on the train layouts of the bags in ``data`` (or on ``dataset``)."""
    from ..data.dataset import BagDataset, dataset_stats

    t0 = time.monotonic()  # the whole call: data loading and model building count, as every resume's
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    dev = pick_device(device)
    if ddp:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(dev)
    main = rank == 0
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc, mc = cfg.train, cfg.model
    seed_everything(tc.seed)

    if tc.state_weight > 0 and not mc.state_input:
        raise TrainDataError("train.state_weight trains the model's state head: set model.state_input (the "
                             "first S of /sim/state's coordinates it predicts)")
    ds = dataset or BagDataset.from_config(data, mc, robot=cfg.robot, split="train", verbose=main,
                                           state=mc.state_input if tc.state_weight > 0 else 0)
    if tc.state_weight > 0 and getattr(ds, "state", None) is None:
        raise TrainDataError("train.state_weight > 0 needs the recorded /sim/state: a dataset loaded with state > 0")
    if len(ds) < tc.batch_size:
        skipped = getattr(ds, "skipped", [])
        why = f"; {len(skipped)} bags skipped, the first because: {skipped[0][1]}" if skipped else ""
        raise TrainDataError(f"{data}: {len(ds)} training samples, fewer than one batch of {tc.batch_size}{why}")
    if tc.instructions == "train":  # paraphrases exist for Meta-World's tasks only
        from ..data.instructions import has_paraphrases

        other = sorted({ep.task for ep in getattr(ds, "episodes", ()) if not has_paraphrases([ep.task])})
        if other:
            raise TrainDataError(f"train.instructions: train draws paraphrases of Meta-World tasks; episodes of "
                                 f"{other[:3]} have none: train with train.instructions: bag (the recorded words)")
    if tc.batch_size % world:
        raise ValueError(f"batch_size {tc.batch_size} must be divisible by the {world} processes")
    stats = dataset_stats(ds)  # proprio mean/std and every action (for the tokenizer bounds)
    tokenizer = ActionTokenizer.fit(stats["actions"], bins=mc.bins)
    model = TriModalModel(mc).to(dev)
    model.proprio.set_normalization(stats["proprio_mean"], stats["proprio_std"])
    if mc.state_input and (tc.state_weight <= 0 or mc.state_input != ds.state.shape[1]):
        raise TrainDataError(f"model.state_input {mc.state_input} needs train.state_weight > 0 and a recorded "
                             f"/sim/state of that width (its state head learns from it)")
    if mc.state_input:
        model.state_head.set_normalization(ds.state)
    amp = tc.amp and dev.type == "cuda"
    objective = TriModalObjective(model, tc, amp=amp).to(dev)  # what the optimiser minimises
    params = param_groups(model, tc.weight_decay)
    if objective.weighting is not None:
        params.append({"params": list(objective.weighting.parameters()), "weight_decay": 0.0})
    if objective.chunk_encoder is not None:
        params.append({"params": list(objective.chunk_encoder.parameters()), "weight_decay": tc.weight_decay})
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, tc.warmup_steps, tc.steps))
    start, seconds = 0, 0.0  # training time before this call, summed over the resumes (None: unknown)
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = read_checkpoint(last)
        if config_from_dict(ck["config"], retired_ok=True).to_dict() != cfg.to_dict():  # keys added since: defaults
            raise ValueError(f"--resume: {last} was trained with another config")
        model.load_state_dict(ck.get("train_model", ck["model"]))
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        for name in ("weighting", "chunk_encoder"):  # the objective's own parameters (raw ones under ema)
            if getattr(objective, name) is not None:
                getattr(objective, name).load_state_dict(ck.get(f"train_{name}", ck[name]))
        start, seconds = int(ck["step"]), ck.get("train_seconds")
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed %s at step %d", last, start)
    ema = WeightAverage(model, tc.ema) if tc.ema and main else None  # only rank 0 checkpoints
    # the chunk encoder embeds into the averaged model's space, so it is averaged with it
    chunk_ema = WeightAverage(objective.chunk_encoder, tc.ema) if ema and objective.chunk_encoder else None
    if ema is not None and start:
        ema.model.load_state_dict(ck["model"])
        if chunk_ema is not None:
            chunk_ema.model.load_state_dict(ck["chunk_encoder"])
    # the model's gradients and the chunk encoder's (an alignment modality) are clipped together
    clipped = [*model.parameters(), *(objective.chunk_encoder.parameters() if objective.chunk_encoder else ())]
    net = objective
    if ddp:
        net = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    batcher = Batcher(ds, tokenizer, model, dev, tc.instructions, tc.seed, tc.augment_shift, tc.instruction_noise,
                      paraphrases=tc.text_alignment > 0)
    metrics_path = out_dir / "metrics.csv"
    if main and (start == 0 or not metrics_path.exists()):
        with open(metrics_path, "w", newline="") as f:
            csv.writer(f).writerow(METRIC_FIELDS)
    elif main:  # rows logged after the checkpoint resumed from are redone: drop them, keep the rest
        rows = metrics_path.read_text().splitlines(keepends=True)
        kept = rows[:1] + [r for r in rows[1:] if r.split(",", 1)[0].isdigit() and int(r.split(",", 1)[0]) <= start]
        if len(kept) < len(rows):
            atomic_write_text(metrics_path, "".join(kept))
    tb = _tensorboard(out_dir) if main else None

    written = [seconds]  # the training time the newest checkpoint carries

    def checkpoint(step: int) -> Path:
        written[0] = None if seconds is None else round(seconds + time.monotonic() - t0, 1)
        extra = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "torch_rng": torch.get_rng_state(), "data": str(data), "train_seconds": written[0],
                 "torch_threads": torch.get_num_threads(),
                 "frame_size": list(ds[0]["image"].shape[-3:-1])}  # (H, W) of the frames: rollouts render so
        for name in ("weighting", "chunk_encoder"):
            if getattr(objective, name) is not None:
                extra[name] = getattr(objective, name).state_dict()
        if step == tc.steps:
            plain = Batcher(ds, tokenizer, model, dev, tc.instructions, tc.seed)  # as served: no shift, no noise
            extra["embedding_stats"] = embedding_stats(model if ema is None else ema.model, plain, len(ds),
                                                       tc.batch_size, tc.seed)
        if ema is None:
            return save_checkpoint(last, model, cfg, tokenizer, extra)
        # the averaged weights are what the checkpoint serves; the raw ones are what training resumes
        extra["train_model"] = model.state_dict()
        if chunk_ema is not None:
            extra["train_chunk_encoder"], extra["chunk_encoder"] = extra["chunk_encoder"], chunk_ema.model.state_dict()
        if step == tc.steps:  # the final raw weights as a checkpoint of their own, to compare
            save_checkpoint(out_dir / "raw.pt", model, cfg, tokenizer, {"step": step, "data": str(data),
                            **({"chunk_encoder": extra["train_chunk_encoder"]} if chunk_ema else {})})
        return save_checkpoint(last, ema.model, cfg, tokenizer, extra)

    model.train()
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, disable=not (progress and main),
               desc=f"train {mc.fusion}/{tc.loss}", dynamic_ncols=True)
    for step in bar:
        idx = batch_indices(len(ds), tc.batch_size, step, tc.seed)
        shard = idx[rank::world]
        batch = batcher(shard, step)
        log_now = (step + 1) % tc.log_every == 0 or step + 1 == tc.steps
        conflict = {"conflict": float("nan"), "null": float("nan")}
        measure = log_now and tc.conflict_every and ((step + 1) % tc.conflict_every == 0 or step + 1 == tc.steps)
        probe = bool(measure and main and tc.loss != "none" and not ddp)
        loss, m = net(batch, probe=probe)
        if probe:
            conflict = gradient_conflict(m["action_ce"], m["contrastive"],
                                         [p for p in model.parameters() if p.requires_grad], m["action_ce_halves"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(clipped, tc.grad_clip)
        opt.step()
        sched.step()
        for avg in (ema, chunk_ema):
            if avg is not None:
                avg.update(step)
        if log_now and main:
            row = [step + 1, loss.item(), m["action_ce"].item(), m["contrastive"].item(), m["token_acc"].item(),
                   sched.get_last_lr()[0], m["temperature"].item(), conflict["conflict"], conflict["null"],
                   *(m[k].item() if k in m else float("nan") for k in ("state_mse", "text_text"))]
            with open(metrics_path, "a", newline="") as f:
                csv.writer(f).writerow(row)
            if tb is not None:
                for k, v in zip(METRIC_FIELDS[1:], row[1:]):
                    tb.add_scalar(k, v, step + 1)
            bar.set_postfix(loss=f"{row[1]:.3f}", acc=f"{row[4]:.2f}")
        if main and ((step + 1) % tc.ckpt_every == 0 or step + 1 == tc.steps):
            checkpoint(step + 1)
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    if tb is not None:
        tb.close()
    return TrainResult(last, model if ema is None else ema.model, tokenizer, rank, written[0])  # what last.pt serves


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        return None
    return SummaryWriter(str(out_dir / "tb"))
