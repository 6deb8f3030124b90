"""Encoders: open_clip image/text towers (with LoRA / BitFit / freezing) and the proprio encoder."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin")
_registered = False


def _open_clip():
    """Import open_clip once and teach it the small architectures shipped in model/configs."""
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return open_clip


def packaged_architectures() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


class PretrainedWeightsError(RuntimeError):
    """Pretrained CLIP weights were asked for and cannot be had."""


def create_clip(name: str, pretrained: Optional[str] = None, cache_dir: Optional[str] = None) -> nn.Module:
    """Build an open_clip model: random init, an open_clip pretrained tag, or a local file/folder."""
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {name!r}; packaged: {packaged_architectures()}, "
                         f"open_clip has e.g. ViT-B-32, ViT-B-16 (open_clip.list_models())")
    if pretrained is None or pretrained == "":
        # random init is asked for explicitly here: open_clip's root-logger warning about it is noise
        quiet = _DropMessage("No pretrained weights loaded")
        logging.getLogger().addFilter(quiet)
        try:
            return open_clip.create_model(name, pretrained=None, pretrained_text=False)
        finally:
            logging.getLogger().removeFilter(quiet)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").exists():
            return open_clip.create_model(f"local-dir:{path}")
        files = [path / f for f in WEIGHT_FILES if (path / f).exists()]
        if not files:
            raise PretrainedWeightsError(f"no weight file in {path}: expected one of {list(WEIGHT_FILES)}")
        path = files[0]
    if path.is_file():
        return open_clip.create_model(name, pretrained=str(path))
    if any(c in pretrained for c in "/\\") or pretrained.endswith((".pt", ".bin", ".safetensors")):
        raise PretrainedWeightsError(f"pretrained weights file {pretrained!r} does not exist")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise PretrainedWeightsError(f"{pretrained!r} is not an open_clip pretrained tag of {name} "
                                     f"(tags: {tags or 'none'}) nor an existing file")
    try:
        return open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
    except Exception as e:  # offline, not cached, or a broken download
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        raise PretrainedWeightsError(
            f"cannot load open_clip weights {name}/{pretrained}"
            f"{' (HF_HUB_OFFLINE=1 and they are not in the cache)' if offline else ''}: {e}\n"
            f"On a connected machine run: python -c \"import open_clip; open_clip.create_model("
            f"'{name}', pretrained='{pretrained}')\" to fill the Hugging Face cache, or download "
            f"open_clip_pytorch_model.bin and set `pretrained: /path/to/open_clip_pytorch_model.bin` "
            f"(or a folder holding it) in the config."
        ) from None


# --- parameter-efficient tuning --------------------------------------------------------------------
class LoRA(nn.Module):
    """W = W0 + (α/r)·B·A as a parametrization, so it also reaches nn.MultiheadAttention's
    ``in_proj_weight`` (which is a bare Parameter, not an nn.Linear). B starts at zero: the
    tuned model equals the pretrained one at step 0."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float):
        super().__init__()
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, w0: torch.Tensor) -> torch.Tensor:
        return w0 + self.scale * (self.lora_B @ self.lora_A).to(w0.dtype)


def lora_targets(tower: nn.Module) -> List[Tuple[nn.Module, str]]:
    """The 2-D weights of attention and MLP blocks inside a transformer tower."""
    out = []
    for mod_name, mod in tower.named_modules():
        if ".resblocks." not in f".{mod_name}" and "blocks" not in mod_name:
            continue
        for pname in ("in_proj_weight", "weight"):
            p = getattr(mod, pname, None)
            if isinstance(p, nn.Parameter) and p.dim() == 2 and isinstance(mod, (nn.Linear, nn.MultiheadAttention)):
                out.append((mod, pname))
    return out


def apply_tuning(tower: nn.Module, mode: str, rank: int = 8, alpha: float = 16.0) -> int:
    """Set which parameters of ``tower`` train: full, frozen, lora (W0 frozen) or bitfit (biases).
    Returns the number of trainable parameters left in the tower."""
    if mode == "full":
        tower.requires_grad_(True)
    elif mode == "frozen":
        tower.requires_grad_(False)
    elif mode == "bitfit":
        for name, p in tower.named_parameters():
            p.requires_grad_(name.endswith("bias"))
    elif mode == "lora":
        tower.requires_grad_(False)
        targets = lora_targets(tower)
        if not targets:
            raise ValueError("LoRA found no attention/MLP linears in this tower")
        for mod, pname in targets:
            out_f, in_f = getattr(mod, pname).shape
            parametrize.register_parametrization(mod, pname, LoRA(out_f, in_f, rank, alpha))
    else:
        raise ValueError(f"unknown tuning mode {mode!r}")
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)


