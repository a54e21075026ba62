"""Checks of option values shared by several modules; each failure is a ConfigurationError."""

from __future__ import annotations

import math
from typing import Any

from .exceptions import ConfigurationError


def is_seconds(value: Any, *, allow_zero: bool = False) -> bool:
    """True for a finite int or float > 0 (>= 0 with ``allow_zero``); never for a bool."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )


def checked_seconds(value: Any, name: str) -> float:
    """``value`` as a float if it is a number of seconds >= 0, else ConfigurationError."""
    if not is_seconds(value, allow_zero=True):
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r:.40}")
    return float(value)
