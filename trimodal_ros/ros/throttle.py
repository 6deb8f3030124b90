"""Rate-limited logging for nodes: bad input at 30 Hz must not flood the log (counters keep the
exact numbers; the log line says how many so far)."""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional


class Throttle:
    """``throttle(kind, message, level, every)``: at most one line per ``kind`` every ``every`` s."""

    def __init__(self, logger, count: Callable[[str], Optional[int]] = lambda kind: None):
        self._logger, self._count = logger, count
        self._last: Dict[str, float] = {}

    def __call__(self, kind: str, message: str, level: str = "warning", every: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < every:
            return
        self._last[kind] = now
        n = self._count(kind)
        text = message + (f" [{kind}: {n} so far]" if n is not None else "")
        # one call site per severity: rclpy refuses a call site whose severity changes between calls
        if level == "info":
            self._logger.info(text)
        elif level == "error":
            self._logger.error(text)
        else:
            self._logger.warning(text)