# --- the CLIP towers ------------------------------------------------------------------------------
@dataclass
class TextFeatures:
    """A text encoding that the node caches per instruction: CLIP-space pooled + token features."""

    pooled: torch.Tensor  # (B, E)
    tokens: torch.Tensor  # (B, L, E)
    mask: torch.Tensor  # (B, L) bool, True where a real token is

    def expand(self, batch: int) -> "TextFeatures":
        if self.pooled.shape[0] == batch:
            return self
        if self.pooled.shape[0] != 1:
            raise ValueError(f"cannot broadcast {self.pooled.shape[0]} text encodings to batch {batch}")
        return TextFeatures(self.pooled.expand(batch, -1), self.tokens.expand(batch, -1, -1),
                            self.mask.expand(batch, -1))


class CLIPTowers(nn.Module):
    """open_clip image and text towers that also return token sequences in CLIP's joint space
    (patch tokens and text tokens through the towers' own projections, as OTTER/ClearCLIP use)."""

    def __init__(self, name: str, pretrained: Optional[str] = None, cache_dir: Optional[str] = None,
                 text_tower: str = "clip"):
        super().__init__()
        open_clip = _open_clip()
        clip = create_clip(name, pretrained, cache_dir)
        self.visual = clip.visual
        if hasattr(clip, "text"):  # CustomTextCLIP
            self.text = clip.text
        else:  # CLIP: the text tower's parts live on the model itself
            self.text = nn.ModuleDict({
                "token_embedding": clip.token_embedding, "transformer": clip.transformer,
                "ln_final": clip.ln_final,
            })
            self.text.positional_embedding = clip.positional_embedding
            self.text.text_projection = clip.text_projection
            self.text.register_buffer("attn_mask", clip.attn_mask, persistent=False)
            self._text_pool = clip.text_pool_type
        self.embed_dim = int(open_clip.get_model_config(name)["embed_dim"]) if open_clip.get_model_config(name) \
            else int(clip.visual.output_dim)
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        pp = getattr(clip.visual, "preprocess_cfg", {}) or {}
        self.image_mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.image_std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
        self.tokenizer = open_clip.get_tokenizer(name)
        self.context_length = int(getattr(clip, "context_length", 77))
        self._vit = hasattr(self.visual, "_embeds") and hasattr(self.visual, "_pool")
        del clip
        if text_tower != "clip":  # another tower in the CLIP text tower's place (model/text_towers.py)
            from .text_towers import TEXT_TOWERS

            self.text = TEXT_TOWERS.get(text_tower)(self.embed_dim)
            self.tokenizer = self.text.tokenize
            self.context_length = self.text.context_length

    @staticmethod
    def _project(x: torch.Tensor, proj) -> torch.Tensor:
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Module) else x @ proj

    def encode_image(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) normalised → pooled (B, E), patch tokens (B, N, E)."""
        v = self.visual
        if not self._vit:  # e.g. a timm tower: no patch tokens, the pooled vector stands in
            pooled = v(images)
            return pooled, pooled.unsqueeze(1)
        x = v.transformer(v._embeds(images))  # (B, 1+N, W)
        pooled, tokens = v._pool(x)  # (B, W), (B, N, W)
        if getattr(v, "final_ln_after_pool", False):
            tokens = v.ln_post(tokens)
        return self._project(pooled, v.proj), self._project(tokens, v.proj)

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        return self.tokenizer(texts)  # (B, L) int64

    def encode_text(self, text: torch.Tensor) -> TextFeatures:
        """token ids (B, L) → TextFeatures with pooled (B, E) and tokens (B, L, E)."""
        from open_clip.transformer import text_global_pool

        t = self.text
        if hasattr(t, "tokenize"):  # a tower of model/text_towers.py
            return TextFeatures(*t(text))
        mask = text != 0  # the SimpleTokenizer pads with 0
        if isinstance(t, nn.ModuleDict):
            x = t["token_embedding"](text) + t.positional_embedding  # (B, L, W)
            x = t["transformer"](x, attn_mask=t.attn_mask)
            x = t["ln_final"](x)
            pooled = text_global_pool(x, text, self._text_pool)
            return TextFeatures(self._project(pooled, t.text_projection),
                                self._project(x, t.text_projection), mask)
        old = t.output_tokens
        t.output_tokens = True
        try:
            pooled, tokens = t(text)
        finally:
            t.output_tokens = old
        proj = getattr(t, "text_projection", None)
        return TextFeatures(pooled, self._project(tokens, proj), mask[:, : tokens.shape[1]])


class ProprioEncoder(nn.Module):
    """MLP over joint positions, velocities and (optionally) the recent action history.

    Inputs are standardised with statistics from the training data (buffers saved in the
    checkpoint), so joints measured in radians and grippers in metres weigh alike.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim),
        )
        self.in_dim = in_dim

    @torch.no_grad()
    def set_normalization(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.in_dim or std.numel() != self.in_dim:
            raise ValueError(f"normalisation needs {self.in_dim} values")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, P) → (B, out_dim)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"proprio input has {x.shape[-1]} values, the model expects {self.in_dim}")
        return self.net((x - self.mean) / self.std)
