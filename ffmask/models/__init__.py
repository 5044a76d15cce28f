"""Models: the FoCus map generator and the evaluators that use its maps.

``create_model(name, **cfg)`` builds any registered model; ``list_models()``
names them. Layers live in :mod:`ffmask.models.layers`, checkpoint I/O in
:mod:`ffmask.models.checkpoint`, FoCus and its inference API in
:mod:`ffmask.models.focus` (``load_focus``). Evaluators (multi-task detectors
trained on a map) have their own registry in :mod:`ffmask.models.evaluators`
(``create_evaluator``), and are models too; offline ImageNet weights for timm
backbones: :mod:`ffmask.models.pretrained`.
"""

from ffmask.models.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
