"""Checkpoints: written atomically, carrying config, variant, tokenizer bounds and version, and
checked on load so a checkpoint for another variant gives a clear error instead of garbage.

Loading never executes code from the file: ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists and dicts only), so a ``.pt`` handed to a robot cannot run anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from . import __version__
from .config import Config, config_from_dict
from .io import atomic_write
from .model.action_tokenizer import ActionTokenizer
from .model.trimodal import TriModalModel
from .schema import ConfigError

FORMAT = "trimodal_ros.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or for another variant/config."""


def atomic_save(obj: Any, path: Union[str, Path]) -> Path:
    """torch.save through ``atomic_write``: a crash mid-write leaves the previous file intact."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path, model: TriModalModel, cfg: Config, tokenizer: ActionTokenizer,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    payload = {
        "format": FORMAT,
        "version": __version__,
        "fusion": cfg.model.fusion,
        "config": cfg.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "model": model.state_dict(),
        **(extra or {}),
    }
    return atomic_save(payload, path)


def read_checkpoint(path, mmap: bool = False) -> Dict[str, Any]:
    """The checkpoint's dict, checked; ``mmap``: tensors are read from the file when used (one part of
    a checkpoint whose model is loaded elsewhere)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # also a pickle that asks to run code: weights_only refuses it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt, not a checkpoint, or holds objects other than "
                              f"tensors and plain data (refused: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a trimodal_ros checkpoint (format {FORMAT!r})")
    return ckpt


def load_checkpoint(path, expect: Optional[Config] = None, fusion: Optional[str] = None,
                    device: Union[str, torch.device] = "cpu",
                    payload: Optional[Dict[str, Any]] = None) -> Tuple[TriModalModel, ActionTokenizer, Config]:
    """Rebuild the model a checkpoint holds. ``fusion`` or ``expect`` (the config the caller was
    launched with) must match the checkpoint's, else CheckpointError names both. ``payload``: the
    file's ``read_checkpoint`` already, for a caller that reads more of it."""
    ckpt = read_checkpoint(path) if payload is None else payload
    try:
        cfg = config_from_dict(ckpt.get("config"), where=f"{path}: config", retired_ok=True)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    if fusion is not None and fusion != cfg.model.fusion:
        raise CheckpointError(f"checkpoint {path} is for fusion {cfg.model.fusion!r}, but {fusion!r} was asked for")
    if expect is not None and expect.model != cfg.model:
        diff = {k: (getattr(expect.model, k), getattr(cfg.model, k)) for k in vars(cfg.model)
                if getattr(expect.model, k) != getattr(cfg.model, k)}
        raise CheckpointError(f"checkpoint {path} does not match the config: (asked, checkpoint) = {diff}")
    # The checkpoint holds every weight: never fetch the pretrained towers again.
    model = TriModalModel(dataclasses.replace(cfg.model, pretrained=None))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} weights do not fit its own config: {e}") from None
    return model.to(device), ActionTokenizer.from_dict(ckpt["tokenizer"]), cfg
