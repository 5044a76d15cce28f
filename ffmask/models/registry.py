"""A timm-style model registry: ``create_model(name, **cfg)`` and ``list_models()``.

A model module registers a factory with :func:`register_model`; the factory
takes keyword configuration and returns an ``nn.Module``. Checkpoints store
the registry name and the configuration, so a model can be rebuilt from its
JSON alone.
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import Callable

_REGISTRY: dict[str, Callable] = {}

# Modules whose import registers models; imported on first use so that
# ``import ffmask.models`` stays light.
_MODEL_MODULES = ("ffmask.models.focus", "ffmask.models.evaluators")


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn(**cfg) -> nn.Module`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def add(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return add


def _load_builtin() -> None:
    for module in _MODEL_MODULES:
        importlib.import_module(module)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell ``pattern``."""
    _load_builtin()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, **cfg):
    """Build the registered model ``name`` with keyword configuration ``cfg``.

    Raises ValueError for an unknown name (listing the known ones) or a bad
    configuration.
    """
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None
    return factory(**cfg)


def is_model(name: str) -> bool:
    """True if ``name`` is a registered model."""
    _load_builtin()
    return name in _REGISTRY
