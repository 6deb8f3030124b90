"""TriModalObjective: what training minimises, owned beside the model (lerobot's ``policy.forward(batch)
-> loss``): the action-token cross-entropy, the alignment term (``train.loss``, fixed-weighted or by
learned uncertainty), the text–text term over a task's phrasings and the model's state head. The
trainer only optimises whatever this returns; serving never imports it."""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..train.configuration import TrainConfig
from .losses import CONTRASTIVE_LOSSES, UncertaintyWeighting, clip_loss, gather_batch, gaussian_bin_targets
from .trimodal import TriModalModel, TriModalOutput


def action_ce(out: TriModalOutput, batch: Dict[str, torch.Tensor], rows=slice(None), sigma: float = 0.0):
    """Masked mean token cross-entropy over ``rows`` of the batch, against one-hot targets or, with
    ``sigma`` > 0 (bins), HL-Gauss ones."""
    bins = out.logits.shape[-1]
    mask = batch["mask"][rows]  # (B, K)
    tokens = batch["tokens"][rows].reshape(-1)  # (B·K·A,)
    target = tokens if sigma <= 0 else gaussian_bin_targets(tokens, bins, sigma)  # (B·K·A[, bins])
    ce = F.cross_entropy(out.logits[rows].float().reshape(-1, bins), target, reduction="none")
    ce = ce.view(mask.shape[0], mask.shape[1], -1).mean(-1)  # (B, K)
    return (ce * mask).sum() / mask.sum().clamp_min(1)


def compute_losses(out: TriModalOutput, batch: Dict[str, torch.Tensor], loss_name: str, label_sigma: float = 0.0,
                   positives: str = "sample"):
    """(action cross-entropy, contrastive loss, token accuracy[, text–text loss when the batch has
    paraphrases]). ``positives``: sample, or task (samples of a task are positives for each other)."""
    mask = batch["mask"]  # (B, K)
    ce = action_ce(out, batch, sigma=label_sigma)
    emb = {k: v.float() for k, v in out.embeddings().items()}
    if out.paraphrase is not None:
        emb["paraphrase"] = out.paraphrase.float()
    if "task_ids" in batch:  # compared across ranks: gathered with the embeddings
        emb["groups"] = batch["task_ids"].double()
    elif positives == "task":
        raise ValueError("positives 'task' needs the batch's task_ids")
    emb = gather_batch(emb)  # the global batch under DDP
    groups = emb.pop("groups").long() if "groups" in emb else None
    paraphrase = emb.pop("paraphrase", None)
    contrastive = CONTRASTIVE_LOSSES.get(loss_name)(emb, out.temperature, groups if positives == "task" else None)
    with torch.no_grad():
        acc = ((out.logits.argmax(-1) == batch["tokens"]).float().mean(-1) * mask).sum() / mask.sum().clamp_min(1)
    if paraphrase is None:
        return ce, contrastive, acc
    return ce, contrastive, acc, clip_loss(emb["text"], paraphrase, out.temperature, groups)


class ActionChunkEncoder(nn.Module):
    """The demonstrated action chunk as the alignment's third modality (the
    image–action–text triplet proper): its tokens as values in [-1, 1] and the chunk's row mask, an MLP into
    the shared space. Training only: a robot has no future actions to encode, so serving never sees it."""

    def __init__(self, chunk: int, action_dim: int, bins: int, hidden: int, out_dim: int):
        super().__init__()
        self.bins = bins
        self.net = nn.Sequential(nn.Linear(chunk * (action_dim + 1), hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    @classmethod
    def for_model(cls, cfg) -> "ActionChunkEncoder":
        """The encoder a model of ModelConfig ``cfg`` trains beside it (its chunk, bins and space)."""
        return cls(cfg.chunk, cfg.action_dim, cfg.bins, cfg.proprio_hidden, cfg.embed_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = tokens.float() / (self.bins - 1) * 2 - 1  # (B, K, A) in [-1, 1]
        m = mask.float().unsqueeze(-1)  # (B, K, 1): rows past the episode's end are zero and flagged
        return self.net(torch.cat([x * m, m], -1).flatten(1))  # (B, D)


class TriModalObjective(nn.Module):
    """``forward(batch) -> (loss, metrics)`` for a TriModalModel under one TrainConfig.

    ``metrics`` holds 0-d tensors: ``action_ce``, ``contrastive``, ``token_acc``, ``temperature``, and
    ``state_mse`` / ``text_text`` when those terms are on; with ``probe=True`` also ``action_ce_halves``
    (the action loss on each half of the batch: the null of the gradient-conflict probe). The
    uncertainty weights and, with ``train.align_action: chunk``, the action-chunk encoder are this
    module's parameters, so DDP and the optimiser see them with the model's."""

    def __init__(self, model: TriModalModel, train: TrainConfig, amp: bool = False):
        super().__init__()
        if train.state_weight > 0 and not model.cfg.state_input:
            raise ValueError("train.state_weight trains the model's state head: set model.state_input")
        self.model, self.cfg, self.amp = model, train, amp
        self.weighting = UncertaintyWeighting(2) if train.uncertainty_weighting else None
        self.chunk_encoder = ActionChunkEncoder.for_model(model.cfg) if train.align_action == "chunk" else None

    def forward(self, batch: Dict[str, torch.Tensor], probe: bool = False) -> Tuple[torch.Tensor, dict]:
        tc = self.cfg
        images = batch["images"]  # (B, 3, S, S) or (B, V, 3, S, S)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(images, batch["proprio"], text_ids=batch["text_ids"],
                             paraphrase_ids=batch.get("paraphrase_ids"))
        if self.chunk_encoder is not None:  # the demonstrated chunk, not the joints, plays "action" in the alignment
            out = dataclasses.replace(out, action=self.chunk_encoder(batch["tokens"], batch["mask"]))  # (B, D)
        ce, con, acc, *text_text = compute_losses(out, batch, tc.loss, tc.label_sigma, tc.positives)
        if self.weighting is not None and tc.loss != "none":
            loss = self.weighting([ce, con])
        else:
            loss = ce + tc.contrastive_weight * con
        metrics = {"action_ce": ce, "contrastive": con, "token_acc": acc, "temperature": out.temperature}
        if text_text:
            loss = loss + tc.text_alignment * text_text[0]
            metrics["text_text"] = text_text[0]
        if tc.state_weight > 0:
            metrics["state_mse"] = self.model.state_head.loss(out.state, batch["state"])  # std units
            loss = loss + tc.state_weight * metrics["state_mse"]
        if probe:
            half = batch["mask"].shape[0] // 2
            metrics["action_ce_halves"] = (action_ce(out, batch, slice(0, half), tc.label_sigma),
                                           action_ce(out, batch, slice(half, None), tc.label_sigma))
        return loss, metrics
