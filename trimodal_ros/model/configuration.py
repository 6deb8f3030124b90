"""ModelConfig: the architecture of a TriModalModel, next to the model (lerobot's
``configuration_*.py`` beside ``modeling_*.py``). Everything a checkpoint must match lives here;
``__post_init__`` checks it, so a wrong key or value fails on load with the key named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional

from ..interface import ACTION_NAMES, PRIMARY_CAMERA, SAWYER_JOINTS, SIM_STATE_NAMES
from ..schema import ConfigError, one_of, positive

TUNING_MODES = ("full", "frozen", "lora", "bitfit")
PRECISIONS = ("fp32", "bf16", "fp16")  # how a tick may run (accel.Tick); plain data for the parameter table
DEFAULT_FUSION = "weighted_sum"  # the variant used when none is named (node, CLI, configs)
# The keys of model.fusion.FUSIONS as plain data: the launch file and the parameter table offer them
# without importing torch (`ros2 launch` runs under a system Python that has none); fusion.py checks
# that its registry holds exactly these.
FUSION_NAMES = ("concat_mlp", "cross_attention", "early_fusion", "qformer", "weighted_sum")


@dataclass
class ModelConfig:
    clip_model: str = "tiny-vit"        # an open_clip architecture: ours in model/configs or open_clip's
    # the named cameras the model sees, primary first (topic NAME/image_raw); each view goes through
    # the same image tower, and with more than one a learned view embedding and merge join them
    cameras: List[str] = field(default_factory=lambda: [PRIMARY_CAMERA])
    pretrained: Optional[str] = None    # open_clip pretrained tag, local file/folder, or None (random)
    embed_dim: int = 128                # D: the shared image–action–text space
    # clip: the CLIP model's own text tower; wordllama: wordllama's pretrained token embeddings (frozen,
    # in the checkpoint) under a small trained transformer (model/text_towers.py), for wording the
    # training phrasings never used; wordllama_mean: its mean-pooled sentence vector, projected
    text_tower: str = "clip"
    fusion: str = DEFAULT_FUSION        # key of model.fusion.FUSIONS
    adapter: str = "linear"             # key of model.adapters.ADAPTERS (per-modality projection)
    adapter_queries: int = 8            # queries of the q-former adapter
    image_tuning: str = "full"          # full | frozen | lora | bitfit
    text_tuning: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    joint_names: List[str] = field(default_factory=lambda: list(SAWYER_JOINTS))
    use_velocities: bool = True
    action_history: int = 0             # past commanded actions fed to the proprio/action encoder
    proprio_hidden: int = 256
    proprio_input: bool = True          # False: the joints never reach the model (the proprio encoder reads
                                        # zeros): a no-proprioception baseline; the node still gates on them
    action_dim: int = len(ACTION_NAMES)
    chunk: int = 1                      # K future actions predicted per tick
    bins: int = 256
    fusion_heads: int = 4
    fusion_layers: int = 1
    fusion_queries: int = 4             # learned queries of qformer / early_fusion pooling
    head_hidden: int = 256
    action_head: str = "bins"           # key of model.heads.ACTION_HEADS (bins: a free logit per bin)
    # S > 0: the model predicts an S-D simulator state (the first S of /sim/state's SIM_STATE_NAMES:
    # 6 = object and goal positions, 9 = and the hand's) from its image embedding and the action head
    # reads that prediction too; trained by train.state_weight
    state_input: int = 0
    dropout: float = 0.0
    temperature_init: float = 0.07
    temperature_min: float = 0.01       # the learnable τ is clamped to [min, max]
    temperature_max: float = 1.0

    def __post_init__(self) -> None:
        from .adapters import ADAPTERS
        from .fusion import FUSIONS
        from .heads import ACTION_HEADS
        from .text_towers import TEXT_TOWERS

        one_of("fusion", self.fusion, FUSIONS.names())
        one_of("adapter", self.adapter, ADAPTERS.names())
        one_of("text_tower", self.text_tower, ["clip"] + TEXT_TOWERS.names())
        if self.text_tower != "clip" and self.text_tuning != "full":
            raise ConfigError(f"text_tuning {self.text_tuning!r} with text_tower {self.text_tower!r} would freeze "
                              "the tower's untrained layers (its pretrained embeddings are frozen already): use full")
        one_of("image_tuning", self.image_tuning, TUNING_MODES)
        one_of("text_tuning", self.text_tuning, TUNING_MODES)
        one_of("action_head", self.action_head, ACTION_HEADS.names())
        positive(self, "embed_dim", "adapter_queries", "lora_rank", "proprio_hidden", "action_dim",
                 "chunk", "fusion_heads", "fusion_layers", "fusion_queries", "head_hidden")
        if self.embed_dim % self.fusion_heads:
            raise ConfigError(f"embed_dim={self.embed_dim} must be divisible by fusion_heads={self.fusion_heads}")
        if not 2 <= self.bins <= 65536:
            raise ConfigError(f"bins must be in [2, 65536], got {self.bins}")
        if self.state_input < 0:
            raise ConfigError(f"state_input must be >= 0 (0: none), got {self.state_input}")
        if self.state_input > len(SIM_STATE_NAMES):
            raise ConfigError(f"state_input must be <= {len(SIM_STATE_NAMES)} (the recorded {SIM_STATE_NAMES}), "
                              f"got {self.state_input}")
        if self.action_history < 0:
            raise ConfigError(f"action_history must be >= 0, got {self.action_history}")
        if (not isinstance(self.cameras, list) or not self.cameras or len(set(self.cameras)) != len(self.cameras)
                or not all(isinstance(c, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*", c)
                           for c in self.cameras)):
            raise ConfigError(f"cameras must be a non-empty list of distinct ROS names (letters, digits, '_', "
                              f"'/'), primary first: {self.cameras!r}")
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ConfigError(f"joint_names must be a non-empty list of distinct names: {self.joint_names}")
        if not 0 < self.temperature_min <= self.temperature_init <= self.temperature_max:
            raise ConfigError("need 0 < temperature_min <= temperature_init <= temperature_max")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def proprio_dim(self) -> int:
        return proprio_width(len(self.joint_names), self.use_velocities, self.action_history, self.action_dim)


def proprio_width(joints: int, use_velocities: bool, action_history: int, action_dim: int) -> int:
    """Width of the proprio/action encoder's input (``preprocess.proprio_vector``): positions,
    velocities, the last ``action_history`` actions."""
    return joints * (2 if use_velocities else 1) + action_history * action_dim
