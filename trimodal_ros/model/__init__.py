"""The tri-modal model: pure PyTorch, importable without rclpy.

Names are resolved lazily, so ``from trimodal_ros.model.configuration import ModelConfig`` (or a
``--help``) does not import torch.
"""

import importlib

_EXPORTS = {
    "ActionTokenizer": ".action_tokenizer", "ADAPTERS": ".adapters", "FUSIONS": ".fusion",
    "CONTRASTIVE_LOSSES": ".losses", "clip_loss": ".losses", "joint_infonce": ".losses",
    "pairwise_infonce": ".losses", "TriModalModel": ".trimodal", "TriModalOutput": ".trimodal",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
