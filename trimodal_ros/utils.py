"""Small helpers shared by the package and its tests."""

from __future__ import annotations

import re
import time
from typing import Callable


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, every: float = 0.02) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` seconds pass; returns its last value.

    DDS discovery and message delivery have no completion event to wait on, so graph-level waits
    (a subscriber appeared, N messages arrived) poll.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())


def pick_device(device: str = "auto"):
    """'auto' → cuda when torch sees a GPU, else cpu; 'cpu', 'cuda', 'cuda:N' as given. A bad name,
    or cuda without a GPU, is a clear error rather than a crash at the first tensor."""
    import torch

    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device} asked for, but torch sees no CUDA device")
    return torch.device(device)
