"""Action head: fused embedding → token logits for a chunk of K future actions; state heads: image
features → the simulator state (object and goal positions) they show (``STATE_HEADS``, picked by
``model.state_head``)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

STATE_HEADS: Registry = Registry("state head")


class ActionHead(nn.Module):
    def __init__(self, dim: int, hidden: int, chunk: int, action_dim: int, bins: int, dropout: float = 0.0):
        super().__init__()
        self.shape = (chunk, action_dim, bins)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, chunk * action_dim * bins))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        # fused: (B, D) → logits (B, K, A, bins)
        return self.net(fused).view(fused.shape[0], *self.shape)


@STATE_HEADS.register("pooled")
class StateHead(nn.Module):
    """An MLP from the image embedding to the frame's recorded simulator state (``SIM_STATE_NAMES``:
    object and goal positions), in units of the training set's per-coordinate std. Trained by
    ``train.state_weight``: as an auxiliary target it makes the image features say where the things
    the task is about are, which the action loss alone teaches slowly from a few demonstrations per
    task; with ``model.state_input`` the model owns it and the action head reads its prediction."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256, token_dim: int = 0):
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

    def forward(self, image: torch.Tensor, tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        # image: (B, D) → (B, S) standardised state (the patch tokens are not read)
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
    head (docs/results/policy_study.md, E29)."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256, token_dim: int = 0, queries: int = 4):
        if token_dim <= 0:
            raise ValueError(f"the tokens state head needs the tower's token width, got {token_dim}")
        super().__init__(dim + queries * token_dim, state_dim, hidden)
        self.norm = nn.LayerNorm(token_dim)
        self.queries = nn.Parameter(torch.randn(queries, token_dim) * token_dim ** -0.5)

    def forward(self, image: torch.Tensor, tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        # image: (B, D), tokens: (B, N, E) → (B, S) standardised state
        if tokens is None:
            raise ValueError("the tokens state head reads the patch tokens: give them")
        x = self.norm(tokens.float())  # (B, N, E)
        weights = torch.softmax(torch.einsum("qe,bne->bqn", self.queries, x) * x.shape[-1] ** -0.5, dim=-1)
        picked = torch.einsum("bqn,bne->bqe", weights, x).flatten(1)  # (B, Q·E)
        return self.mlp(torch.cat([image.float(), picked], dim=1))
