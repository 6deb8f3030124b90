"""Adapters that project one modality into the shared space of size D.

Every adapter maps (pooled (B, E), tokens (B, T, E), mask (B, T) | None) to
(pooled (B, D), tokens (B, T', D)). Linear and MLP act token-wise (T' = T); the Q-Former
(BLIP-2 / OmniFusion) lets learned queries read the token sequence (T' = queries).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..registry import Registry

ADAPTERS: Registry[type] = Registry("adapter")


class QFormer(nn.Module):
    """Learned queries that self-attend and cross-attend to a token sequence (BLIP-2 style).

    Unlike a single-encoder Q-Former (queries concatenated with the inputs in one encoder), the
    inputs are only keys/values here, so cost grows linearly with their length.
    """

    def __init__(self, in_dim: int, dim: int, num_queries: int, layers: int = 1, heads: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        self.in_proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict({
                "ln_self": nn.LayerNorm(dim),
                "self_attn": nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True),
                "ln_q": nn.LayerNorm(dim),
                "ln_kv": nn.LayerNorm(dim),
                "cross_attn": nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True),
                "ln_ffn": nn.LayerNorm(dim),
                "ffn": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(4 * dim, dim)),
            }))
        self.ln_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        # tokens: (B, T, in_dim), mask: (B, T) True = real token → (B, Q, dim)
        kv = self.in_proj(tokens)
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        pad = None if mask is None else ~mask
        for blk in self.layers:
            h = blk["ln_self"](q)
            q = q + blk["self_attn"](h, h, h, need_weights=False)[0]
            k = blk["ln_kv"](kv)
            q = q + blk["cross_attn"](blk["ln_q"](q), k, k, key_padding_mask=pad, need_weights=False)[0]
            q = q + blk["ffn"](blk["ln_ffn"](q))
        return self.ln_out(q)


@ADAPTERS.register("linear")
class LinearAdapter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, cfg=None):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, pooled, tokens, mask=None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.proj(pooled), self.proj(tokens)


@ADAPTERS.register("mlp")
class MLPAdapter(nn.Module):
    """Linear–GELU–Linear, as OmniFusion's MLP adapter."""

    def __init__(self, in_dim: int, out_dim: int, cfg=None):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, pooled, tokens, mask=None):
        return self.mlp(pooled), self.mlp(tokens)


@ADAPTERS.register("qformer")
class QFormerAdapter(nn.Module):
    """Queries summarise the modality's tokens; the pooled vector is their mean plus a linear skip
    of the tower's own pooled output (so a single-token modality such as proprio still works)."""

    def __init__(self, in_dim: int, out_dim: int, cfg=None):
        super().__init__()
        q = getattr(cfg, "adapter_queries", 8)
        heads = getattr(cfg, "fusion_heads", 4)
        self.qformer = QFormer(in_dim, out_dim, q, layers=1, heads=heads)
        self.skip = nn.Linear(in_dim, out_dim)

    def forward(self, pooled, tokens, mask=None):
        q = self.qformer(tokens, mask)  # (B, Q, D)
        return self.skip(pooled) + q.mean(dim=1), q
