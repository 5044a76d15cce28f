"""Validators for run options: a bad value is an OptionError naming its flag."""

from __future__ import annotations

import math

import numpy as np

from ffmask.errors import OptionError


def positive_int(value, flag: str) -> int:
    """``value`` as an int >= 1 (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"{flag} must be an integer, got {value!r}")
    if value < 1:
        raise OptionError(f"{flag} must be >= 1, got {value}")
    return int(value)


def positive_float(value, flag: str) -> float:
    """``value`` as a finite float > 0 (NaN, inf and bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(f"{flag} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise OptionError(f"{flag} must be a finite number > 0, got {value}")
    return float(value)
