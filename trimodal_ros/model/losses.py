"""Contrastive losses for a joint image–action–text space, and multi-task helpers.

Every loss takes un-normalised (B, D) embeddings and L2-normalises inside, so callers never
have to remember to. ``temperature`` may be a float or a 0-d tensor (the model's learnable one).
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Iterable, Optional, Sequence

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


def _positives(groups: Optional[torch.Tensor], b: int, device) -> Optional[torch.Tensor]:
    """(B, B) bool: samples of one group (e.g. one task) are positives for each other; None (every
    sample its own group) when ``groups`` is None."""
    if groups is None:
        return None
    if groups.shape != (b,):
        raise ValueError(f"groups must be ({b},), got {tuple(groups.shape)}")
    return groups.to(device)[:, None] == groups.to(device)[None, :]


def _multi_positive_ce(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log(Σ_pos exp(l) / Σ_all exp(l)) (the diagonal is always a positive)."""
    neg_inf = torch.finfo(logits.dtype).min
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~pos, neg_inf), dim=1)).mean()


def clip_loss(a: torch.Tensor, b: torch.Tensor, temperature=0.07,
              groups: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric CLIP loss: mean of the a→b and b→a cross-entropies over cosine logits / τ. With
    ``groups`` (B,), every pair of one group is a positive (task-aware: the other samples of a task
    in the batch are not pushed away as negatives)."""
    _check_same_shape([a, b])
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature  # (B, B), s_ij / τ
    pos = _positives(groups, a.shape[0], a.device)
    if pos is not None:
        return 0.5 * (_multi_positive_ce(logits, pos) + _multi_positive_ce(logits.t(), pos))
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def pairwise_infonce(embeddings: Sequence[torch.Tensor], temperature=0.07,
                     groups: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean ``clip_loss`` over every unordered pair of modalities (3 pairs for 3 modalities)."""
    _check_same_shape(embeddings)
    pairs = list(itertools.combinations(range(len(embeddings)), 2))
    return sum(clip_loss(embeddings[i], embeddings[j], temperature, groups) for i, j in pairs) / len(pairs)


def joint_infonce(embeddings: Sequence[torch.Tensor], temperature=0.07,
                  groups: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One multi-positive InfoNCE over all M·B embeddings.

    Row r's positives are the other M-1 modalities of the same sample (with ``groups``: every
    embedding of a sample of the same group); r itself is excluded from numerator and denominator.
    loss_r = -log(Σ_pos exp(s/τ) / Σ_{k≠r} exp(s/τ)), in logsumexp form so that small τ cannot
    overflow or underflow.
    """
    _check_same_shape(embeddings)
    m, (b, _) = len(embeddings), embeddings[0].shape
    z = F.normalize(torch.cat(list(embeddings), dim=0), dim=-1)  # (M·B, D)
    sim = z @ z.t() / temperature  # (M·B, M·B)
    n = m * b
    idx = torch.arange(n, device=z.device)
    self_mask = idx[:, None] == idx[None, :]
    same = _positives(groups, b, z.device)
    if same is None:
        pos_mask = ((idx[:, None] % b) == (idx[None, :] % b)) & ~self_mask
    else:
        pos_mask = same.repeat(m, m) & ~self_mask
    neg_inf = torch.finfo(sim.dtype).min
    log_denominator = torch.logsumexp(sim.masked_fill(self_mask, neg_inf), dim=1)
    log_numerator = torch.logsumexp(sim.masked_fill(~pos_mask, neg_inf), dim=1)
    return (log_denominator - log_numerator).mean()


def gaussian_bin_targets(tokens: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """HL-Gauss targets (Farebrother et al. 2024, "Stop Regressing"): integer bins (...) → (..., bins)
    probabilities, the mass a Gaussian of ``sigma`` bins centred on each bin's centre puts on every
    bin, renormalised over [0, bins). Cross-entropy against them tells the head that a neighbouring
    bin is nearly right, which one-hot targets (sigma 0) do not."""
    if sigma <= 0:
        return F.one_hot(tokens, bins).float()
    edges = torch.arange(bins + 1, device=tokens.device, dtype=torch.float32)  # (bins+1,)
    z = (edges - (tokens.unsqueeze(-1).float() + 0.5)) / (sigma * 2 ** 0.5)  # (..., bins+1)
    mass = torch.special.erf(z).diff(dim=-1)  # 2 × Φ differences; the factor cancels below
    return mass / mass.sum(-1, keepdim=True)


def gather_batch(emb: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Under DistributedDataParallel, every rank's embeddings concatenated in rank order, with
    gradients flowing back to each rank's own (as open_clip's ``gather_with_grad``): the
    contrastive loss then sees the GLOBAL batch's negatives on every rank, the same objective as
    one process on that batch. Every rank computes the same loss; DDP's gradient averaging then
    gives exactly one process's gradient. A no-op outside DDP."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return emb
    from torch.distributed.nn.functional import all_gather

    return {k: torch.cat(all_gather(v.contiguous()), dim=0) for k, v in emb.items()}


# --- the contrastive objective a config's `train.loss` names --------------------------------------
# Each takes {"image", "text", "action"} -> (B, D), the temperature and the positives' groups (None:
# each sample alone; train.positives: task gives the task ids), and returns a scalar.
ContrastiveFn = Callable[[Dict[str, torch.Tensor], torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
CONTRASTIVE_LOSSES: Registry[ContrastiveFn] = Registry("contrastive loss")

MODALITIES = ("image", "action", "text")


@CONTRASTIVE_LOSSES.register("pairwise")
def _pairwise(emb: Dict[str, torch.Tensor], temperature, groups=None) -> torch.Tensor:
    return pairwise_infonce([emb[k] for k in MODALITIES], temperature, groups)


@CONTRASTIVE_LOSSES.register("joint")
def _joint(emb: Dict[str, torch.Tensor], temperature, groups=None) -> torch.Tensor:
    return joint_infonce([emb[k] for k in MODALITIES], temperature, groups)


@CONTRASTIVE_LOSSES.register("clip")
def _clip_image_text(emb: Dict[str, torch.Tensor], temperature, groups=None) -> torch.Tensor:
    """Image–text only: the EF-VLA/OTTER baseline that never sees actions in its contrastive term."""
    return clip_loss(emb["image"], emb["text"], temperature, groups)


@CONTRASTIVE_LOSSES.register("none")
def _none(emb: Dict[str, torch.Tensor], temperature, groups=None) -> torch.Tensor:
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


def shared_gradients(loss_a: torch.Tensor, loss_b: torch.Tensor, params: Iterable[torch.nn.Parameter]):
    """(parameters BOTH losses reach with a non-zero gradient, ∇L_a, ∇L_b over them, flattened).
    Parameters only one loss touches (the action head and fusion for the action loss, the
    temperature for the contrastive one) are left out: they would only add orthogonal dimensions
    and pull every cosine towards 0. Leaves the graph intact and ``.grad`` untouched."""
    params = [p for p in params if p.requires_grad]
    ga = torch.autograd.grad(loss_a, params, retain_graph=True, allow_unused=True)
    gb = torch.autograd.grad(loss_b, params, retain_graph=True, allow_unused=True)
    keep = [i for i, (x, y) in enumerate(zip(ga, gb)) if x is not None and y is not None and x.any() and y.any()]
    flat = lambda gs: torch.cat([gs[i].reshape(-1).double() for i in keep]) if keep else None  # noqa: E731
    return [params[i] for i in keep], flat(ga), flat(gb)


def flat_gradient(loss: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> Optional[torch.Tensor]:
    if not params:
        return None
    gs = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double() for p, g in zip(params, gs)])


def cosine(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> float:
    if a is None or b is None:
        return float("nan")
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")


def gradient_conflict(loss_a: torch.Tensor, loss_b: torch.Tensor, params: Iterable[torch.nn.Parameter],
                      null_pair: Optional[Sequence[torch.Tensor]] = None) -> Dict[str, float]:
    """{"conflict": cos(∇L_a, ∇L_b) over the parameters both losses reach (< 0: the objectives
    pull apart; nan when they share none, e.g. the contrastive loss is ``none``), "null": the
    cosine between the gradients of ``null_pair`` (the same loss on two halves of the batch) over
    the same parameters}: in millions of dimensions even related gradients have small cosines, so
    the conflict means something only next to that null."""
    shared, ga, gb = shared_gradients(loss_a, loss_b, params)
    null = float("nan")
    if null_pair is not None and shared:
        null = cosine(flat_gradient(null_pair[0], shared), flat_gradient(null_pair[1], shared))
    return {"conflict": cosine(ga, gb), "null": null, "shared_parameters": int(sum(p.numel() for p in shared))}
