"""Dataclass configs, loaded from the YAML files in ``config/`` and checked on load.

A YAML file has up to two sections, ``model:`` and ``train:``; every key must be a field of the
matching dataclass. A wrong key or value raises ``ConfigError`` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

SAWYER_JOINTS = [
    "right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6",
    "r_close", "l_close",
]
TUNING_MODES = ("full", "frozen", "lora", "bitfit")

PACKAGE_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A config file or dict that does not describe a valid model or training run."""


def _one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {sorted(choices)}")


def _positive(obj, *names: str) -> None:
    for n in names:
        if not getattr(obj, n) > 0:
            raise ConfigError(f"{n} must be > 0, got {getattr(obj, n)!r}")


@dataclass
class ModelConfig:
    """Architecture of a TriModalModel. Everything a checkpoint must match lives here."""

    clip_model: str = "tiny-vit"        # an open_clip architecture: ours in model/configs or open_clip's
    pretrained: Optional[str] = None    # open_clip pretrained tag, local file/folder, or None (random)
    embed_dim: int = 128                # D: the shared image–action–text space
    fusion: str = "weighted_sum"        # key of model.fusion.FUSIONS
    adapter: str = "linear"             # key of model.adapters.ADAPTERS (per-modality projection)
    adapter_queries: int = 8            # queries of the q-former adapter
    image_tuning: str = "full"          # full | frozen | lora | bitfit
    text_tuning: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    joint_names: List[str] = field(default_factory=lambda: list(SAWYER_JOINTS))
    use_velocities: bool = True
    action_history: int = 0             # past actions fed to the proprio/action encoder
    proprio_hidden: int = 256
    action_dim: int = 4
    chunk: int = 1                      # K future actions predicted per tick
    bins: int = 256
    fusion_heads: int = 4
    fusion_layers: int = 1
    fusion_queries: int = 4             # learned queries of qformer / early_fusion pooling
    head_hidden: int = 256
    dropout: float = 0.0
    temperature_init: float = 0.07
    temperature_min: float = 0.01       # the learnable τ is clamped to [min, max]
    temperature_max: float = 1.0

    def __post_init__(self) -> None:
        from .model.adapters import ADAPTERS
        from .model.fusion import FUSIONS

        _one_of("fusion", self.fusion, FUSIONS.names())
        _one_of("adapter", self.adapter, ADAPTERS.names())
        _one_of("image_tuning", self.image_tuning, TUNING_MODES)
        _one_of("text_tuning", self.text_tuning, TUNING_MODES)
        _positive(self, "embed_dim", "adapter_queries", "lora_rank", "proprio_hidden", "action_dim",
                  "chunk", "fusion_heads", "fusion_layers", "fusion_queries", "head_hidden")
        if self.embed_dim % self.fusion_heads:
            raise ConfigError(f"embed_dim={self.embed_dim} must be divisible by fusion_heads={self.fusion_heads}")
        if not 2 <= self.bins <= 65536:
            raise ConfigError(f"bins must be in [2, 65536], got {self.bins}")
        if self.action_history < 0:
            raise ConfigError(f"action_history must be >= 0, got {self.action_history}")
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ConfigError(f"joint_names must be a non-empty list of distinct names: {self.joint_names}")
        if not 0 < self.temperature_min <= self.temperature_init <= self.temperature_max:
            raise ConfigError("need 0 < temperature_min <= temperature_init <= temperature_max")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def proprio_dim(self) -> int:
        """Width of the proprio/action encoder's input: positions, velocities, action history."""
        n = len(self.joint_names)
        return n * (2 if self.use_velocities else 1) + self.action_history * self.action_dim


@dataclass
class TrainConfig:
    """Optimisation of one run. Not part of what a checkpoint must match."""

    loss: str = "pairwise"              # key of model.losses.CONTRASTIVE_LOSSES
    contrastive_weight: float = 1.0
    uncertainty_weighting: bool = False
    batch_size: int = 32
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    amp: bool = True                    # bf16 autocast on CUDA; ignored on CPU
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0                 # 0: only at the end
    ckpt_every: int = 200
    num_workers: int = 0
    instructions: str = "train"         # bag: the recorded command; train: a fresh train paraphrase per sample

    def __post_init__(self) -> None:
        from .model.losses import CONTRASTIVE_LOSSES

        _one_of("loss", self.loss, CONTRASTIVE_LOSSES.names())
        _one_of("instructions", self.instructions, ("bag", "train"))
        _positive(self, "batch_size", "steps", "lr", "log_every", "ckpt_every")
        for n in ("contrastive_weight", "weight_decay", "warmup_steps", "grad_clip", "eval_every",
                  "num_workers"):
            if getattr(self, n) < 0:
                raise ConfigError(f"{n} must be >= 0, got {getattr(self, n)!r}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    for k, v in data.items():
        f = names[k]
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if v is not None and expected in ("int", "float", "bool", "str"):
            ok = {
                "int": isinstance(v, int) and not isinstance(v, bool),
                "float": isinstance(v, (int, float)) and not isinstance(v, bool),
                "bool": isinstance(v, bool),
                "str": isinstance(v, str),
            }[expected]
            if not ok:
                raise ConfigError(f"{where}.{k}: expected {expected}, got {v!r}")
        if expected.startswith("List") and not isinstance(v, list):
            raise ConfigError(f"{where}.{k}: expected a list, got {v!r}")
    try:
        return cls(**data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def config_from_dict(data: Dict[str, Any], where: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'model' and 'train', got {type(data).__name__}")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; valid sections: ['model', 'train']")
    return Config(model=_build(ModelConfig, data.get("model"), f"{where}: model"),
                  train=_build(TrainConfig, data.get("train"), f"{where}: train"))


def resolve_config_path(path_or_name: Union[str, Path]) -> Path:
    """A path, or a bare variant name (``qformer``) looked up in the package's config/ folder."""
    p = Path(path_or_name)
    if p.exists():
        return p
    for base in (PACKAGE_DIR.parent / "config", _share_config_dir()):
        if base is not None and (base / f"{path_or_name}.yaml").exists():
            return base / f"{path_or_name}.yaml"
    raise ConfigError(f"config {str(path_or_name)!r} not found (a path, or one of {config_names()})")


def _share_config_dir() -> Optional[Path]:
    try:  # installed by colcon: share/trimodal_ros/config
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("trimodal_ros")) / "config"
    except Exception:
        return None


def config_names() -> List[str]:
    base = PACKAGE_DIR.parent / "config"
    return sorted(p.stem for p in base.glob("*.yaml")) if base.exists() else []


def load_config(path_or_name: Union[str, Path], **model_overrides) -> Config:
    """Load and validate a YAML config; ``model_overrides`` (e.g. fusion=...) win over the file."""
    path = resolve_config_path(path_or_name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if model_overrides:
        data = dict(data)
        data["model"] = {**(data.get("model") or {}), **{k: v for k, v in model_overrides.items() if v is not None}}
    return config_from_dict(data, where=str(path))
