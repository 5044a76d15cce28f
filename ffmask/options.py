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


def usable_out_dir(path, flag: str = "--out"):
    """``path`` as a Path when it is, or could be made, a writable directory.

    Nothing is created: a command checks its ``--out`` with this before a
    long computation and creates it afterwards. An existing non-directory,
    a regular file among its parents, or a parent it may not write (read-only
    file system, permissions) is an :class:`~ffmask.errors.OutputError`.
    """
    import errno
    import os
    from pathlib import Path

    from ffmask.errors import OutputError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{flag} {out} exists and is not a directory")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"cannot create {flag} {out}: {existing} is a regular file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES).lower()
        raise OutputError(f"cannot write {flag} {out}: {reason} ({existing})")
    return out
