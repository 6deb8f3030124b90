"""Small helpers shared by the package and its tests."""

from __future__ import annotations

import os
import re
import time
from typing import Callable, Optional


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


def release_freed_memory() -> None:
    """Hand memory freed by Python back to the OS (glibc's malloc_trim): after a huge message the
    allocator otherwise keeps its pages, and the process's RSS stays up by the message's size."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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


def auto_torch_threads(device, parameters: int, cores: Optional[int] = None) -> int:
    """Intra-op threads for one inference at a time: 1 on a GPU (the CPU only launches kernels) and
    for small models (their ops are too small to split: extra threads only wait and steal the
    cores the executor and DDS need), else all but one core, at most 4."""
    cores = cores or os.cpu_count() or 1
    if str(device).startswith("cuda") or parameters < SMALL_MODEL_PARAMETERS:
        return 1
    return max(1, min(4, cores - 1))


SMALL_MODEL_PARAMETERS = 50_000_000


def set_torch_threads(threads: int, policy=None) -> int:
    """``torch.set_num_threads`` for inference: ``threads`` > 0 as given, 0 by ``auto_torch_threads``."""
    import torch

    if threads <= 0:
        n = sum(p.numel() for p in policy.model.parameters()) if policy is not None else 0
        threads = auto_torch_threads(policy.device if policy is not None else "cpu", n)
    torch.set_num_threads(int(threads))
    return int(threads)
