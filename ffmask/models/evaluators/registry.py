"""The evaluator registry: ``@register_evaluator(name, loss=...)``, ``create_evaluator(name, ...)``.

An *evaluator* is a multi-task forgery detector trained with a map as
auxiliary supervision, so that its detection scores judge the map. Every
evaluator

- is an ``nn.Module`` built by a factory taking keyword configuration
  (stored verbatim in its checkpoints), whose ``forward(x)`` takes float
  images ``(N, 3, img_size, img_size)`` in [0, 1] and returns a dict with
  ``"logit"`` (N, 2), class 0 real, 1 fake, and (unless its entry says
  ``map_head=False``) ``"map"`` (N, 1, M, M) map logits; further outputs
  (auxiliary maps, noise maps, features) are extra keys its loss uses;
- exposes ``img_size``, ``map_size`` (models with a map) and ``backbone``
  (the timm ``features_only`` module that pretrained weights go into);
- carries its training objective, the extra batch fields it needs, its
  optimizer, augmentation and data-derived configuration as properties of
  its registry entry (:class:`EvaluatorEntry`), so the training loop never
  tests model names.

Evaluators are also registered as models (:func:`ffmask.models.create_model`),
so :func:`ffmask.models.checkpoint.load_checkpoint` rebuilds them from a
checkpoint's JSON alone.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ffmask.models.registry import register_model

# Modules whose import registers evaluators (imported on first use).
_EVALUATOR_MODULES = ("ffmask.models.evaluators.efb4_fpn", "ffmask.models.evaluators.msccnet",
                      "ffmask.models.evaluators.two_stream", "ffmask.models.evaluators.rfm",
                      "ffmask.models.evaluators.gs")

# A loss: loss(model, outputs, batch, **loss_kwargs) -> (total scalar tensor, {part name: detached scalar}).
# ``batch`` is the training batch (see :data:`BATCH_FIELDS`); ``model`` is passed so that stateful
# objectives (a feature queue kept as a module buffer, checkpointed with the weights) work.
LossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
# augment(model, batch, generator) -> batch, run on each training batch before the forward.
AugmentFn = Callable[[torch.nn.Module, dict, torch.Generator], dict]
# configure(face_table, train_indices) -> config keys derived from the training data.
ConfigureFn = Callable[[Mapping[str, Any], Any], dict]

# Fields of a training batch (dict of tensors, B faces):
#   "image"  uint8 (B, 3, S, S) face crops as stored (S: the shard's size); the loop turns it into
#            float32 (B, 3, img_size, img_size) in [0, 1] before ``augment`` and the forward;
#   "label"  int64 (B,) 0 real, 1 fake;
#   "target" float32 (B, 1, M, M) map target (only when a map supervises the run);
#   "noise"  float32 (B, 3, S, S) the shard's noise residual (only for entries whose ``inputs`` name it);
#   "domain" int64 (B,) 0 real, k >= 1 the k-th forgery domain = manipulation, in sorted order of the
#            training fakes' manipulation names (only for entries whose ``inputs`` name it).
BATCH_FIELDS = ("image", "label", "target", "noise", "domain")
EXTRA_INPUTS = ("noise", "domain")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly")


@dataclass(frozen=True)
class OptimizerSpec:
    """An evaluator's optimizer and learning-rate schedule (its paper's, as far as a run allows).

    name : "adamw", "adam" or "sgd".
    lr, weight_decay : defaults of a run (``EvaluatorTrainArgs.lr`` / ``weight_decay`` override them).
    momentum : SGD's (ignored by Adam/AdamW).
    schedule : "cosine" (decay to zero over the run) or "poly" ((1 - t / T) ** power).
    power : the poly schedule's exponent.
    """

    name: str = "adamw"
    lr: float = 5e-4
    weight_decay: float = 1e-4
    momentum: float = 0.0
    schedule: str = "cosine"
    power: float = 0.9

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for key, ok in (("lr", self.lr > 0), ("weight_decay", self.weight_decay >= 0),
                        ("momentum", 0 <= self.momentum < 1), ("power", self.power > 0)):
            if not ok:
                raise ValueError(f"optimizer {key} out of range: {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvaluatorEntry:
    """One registered evaluator.

    name : registry (and CLI) name.
    factory : ``factory(**cfg) -> nn.Module``.
    loss : the training objective, ``loss(model, outputs, batch, **loss_kwargs) -> (total, parts)``;
        ``parts`` holds detached scalars including "total".
    loss_kwargs : fixed keyword arguments of ``loss`` (e.g. the map weight).
    description : one line for ``--help`` and reports.
    inputs : extra batch fields the loss needs, among ``"noise"`` and ``"domain"``.
    optimizer : the default :class:`OptimizerSpec`.
    augment : ``augment(model, batch, generator) -> batch`` applied to every training batch after the
        flips, before the forward (the batch's "image" is then float (B, 3, img_size, img_size)); the
        generator is seeded from (seed, step) so a resumed run repeats it. Called outside autocast
        with the model in training mode; it must leave the mode as it found it.
    map_head : False for models predicting no map: a run then takes no supervising map and
        prediction/evaluation report no pixel scores.
    configure : ``configure(face_table, train_indices) -> dict`` of config keys derived from the
        training data, merged into the model config before the model is built.
    paper_map : the map (or maps, comma-separated) the paper supervised with, for docs and experiments.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    loss: LossFn
    loss_kwargs: Mapping[str, float]
    description: str = ""
    inputs: tuple[str, ...] = ()
    optimizer: OptimizerSpec = OptimizerSpec()
    augment: Optional[AugmentFn] = None
    map_head: bool = True
    configure: Optional[ConfigureFn] = None
    paper_map: Optional[str] = None


_EVALUATORS: dict[str, EvaluatorEntry] = {}


def register_evaluator(name: str, *, loss: LossFn, loss_kwargs: Optional[Mapping[str, Any]] = None,
                       description: str = "", inputs: Sequence[str] = (),
                       optimizer: Optional[OptimizerSpec] = None, augment: Optional[AugmentFn] = None,
                       map_head: bool = True, configure: Optional[ConfigureFn] = None,
                       paper_map: Optional[str] = None) -> Callable[[Callable], Callable]:
    """Decorator registering ``factory(**cfg) -> nn.Module`` as evaluator ``name``; see :class:`EvaluatorEntry`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"evaluator name must be a non-empty string, got {name!r}")
    if not callable(loss):
        raise ValueError(f"evaluator {name!r}: loss must be callable")
    inputs = tuple(inputs)
    unknown = sorted(set(inputs) - set(EXTRA_INPUTS))
    if unknown or len(set(inputs)) != len(inputs):
        raise ValueError(f"evaluator {name!r}: inputs must be distinct names among {', '.join(EXTRA_INPUTS)}, "
                         f"got {list(inputs)}")
    optimizer = OptimizerSpec() if optimizer is None else optimizer
    if not isinstance(optimizer, OptimizerSpec):
        raise ValueError(f"evaluator {name!r}: optimizer must be an OptimizerSpec, got {type(optimizer).__name__}")
    for key, fn in (("augment", augment), ("configure", configure)):
        if fn is not None and not callable(fn):
            raise ValueError(f"evaluator {name!r}: {key} must be callable or None")
    if not isinstance(map_head, bool):
        raise ValueError(f"evaluator {name!r}: map_head must be True or False, got {map_head!r}")
    if paper_map is not None and (not isinstance(paper_map, str) or not paper_map):
        raise ValueError(f"evaluator {name!r}: paper_map must be a map name or None, got {paper_map!r}")

    def add(factory: Callable) -> Callable:
        existing = _EVALUATORS.get(name)
        if existing is not None and existing.factory is not factory:
            raise ValueError(f"evaluator {name!r} is already registered")
        _EVALUATORS[name] = EvaluatorEntry(name, factory, loss, dict(loss_kwargs or {}), description, inputs,
                                           optimizer, augment, map_head, configure, paper_map)
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
