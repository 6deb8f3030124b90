"""Action head: fused embedding → token logits for a chunk of K future actions (``ACTION_HEADS``,
picked by ``model.action_head``); state head: image embedding → the simulator state (object, goal
and hand positions) it shows."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

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


class StateHead(nn.Module):
    """An MLP from the image embedding to the frame's recorded simulator state (the first S of
    ``SIM_STATE_NAMES``: object, goal and hand positions), in units of the training set's
    per-coordinate std. Trained by ``train.state_weight``: as an auxiliary target it makes the image
    features say where the things the task is about are, which the action loss alone teaches slowly
    from a few demonstrations per task; the action head reads its prediction too. Heads that also
    read the patch tokens or the proprio features did no better on MT10 and were removed
    (docs/results/policy_study.md)."""

    def __init__(self, dim: int, state_dim: int, hidden: int = 256):
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

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # image: (B, D) → (B, S) standardised state
        return self.mlp(image.float())

    def loss(self, predicted: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Mean squared error of a (B, S) prediction against (B, S) recorded states, in std units."""
        return F.mse_loss(predicted, (state - self.mean) / self.std)
