"""The model as a policy: frame + joints + instruction → a chunk of continuous actions.

Pure torch/numpy (no rclpy): the in-process rollout uses it directly, and it holds the one
definition of the action history that the proprio encoder sees (the actions actually executed,
oldest first, zero-filled at the start of an episode, reset when the instruction changes).
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np
import torch

from ..model.preprocess import proprio_vector


class ModelPolicy:
    def __init__(self, model, tokenizer, cfg):
        self.model, self.tok, self.mc = model.eval(), tokenizer, cfg.model
        self.history: deque = deque(maxlen=max(1, self.mc.action_history))
        self._text = None
        self.instruction: Optional[str] = None

    def reset(self, instruction: str) -> None:
        with torch.inference_mode():
            self._text = self.model.encode_instructions([instruction])  # cached for the episode
        self.instruction = instruction
        self.history.clear()

    def proprio(self, positions, velocities) -> np.ndarray:
        return proprio_vector(positions, velocities, list(self.history), self.mc.use_velocities,
                              self.mc.action_history, self.mc.action_dim)

    @torch.inference_mode()
    def act(self, frame: np.ndarray, positions, velocities) -> np.ndarray:
        """One tick: uint8 (H, W, 3) frame → decoded action chunk (K, A)."""
        if self._text is None:
            raise RuntimeError("call reset(instruction) first")
        p = torch.as_tensor(self.proprio(positions, velocities), device=self.model.device).unsqueeze(0)
        out = self.model(self.model.preprocess(frame[None]), p, text=self._text)
        return self.tok.decode(out.tokens()[0].cpu().numpy())

    def executed(self, action) -> None:
        """Record an action the robot executed (feeds the next ticks' action history)."""
        if self.mc.action_history:
            self.history.append(np.asarray(action, np.float32))


def build_policy(checkpoint: str = "", fusion: Optional[str] = None, config: str = "", device: str = "cpu",
                 seed: int = 0) -> "ModelPolicy":
    """The policy vla_node would run with the same parameters (``load_for_inference``), so an
    in-process rollout and a rollout through vla_node can be compared step by step."""
    from ..model.checkpoint import load_for_inference

    model, tok, cfg, _ = load_for_inference(checkpoint, fusion, config, device, seed)
    return ModelPolicy(model, tok, cfg)
