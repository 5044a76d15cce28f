"""What the models' configuration dataclasses share: field checks, to and from plain dicts."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


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


def check_int(name: str, value, low: int) -> None:
    """ValueError unless ``value`` is an integer (not a bool) >= ``low``; ``name`` is the field's."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_backbone_name(value) -> None:
    """ValueError unless ``value`` is a non-empty string (a timm model name)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"backbone must be a timm model name, got {value!r}")


def check_rate(name: str, value) -> None:
    """ValueError unless 0 <= ``value`` < 1 (a dropout rate); ``name`` is the field's."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


class ModelConfig:
    """Mixin of the models' config dataclasses, which checkpoints store verbatim: to and from plain dicts.

    A subclass names its model in ``model_name`` (a class attribute, not a
    field) for the messages.
    """

    model_name = "model"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the fields in order, tuples (nested ones too) as lists."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]):
        """``cls(**cfg)``, the inverse of :meth:`to_dict`; keys that are none of its fields are one ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown {cls.model_name} config keys: {', '.join(unknown)}")
        return cls(**dict(cfg))
