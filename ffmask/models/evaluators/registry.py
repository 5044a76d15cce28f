"""The evaluator registry: ``@register_evaluator(name, loss=...)``, ``create_evaluator(name, ...)``.

An *evaluator* is a multi-task forgery detector trained with a map as
auxiliary supervision, so that its detection scores judge the map. Every
evaluator

- is an ``nn.Module`` built by a factory taking keyword configuration
  (stored verbatim in its checkpoints), whose ``forward(x)`` takes float
  images ``(N, 3, img_size, img_size)`` in [0, 1] and returns a dict with
  ``"logit"`` (N, 2), class 0 real, 1 fake, and ``"map"`` (N, 1, M, M)
  map logits (a model predicting several maps adds ``"maps"``);
- exposes ``img_size``, ``map_size`` and ``backbone`` (the timm
  ``features_only`` module that pretrained weights go into);
- carries its training objective as a property of its registry entry
  (:class:`EvaluatorEntry`), so the training loop never tests model names.

Evaluators are also registered as models (:func:`ffmask.models.create_model`),
so :func:`ffmask.models.checkpoint.load_checkpoint` rebuilds them from a
checkpoint's JSON alone.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from ffmask.models.registry import register_model

# Modules whose import registers evaluators (imported on first use).
_EVALUATOR_MODULES = ("ffmask.models.evaluators.efb4_fpn",)

# A loss: loss(outputs, labels (N,) int64, map_target (N, 1, M, M) float or None, **loss_kwargs)
#   -> (total scalar tensor, {part name: detached scalar}).
LossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class EvaluatorEntry:
    """One registered evaluator.

    name : registry (and CLI) name.
    factory : ``factory(**cfg) -> nn.Module``.
    loss : the training objective (see ``LossFn`` above).
    loss_kwargs : fixed keyword arguments of ``loss`` (e.g. the map weight).
    description : one line for ``--help`` and reports.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    loss: LossFn
    loss_kwargs: Mapping[str, float]
    description: str = ""


_EVALUATORS: dict[str, EvaluatorEntry] = {}


def register_evaluator(name: str, *, loss: LossFn, loss_kwargs: Optional[Mapping[str, float]] = None,
                       description: str = "") -> Callable[[Callable], Callable]:
    """Decorator registering ``factory(**cfg) -> nn.Module`` as evaluator ``name`` with its ``loss``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"evaluator name must be a non-empty string, got {name!r}")
    if not callable(loss):
        raise ValueError(f"evaluator {name!r}: loss must be callable")

    def add(factory: Callable) -> Callable:
        existing = _EVALUATORS.get(name)
        if existing is not None and existing.factory is not factory:
            raise ValueError(f"evaluator {name!r} is already registered")
        _EVALUATORS[name] = EvaluatorEntry(name, factory, loss, dict(loss_kwargs or {}), description)
        register_model(name)(factory)
        return factory

    return add


def _load_builtin() -> None:
    for module in _EVALUATOR_MODULES:
        importlib.import_module(module)


def list_evaluators(pattern: str = "*") -> list[str]:
    """Sorted names of the registered evaluators matching the shell ``pattern``."""
    _load_builtin()
    return sorted(n for n in _EVALUATORS if fnmatch.fnmatchcase(n, pattern))


def is_evaluator(name: str) -> bool:
    """True if ``name`` is a registered evaluator."""
    _load_builtin()
    return name in _EVALUATORS


def evaluator_entry(name: str) -> EvaluatorEntry:
    """The registry entry of ``name``; ValueError listing the known names otherwise."""
    _load_builtin()
    try:
        return _EVALUATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown evaluator {name!r}; known evaluators: {', '.join(sorted(_EVALUATORS))}") from None


def create_evaluator(name: str, *, pretrained=None, **cfg) -> torch.nn.Module:
    """Build evaluator ``name`` with keyword configuration ``cfg`` (e.g. ``backbone=``, ``map_size=``).

    pretrained : None (random initialisation), ``"lite0"`` or a local
        safetensors / weights-only file of ImageNet weights for the
        backbone (:func:`ffmask.models.pretrained.load_pretrained`); what was
        loaded is left in ``model.pretrained_report``. Nothing is downloaded.
    """
    entry = evaluator_entry(name)
    model = entry.factory(**cfg)
    model.pretrained_report = None
    if pretrained is not None:
        from ffmask.models.pretrained import load_pretrained

        model.pretrained_report = load_pretrained(model.backbone, pretrained)
    return model
