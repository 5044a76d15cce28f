"""Evaluators: multi-task detectors trained with a map as auxiliary supervision.

``create_evaluator(name, backbone=..., map_size=..., pretrained=None | "lite0" | FILE)``
builds one; ``list_evaluators()`` names them; ``evaluator_entry(name)`` gives
its registry entry (factory, loss). See :mod:`ffmask.models.evaluators.registry`
for the contract every evaluator keeps, :mod:`.efb4_fpn` for the FoCus
paper's EfficientNet-B4 + FPN, :mod:`.msccnet` for MSCCNet (Miao et al.),
:mod:`.two_stream` for the semantic + noise two-stream model (Kong et al.),
:mod:`.rfm` for RFM (a detector trained with FAM-guided erasing) and
:mod:`.gs` for the guide-space detector.
"""

from ffmask.models.evaluators.registry import (
    EvaluatorEntry,
    OptimizerSpec,
    create_evaluator,
    evaluator_entry,
    is_evaluator,
    list_evaluators,
    register_evaluator,
)
from ffmask.models.evaluators.targets import map_targets

__all__ = ["EvaluatorEntry", "OptimizerSpec", "create_evaluator", "evaluator_entry", "is_evaluator", "list_evaluators",
           "map_targets", "register_evaluator"]
