"""The tri-modal model: pure PyTorch, importable without rclpy."""

from .action_tokenizer import ActionTokenizer
from .adapters import ADAPTERS
from .fusion import FUSIONS
from .losses import CONTRASTIVE_LOSSES, clip_loss, joint_infonce, pairwise_infonce
from .trimodal import TriModalModel, TriModalOutput

__all__ = ["ActionTokenizer", "ADAPTERS", "FUSIONS", "CONTRASTIVE_LOSSES", "clip_loss", "joint_infonce",
           "pairwise_infonce", "TriModalModel", "TriModalOutput"]
