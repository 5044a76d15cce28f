"""Models: the FoCus map generator and (later) the evaluators that use its maps.

``create_model(name, **cfg)`` builds any registered model; ``list_models()``
names them. Layers live in :mod:`ffmask.models.layers`, checkpoint I/O in
:mod:`ffmask.models.checkpoint`, FoCus and its inference API in
:mod:`ffmask.models.focus` (``load_focus``).
"""

from ffmask.models.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
