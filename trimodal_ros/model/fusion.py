"""Fusion variants: each maps the three adapted modalities to one fused vector (B, D).

Pick one by name (``FUSIONS.get(cfg.fusion)(cfg, clip_dim)``); a new variant is one class, one
``@FUSIONS.register`` line and one YAML in ``config/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .configuration import FUSION_NAMES
from .adapters import QFormer

FUSIONS: Registry[type] = Registry("fusion")


@dataclass
class FusionInputs:
    image: torch.Tensor  # (B, D) adapted pooled image
    image_tokens: torch.Tensor  # (B, N, D) adapted patch tokens
    text: torch.Tensor  # (B, D)
    text_tokens: torch.Tensor  # (B, L, D)
    text_mask: Optional[torch.Tensor]  # (B, L) True = real token (None when tokens are queries)
    action: torch.Tensor  # (B, D) proprio/action-history embedding
    image_tokens_clip: torch.Tensor  # (B, N, E) patch tokens in CLIP's own joint space
    text_tokens_clip: torch.Tensor  # (B, L, E)
    text_mask_clip: torch.Tensor  # (B, L)


@FUSIONS.register("weighted_sum")
class WeightedSum(nn.Module):
    """Σ_m softmax(w)_m · LN_m(x_m). The weights are normalised, so the
    mix is a convex combination of the normalised embeddings."""

    def __init__(self, cfg, clip_dim: int):
        super().__init__()
        d = cfg.embed_dim
        self.logits = nn.Parameter(torch.zeros(3))
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(3)])

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: FusionInputs) -> torch.Tensor:
        parts = torch.stack([n(v) for n, v in zip(self.norms, (x.image, x.text, x.action))], dim=1)
        return (self.weights().view(1, 3, 1) * parts).sum(dim=1)  # (B, 3, D) → (B, D)


@FUSIONS.register("concat_mlp")
class ConcatMLP(nn.Module):
    def __init__(self, cfg, clip_dim: int):
        super().__init__()
        d = cfg.embed_dim
        self.mlp = nn.Sequential(nn.LayerNorm(3 * d), nn.Linear(3 * d, 2 * d), nn.GELU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))

    def forward(self, x: FusionInputs) -> torch.Tensor:
        return self.mlp(torch.cat([x.image, x.text, x.action], dim=-1))  # (B, 3D) → (B, D)


@FUSIONS.register("cross_attention")
class CrossAttention(nn.Module):
    """The text and proprio embeddings are two queries that attend to the image patch tokens:
    Attention(Q_text,action, K_image, V_image), the usual cross-modal attention."""

    def __init__(self, cfg, clip_dim: int):
        super().__init__()
        d = cfg.embed_dim
        self.layers = nn.ModuleList()
        for _ in range(cfg.fusion_layers):
            self.layers.append(nn.ModuleDict({
                "ln_q": nn.LayerNorm(d), "ln_kv": nn.LayerNorm(d),
                "attn": nn.MultiheadAttention(d, cfg.fusion_heads, dropout=cfg.dropout, batch_first=True),
                "ln_ffn": nn.LayerNorm(d),
                "ffn": nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)),
            }))
        self.out = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))

    def forward(self, x: FusionInputs) -> torch.Tensor:
        q = torch.stack([x.text, x.action], dim=1)  # (B, 2, D)
        kv = x.image_tokens  # (B, N, D)
        for blk in self.layers:
            k = blk["ln_kv"](kv)
            q = q + blk["attn"](blk["ln_q"](q), k, k, need_weights=False)[0]
            q = q + blk["ffn"](blk["ln_ffn"](q))
        return self.out(q.flatten(1))  # (B, 2D) → (B, D)


@FUSIONS.register("qformer")
class QFormerFusion(nn.Module):
    """Learned queries read all three modalities' tokens at once (image patches, text tokens,
    the proprio token), each tagged with a learned modality embedding."""

    def __init__(self, cfg, clip_dim: int):
        super().__init__()
        d = cfg.embed_dim
        self.type_emb = nn.Parameter(torch.zeros(3, d))
        self.qformer = QFormer(d, d, cfg.fusion_queries, cfg.fusion_layers, cfg.fusion_heads, cfg.dropout)
        self.out = nn.Linear(d, d)

    def forward(self, x: FusionInputs) -> torch.Tensor:
        b, n = x.image_tokens.shape[:2]
        seq = torch.cat([x.image_tokens + self.type_emb[0], x.text_tokens + self.type_emb[1],
                         x.action.unsqueeze(1) + self.type_emb[2]], dim=1)  # (B, N+L+1, D)
        dev = seq.device
        text_mask = x.text_mask if x.text_mask is not None else torch.ones(
            x.text_tokens.shape[:2], dtype=torch.bool, device=dev)
        mask = torch.cat([torch.ones(b, n, dtype=torch.bool, device=dev), text_mask,
                          torch.ones(b, 1, dtype=torch.bool, device=dev)], dim=1)
        return self.out(self.qformer(seq, mask).mean(dim=1))  # (B, Q, D) → (B, D)


@FUSIONS.register("early_fusion")
class EarlyFusion(nn.Module):
    """Text-aware visual feature extraction before the policy, as in OTTER / EF-VLA.

    In CLIP's own joint space, each instruction token picks the patches it is most similar to
    (softmax over patches of cos-sim / τ); the selected features are projected, pooled by learned
    queries, and joined with the text and proprio embeddings. With pretrained CLIP this reuses its
    image–text alignment instead of asking the policy to learn grounding from scratch.
    """

    def __init__(self, cfg, clip_dim: int):
        super().__init__()
        d = cfg.embed_dim
        self.log_tau = nn.Parameter(torch.tensor(-2.3))  # τ_select ≈ 0.1
        self.proj = nn.Linear(clip_dim, d)
        self.pool = QFormer(d, d, cfg.fusion_queries, 1, cfg.fusion_heads, cfg.dropout)
        self.out = nn.Sequential(
            nn.LayerNorm((cfg.fusion_queries + 2) * d),
            nn.Linear((cfg.fusion_queries + 2) * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: FusionInputs) -> torch.Tensor:
        patches = F.normalize(x.image_tokens_clip, dim=-1)  # (B, N, E)
        words = F.normalize(x.text_tokens_clip, dim=-1)  # (B, L, E)
        sim = words @ patches.transpose(1, 2)  # (B, L, N)
        attn = torch.softmax(sim / self.log_tau.exp().clamp_min(1e-3), dim=-1)
        selected = attn @ x.image_tokens_clip  # (B, L, E): per-word visual features
        pooled = self.pool(self.proj(selected), x.text_mask_clip)  # (B, Q, D)
        return self.out(torch.cat([pooled.flatten(1), x.text, x.action], dim=-1))


# the torch-free list the launch file offers must name exactly the registered variants
if tuple(FUSIONS.names()) != FUSION_NAMES:
    raise RuntimeError(f"model.configuration.FUSION_NAMES {FUSION_NAMES} != the registry's {FUSIONS.names()}")
