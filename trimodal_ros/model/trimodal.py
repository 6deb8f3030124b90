"""TriModalModel: CLIP image + text towers, a proprio/action encoder, adapters, fusion, action head."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from .configuration import ModelConfig
from .adapters import ADAPTERS
from .encoders import CLIPTowers, ProprioEncoder, TextFeatures, apply_tuning
from .fusion import FUSIONS, FusionInputs
from .heads import ACTION_HEADS, StateHead
from .preprocess import images_to_tensor


@dataclass
class TriModalOutput:
    image: torch.Tensor  # (B, D) contrastive embeddings, un-normalised
    text: torch.Tensor  # (B, D)
    action: torch.Tensor  # (B, D) proprio/action-history embedding
    fused: torch.Tensor  # (B, D)
    logits: torch.Tensor  # (B, K, A, bins)
    temperature: torch.Tensor  # () the learnable τ, read inside forward so DDP sees its use
    state: Optional[torch.Tensor] = None  # (B, S) predicted simulator state (model.state_input), std units
    paraphrase: Optional[torch.Tensor] = None  # (B, D) text embedding of a second phrasing (training's text–text term)

    def embeddings(self) -> dict:
        return {"image": self.image, "action": self.action, "text": self.text}

    def tokens(self) -> torch.Tensor:
        return self.logits.argmax(dim=-1)  # (B, K, A)


class TriModalModel(nn.Module):
    def __init__(self, cfg: ModelConfig, cache_dir: Optional[str] = None):
        super().__init__()
        self.cfg = cfg
        self.towers = CLIPTowers(cfg.clip_model, cfg.pretrained, cache_dir, cfg.text_tower)
        apply_tuning(self.towers.visual, cfg.image_tuning, cfg.lora_rank, cfg.lora_alpha)
        apply_tuning(self.towers.text, cfg.text_tuning, cfg.lora_rank, cfg.lora_alpha)
        e, d = self.towers.embed_dim, cfg.embed_dim
        adapter = ADAPTERS.get(cfg.adapter)
        self.image_adapter = adapter(e, d, cfg)
        self.text_adapter = adapter(e, d, cfg)
        self.proprio = ProprioEncoder(cfg.proprio_dim, cfg.proprio_hidden, cfg.proprio_hidden, cfg.dropout)
        self.action_adapter = adapter(cfg.proprio_hidden, d, cfg)
        self.fusion = FUSIONS.get(cfg.fusion)(cfg, e)
        self.views = len(cfg.cameras)
        if self.views > 1:  # which camera a patch came from, and one pooled vector from all views
            self.view_embedding = nn.Parameter(torch.zeros(self.views, 1, e))
            self.view_merge = nn.Linear(self.views * e, e)
        self.head = ACTION_HEADS.get(cfg.action_head)(d, cfg.head_hidden, cfg.chunk, cfg.action_dim, cfg.bins,
                                                      cfg.dropout)
        # CLIP's log-parameterised inverse temperature, clamped to [1/τ_max, 1/τ_min] when read
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature_init)))
        if cfg.state_input:  # last, so that every other module's initialisation is unchanged
            self.state_head = StateHead(d, cfg.state_input)
            self.state_to_head = nn.Linear(cfg.state_input, d)

    # --- inputs ------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.towers.image_size

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def preprocess(self, frames) -> torch.Tensor:
        """uint8 (B, H, W, 3) → (B, 3, S, S) on the model's device; a multi-camera model's
        (B, V, H, W, 3) → (B, V, 3, S, S)."""
        return images_to_tensor(frames, self.image_size, self.towers.image_mean, self.towers.image_std,
                                self.device)

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        return self.towers.tokenize(list(texts)).to(self.device)

    @property
    def temperature(self) -> torch.Tensor:
        lo, hi = math.log(1.0 / self.cfg.temperature_max), math.log(1.0 / self.cfg.temperature_min)
        return 1.0 / self.logit_scale.clamp(lo, hi).exp()

    # --- encoders ----------------------------------------------------------------------------------
    def encode_text(self, token_ids: torch.Tensor) -> TextFeatures:
        return self.towers.encode_text(token_ids)

    def encode_instructions(self, texts: List[str]) -> TextFeatures:
        return self.encode_text(self.tokenize(texts))

    def encode_views(self, images: torch.Tensor):
        """(B, 3, S, S), or (B, V, 3, S, S) for V cameras → pooled (B, E), patch tokens (B, V·N, E).

        Every view goes through the one image tower as part of one batch; its patch tokens get the
        view's learned embedding and are concatenated (so token-level fusions attend across
        cameras), and the pooled vectors are merged by a linear layer."""
        if images.dim() == 4:
            if self.views != 1:
                raise ValueError(f"the model sees {self.views} cameras {self.cfg.cameras}: give (B, V, 3, S, S)")
            return self.towers.encode_image(images)
        b, v = images.shape[:2]
        if v != self.views:
            raise ValueError(f"got {v} camera views, the model sees {self.views} {self.cfg.cameras}")
        pooled, tokens = self.towers.encode_image(images.flatten(0, 1))  # (B·V, E), (B·V, N, E)
        if v == 1:
            return pooled, tokens
        tokens = (tokens.unflatten(0, (b, v)) + self.view_embedding).flatten(1, 2)  # (B, V·N, E)
        return self.view_merge(pooled.reshape(b, -1)), tokens  # (B, E), (B, V·N, E)

    def forward(self, images: torch.Tensor, proprio: torch.Tensor,
                text_ids: Optional[torch.Tensor] = None, text: Optional[TextFeatures] = None,
                paraphrase_ids: Optional[torch.Tensor] = None) -> TriModalOutput:
        """images (B, 3, S, S) (multi-camera: (B, V, 3, S, S)), proprio (B, P), and text ids (B, L)
        or a cached TextFeatures (batch B or 1, broadcast); ``paraphrase_ids`` (B, L), in training,
        another phrasing of each sample's task whose embedding the output carries."""
        b = images.shape[0]
        if text is None:
            if text_ids is None:
                raise ValueError("give text_ids or cached text features")
            text = self.encode_text(text_ids)
        text = text.expand(b)
        img_pooled, img_tokens = self.encode_views(images)  # (B, E), (B, N, E)
        image, image_tokens = self.image_adapter(img_pooled, img_tokens, None)  # (B, D), (B, N', D)
        txt, txt_tokens = self.text_adapter(text.pooled, text.tokens, text.mask)  # (B, D), (B, L', D)
        txt_mask = text.mask if txt_tokens.shape[1] == text.tokens.shape[1] else None
        p = self.proprio(proprio if self.cfg.proprio_input else torch.zeros_like(proprio))  # (B, H)
        action, _ = self.action_adapter(p, p.unsqueeze(1), None)  # (B, D)
        state = self.state_head(image) if self.cfg.state_input else None  # (B, S)
        fused = self.fusion(FusionInputs(
            image=image, image_tokens=image_tokens, text=txt, text_tokens=txt_tokens, text_mask=txt_mask,
            action=action, image_tokens_clip=img_tokens, text_tokens_clip=text.tokens,
            text_mask_clip=text.mask,
        ))  # (B, D)
        head_in = fused if state is None else fused + self.state_to_head(state.to(fused.dtype))  # (B, D)
        paraphrase = None
        if paraphrase_ids is not None:
            second = self.encode_text(paraphrase_ids)
            paraphrase, _ = self.text_adapter(second.pooled, second.tokens, second.mask)  # (B, D)
        return TriModalOutput(image=image, text=txt, action=action, fused=fused, logits=self.head(head_in),
                              temperature=self.temperature, state=state, paraphrase=paraphrase)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
