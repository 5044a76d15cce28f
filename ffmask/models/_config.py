"""Checks shared by the models' configuration dataclasses."""

from __future__ import annotations


def normalise_mean_std(config) -> None:
    """Validate a config's optional ``mean``/``std`` input normalisation in place.

    Each is None or 3 numbers (``std`` > 0), stored back as a tuple of floats
    (frozen dataclasses included). Raises ValueError otherwise.
    """
    for name in ("mean", "std"):
        value = getattr(config, name)
        if value is None:
            continue
        value = tuple(float(v) for v in value)
        if len(value) != 3 or (name == "std" and min(value) <= 0):
            raise ValueError(f"{name} must be 3 numbers{' > 0' if name == 'std' else ''}, got {value!r}")
        object.__setattr__(config, name, value)
