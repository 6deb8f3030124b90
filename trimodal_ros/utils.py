"""Small helpers shared by the package and its tests."""

from __future__ import annotations

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
