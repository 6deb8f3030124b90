"""Action head: fused embedding → token logits for a chunk of K future actions; state heads: image
(and proprio) features → the simulator state (object, goal and hand positions) they show
(``STATE_HEADS``, picked by ``model.state_head``)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

STATE_HEADS: Registry = Registry("state head")
ACTION_HEADS: Registry = Registry("action head")


@ACTION_HEADS.register("bins")
class ActionHead(nn.Module):
    """One logit per bin, per action dimension and chunk step (RT-2 / OpenVLA): a free categorical."""

    def __init__(self, dim: int, hidden: int, chunk: int, action_dim: int, bins: int, dropout: float = 0.0):
        super().__init__()
        self.shape = (chunk, action_dim, bins)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, chunk * action_dim * bins))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        # fused: (B, D) → logits (B, K, A, bins)
        return self.net(fused).view(fused.shape[0], *self.shape)


@ACTION_HEADS.register("gaussian")
class GaussianActionHead(nn.Module):
    """An ordinal head: one continuous position per action dimension and chunk step, in bin units,
    and logits that fall off with the squared distance of each bin from it (a discretised Gaussian of
    ``sigma`` bins). The tokens, their argmax and the cross-entropy loss are those of the free head,
    but the loss becomes a squared error on a position, so neighbouring bins share what they learn
    instead of being 256 unrelated classes per dimension. On MT10 it did worse than the free head
    (docs/results/policy_study.md, the Gaussian head)."""

    def __init__(self, dim: int, hidden: int, chunk: int, action_dim: int, bins: int, dropout: float = 0.0,
                 sigma: float = 4.0):
        super().__init__()
        self.shape, self.bins, self.sigma = (chunk, action_dim), bins, float(sigma)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, chunk * action_dim))
        self.register_buffer("centres", torch.arange(bins, dtype=torch.float32) + 0.5, persistent=False)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        # fused: (B, D) → position (B, K, A) in [0, bins) → logits (B, K, A, bins)
        mu = self.bins * torch.sigmoid(self.net(fused).float().view(fused.shape[0], *self.shape))
        return -0.5 * ((self.centres - mu.unsqueeze(-1)) / self.sigma) ** 2


@STATE_HEADS.register("pooled")
class StateHead(nn.Module):
    """An MLP from the image embedding to the frame's recorded simulator state (the first S of
    ``SIM_STATE_NAMES``: object, goal and hand positions), in units of the training set's
    per-coordinate std. Trained by ``train.state_weight``: as an auxiliary target it makes the image
    features say where the things the task is about are, which the action loss alone teaches slowly
    from a few demonstrations per task; with ``model.state_input`` the model owns it and the action
    head reads its prediction."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256, token_dim: int = 0, proprio_dim: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(state_dim))
        self.register_buffer("std", torch.ones(state_dim))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, state_dim))

    def set_normalization(self, states) -> None:
        """Mean and std per coordinate of the training states (N, S); a constant coordinate (a table
        height) keeps a std of 1 mm so its error stays finite."""
        s = torch.as_tensor(np.asarray(states, np.float32))
        self.mean.copy_(s.mean(0))
        self.std.copy_(s.std(0).clamp_min(1e-3))

    def forward(self, image: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                proprio: Optional[torch.Tensor] = None) -> torch.Tensor:
        # image: (B, D) → (B, S) standardised state (the patch tokens and proprio are not read)
        return self.mlp(image.float())

    def loss(self, predicted: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Mean squared error of a (B, S) prediction against (B, S) recorded states, in std units."""
        return F.mse_loss(predicted, (state - self.mean) / self.std)


@STATE_HEADS.register("tokens")
class TokenStateHead(StateHead):
    """Reads the image tower's patch tokens as well as the pooled embedding: Q learned queries attend
    over the (layer-normed) tokens of every camera and the MLP sees what they picked next to the
    pooled vector. A goal marker a few pixels wide lives in one patch; pooling the whole image into
    one vector blurs where it is, attention can pick that patch (spatial read-outs, as the keypoint
    and spatial-softmax heads of visuomotor policies do). On MT10 it did no better than the pooled
    head (docs/results/policy_study.md, the token-reading state head)."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256, token_dim: int = 0, proprio_dim: int = 0,
                 queries: int = 4):
        if token_dim <= 0:
            raise ValueError(f"the tokens state head needs the tower's token width, got {token_dim}")
        super().__init__(dim + queries * token_dim, state_dim, hidden)
        self.norm = nn.LayerNorm(token_dim)
        self.queries = nn.Parameter(torch.randn(queries, token_dim) * token_dim ** -0.5)

    def forward(self, image: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                proprio: Optional[torch.Tensor] = None) -> torch.Tensor:
        # image: (B, D), tokens: (B, N, E) → (B, S) standardised state
        if tokens is None:
            raise ValueError("the tokens state head reads the patch tokens: give them")
        x = self.norm(tokens.float())  # (B, N, E)
        weights = torch.softmax(torch.einsum("qe,bne->bqn", self.queries, x) * x.shape[-1] ** -0.5, dim=-1)
        picked = torch.einsum("bqn,bne->bqe", weights, x).flatten(1)  # (B, Q·E)
        return self.mlp(torch.cat([image.float(), picked], dim=1))


@STATE_HEADS.register("proprio")
class ProprioStateHead(StateHead):
    """Reads the proprio encoder's features next to the pooled image embedding. Where the state
    includes the hand (``state_input: 9``: ``hand_x/y/z``), that is forward kinematics from the
    joint angles, which the camera shows only roughly; the action head then gets the hand, the object
    and the goal in one frame, and the expert's move toward a target is linear in their difference.
    On MT10 it places the hand to 0.5 cm but the policy did no better (docs/results/policy_study.md)."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256, token_dim: int = 0, proprio_dim: int = 0):
        if proprio_dim <= 0:
            raise ValueError(f"the proprio state head needs the proprio features' width, got {proprio_dim}")
        super().__init__(dim + proprio_dim, state_dim, hidden)

    def forward(self, image: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                proprio: Optional[torch.Tensor] = None) -> torch.Tensor:
        # image: (B, D), proprio: (B, H) → (B, S) standardised state
        if proprio is None:
            raise ValueError("the proprio state head reads the proprio features: give them")
        return self.mlp(torch.cat([image.float(), proprio.float()], dim=1))
