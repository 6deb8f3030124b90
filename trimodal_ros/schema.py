"""Checked dataclasses: the one error type and the helpers every config dataclass uses.

A leaf module (no torch, no package imports), so ``model/``, ``train/`` and ``config.py`` can all
build on it without an import arrow running back up.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


class ConfigError(ValueError):
    """A config file, dict or parameter that does not describe something valid."""


def one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {sorted(choices)}")


def positive(obj, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{n} must be a finite number > 0, got {v!r}")


def non_negative(obj, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"{n} must be a finite number >= 0, got {v!r}")


_SCALARS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def build(cls, data: Any, where: str):
    """``cls(**data)`` with every key and scalar type checked first; errors name ``where``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    for k, v in data.items():
        t = fields[k].type if isinstance(fields[k].type, str) else getattr(fields[k].type, "__name__", "")
        if v is not None and t in _SCALARS and not _SCALARS[t](v):
            raise ConfigError(f"{where}.{k}: expected {t}, got {v!r}")
        if t.startswith("List") and not isinstance(v, list):
            raise ConfigError(f"{where}.{k}: expected a list, got {v!r}")
        if t.startswith("Optional[List") and v is not None and not isinstance(v, list):
            raise ConfigError(f"{where}.{k}: expected a list or null, got {v!r}")
    try:
        return cls(**data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
