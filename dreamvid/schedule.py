"""Keyframe schedules for numeric settings (placeholder: plain numbers only)."""
from __future__ import annotations

from typing import Any


def at(value: Any, t: int, fps: float) -> float:
    """The value of a setting at frame t."""
    return float(value)
