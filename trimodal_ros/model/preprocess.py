"""The one preprocessing path shared by training, offline evaluation and the live node."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def images_to_tensor(frames, size: int, mean: Sequence[float], std: Sequence[float],
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) or (H, W, 3) → normalised float (B, 3, size, size); views
    (B, V, H, W, 3) of V cameras → (B, V, 3, size, size).

    Resizes with antialiased bilinear interpolation (no crop: the robot camera's whole view
    matters), then applies the CLIP mean/std. Runs on ``device`` so the node can do it on GPU.
    """
    if isinstance(frames, np.ndarray):  # torch wants a writable buffer (a decoded JPEG's is not)
        frames = np.require(frames, requirements=("C", "W"))
    x = torch.as_tensor(frames)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() == 5 and x.shape[-1] == 3:  # (B, V, H, W, 3): V camera views per sample
        b, v = x.shape[:2]
        return images_to_tensor(x.reshape(b * v, *x.shape[2:]), size, mean, std, device).unflatten(0, (b, v))
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (B, H, W, 3) or (B, V, H, W, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {x.dtype}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def proprio_vector(positions, velocities=None, action_history=None, use_velocities: bool = True,
                   history: int = 0, action_dim: int = 4) -> np.ndarray:
    """Joint positions [+ velocities] [+ the last ``history`` actions, oldest first] → (P,) float32.

    Missing history (the first steps of an episode) is zero-filled, as during training.
    """
    parts = [np.asarray(positions, dtype=np.float32).reshape(-1)]
    if use_velocities:
        v = np.zeros_like(parts[0]) if velocities is None else np.asarray(velocities, np.float32).reshape(-1)
        parts.append(v)
    if history:
        h = np.zeros((history, action_dim), np.float32)
        if action_history is not None and len(action_history):
            a = np.asarray(action_history, np.float32).reshape(-1, action_dim)[-history:]
            h[history - len(a):] = a
        parts.append(h.reshape(-1))
    return np.concatenate(parts)


def random_shift(images: torch.Tensor, pad: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DrQ augmentation (Kostrikov et al. 2020), training batches only: each image of a normalised
    (B, C, H, W) batch moves by its own random offset of up to ±``pad`` pixels, the uncovered
    border repeating the edge pixels. Same shape; ``pad`` 0 returns the batch as it is."""
    if pad <= 0:
        return images
    if images.dim() == 5:  # (B, V, C, H, W): each camera view shifts on its own
        return random_shift(images.flatten(0, 1), pad, generator).unflatten(0, images.shape[:2])
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (B, C, H+2p, W+2p)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
