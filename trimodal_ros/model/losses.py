"""Contrastive losses for a joint image–action–text space, and multi-task helpers.

Every loss takes un-normalised (B, D) embeddings and L2-normalises inside, so callers never
have to remember to. ``temperature`` may be a float or a 0-d tensor (the model's learnable one).
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry


def _check_same_shape(embeddings: Sequence[torch.Tensor]) -> None:
    if len(embeddings) < 2:
        raise ValueError(f"need at least two modalities, got {len(embeddings)}")
    shape = embeddings[0].shape
    if len(shape) != 2:
        raise ValueError(f"embeddings must be (B, D), got {tuple(shape)}")
    for e in embeddings[1:]:
        if e.shape != shape:
            raise ValueError(f"all embeddings must share one shape: {tuple(shape)} vs {tuple(e.shape)}")


def clip_loss(a: torch.Tensor, b: torch.Tensor, temperature=0.07) -> torch.Tensor:
    """Symmetric CLIP loss: mean of the a→b and b→a cross-entropies over cosine logits / τ."""
    _check_same_shape([a, b])
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature  # (B, B), s_ij / τ
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def pairwise_infonce(embeddings: Sequence[torch.Tensor], temperature=0.07) -> torch.Tensor:
    """Mean ``clip_loss`` over every unordered pair of modalities (3 pairs for 3 modalities)."""
    _check_same_shape(embeddings)
    pairs = list(itertools.combinations(range(len(embeddings)), 2))
    return sum(clip_loss(embeddings[i], embeddings[j], temperature) for i, j in pairs) / len(pairs)


def joint_infonce(embeddings: Sequence[torch.Tensor], temperature=0.07) -> torch.Tensor:
    """One multi-positive InfoNCE over all M·B embeddings.

    Row r's positives are the other M-1 modalities of the same sample; r itself is excluded from
    numerator and denominator. loss_r = -log(Σ_pos exp(s/τ) / Σ_{k≠r} exp(s/τ)), in logsumexp
    form so that small τ cannot overflow or underflow.
    """
    _check_same_shape(embeddings)
    m, (b, _) = len(embeddings), embeddings[0].shape
    z = F.normalize(torch.cat(list(embeddings), dim=0), dim=-1)  # (M·B, D)
    sim = z @ z.t() / temperature  # (M·B, M·B)
    n = m * b
    idx = torch.arange(n, device=z.device)
    self_mask = idx[:, None] == idx[None, :]
    pos_mask = ((idx[:, None] % b) == (idx[None, :] % b)) & ~self_mask
    neg_inf = torch.finfo(sim.dtype).min
    log_denominator = torch.logsumexp(sim.masked_fill(self_mask, neg_inf), dim=1)
    log_numerator = torch.logsumexp(sim.masked_fill(~pos_mask, neg_inf), dim=1)
    return (log_denominator - log_numerator).mean()


# --- the contrastive objective a config's `train.loss` names --------------------------------------
# Each takes {"image", "text", "action"} -> (B, D) and the temperature, and returns a scalar.
ContrastiveFn = Callable[[Dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
CONTRASTIVE_LOSSES: Registry[ContrastiveFn] = Registry("contrastive loss")

MODALITIES = ("image", "action", "text")


@CONTRASTIVE_LOSSES.register("pairwise")
def _pairwise(emb: Dict[str, torch.Tensor], temperature) -> torch.Tensor:
    return pairwise_infonce([emb[k] for k in MODALITIES], temperature)


@CONTRASTIVE_LOSSES.register("joint")
def _joint(emb: Dict[str, torch.Tensor], temperature) -> torch.Tensor:
    return joint_infonce([emb[k] for k in MODALITIES], temperature)


@CONTRASTIVE_LOSSES.register("clip")
def _clip_image_text(emb: Dict[str, torch.Tensor], temperature) -> torch.Tensor:
    """Image–text only: the EF-VLA/OTTER baseline that never sees actions in its contrastive term."""
    return clip_loss(emb["image"], emb["text"], temperature)


@CONTRASTIVE_LOSSES.register("none")
def _none(emb: Dict[str, torch.Tensor], temperature) -> torch.Tensor:
    return next(iter(emb.values())).new_zeros(())


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla (2018): L = Σ_i exp(-s_i)·L_i + s_i with learned s_i = log σ_i²."""

    def __init__(self, num_losses: int):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(num_losses))

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(losses) != self.log_vars.numel():
            raise ValueError(f"expected {self.log_vars.numel()} losses, got {len(losses)}")
        total = self.log_vars.new_zeros(())
        for s, loss in zip(self.log_vars, losses):
            total = total + torch.exp(-s) * loss + s
        return total


def gradient_conflict(
    loss_a: torch.Tensor, loss_b: torch.Tensor, params: Iterable[torch.nn.Parameter]
) -> float:
    """cos(∇L_a, ∇L_b) over the shared parameters; < 0 means the two objectives pull apart.

    Leaves the graph intact (retain_graph) and does not touch ``.grad``. Returns nan when either
    gradient is zero over ``params`` (e.g. the contrastive loss is ``none``).
    """
    params = [p for p in params if p.requires_grad]
    ga = torch.autograd.grad(loss_a, params, retain_graph=True, allow_unused=True)
    gb = torch.autograd.grad(loss_b, params, retain_graph=True, allow_unused=True)
    dot = na = nb = 0.0
    for p, x, y in zip(params, ga, gb):
        if x is None or y is None:
            if x is not None:
                na += float((x.double() ** 2).sum())
            if y is not None:
                nb += float((y.double() ** 2).sum())
            continue
        x, y = x.double(), y.double()
        dot += float((x * y).sum())
        na += float((x * x).sum())
        nb += float((y * y).sum())
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return dot / (na**0.5 * nb**0.5)
