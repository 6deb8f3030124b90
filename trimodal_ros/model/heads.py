"""Action head: fused embedding → token logits for a chunk of K future actions."""

from __future__ import annotations

import torch
from torch import nn


class ActionHead(nn.Module):
    def __init__(self, dim: int, hidden: int, chunk: int, action_dim: int, bins: int, dropout: float = 0.0):
        super().__init__()
        self.shape = (chunk, action_dim, bins)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, chunk * action_dim * bins))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        # fused: (B, D) → logits (B, K, A, bins)
        return self.net(fused).view(fused.shape[0], *self.shape)
