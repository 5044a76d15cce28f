"""FoCus as the model-backed target method ``focus`` (see :mod:`ffmask.targets.registry`).

The registry entry points here lazily, so importing :mod:`ffmask.targets`
never imports torch. The model is loaded once per worker process
(:func:`load_for_run` is cached) and runs on batches of faces spanning the
videos of a task; the parent process only checks the checkpoint
(:func:`check_checkpoint`), it never builds the model.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

__all__ = ["check_checkpoint", "focus_annotator", "focus_batch", "load_for_run"]


@functools.lru_cache(maxsize=2)
def focus_annotator(checkpoint: Optional[str], device: Optional[str]):
    """The :class:`~ffmask.models.focus.FocusAnnotator` of ``checkpoint``, loaded once per process."""
    from ffmask.models.focus import load_focus

    return load_focus(checkpoint, device=device)


def load_for_run(options):
    """The FoCus annotator of a run (``options.checkpoint_for("focus")``, default the bundled one; ``options.device``)."""
    return focus_annotator(options.checkpoint_for("focus"), getattr(options, "device", None))


def focus_batch(annotator, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """FoCus maps of a batch of faces at the model's token grid.

    Parameters
    ----------
    annotator : FocusAnnotator
    images : uint8 (N, S, S, 3) RGB crops.
    labels : int (N,): 1 fake (a_fus), 0 real (zeros), -1 unknown (a'_fus).

    Returns
    -------
    maps : float32 (N, g, g) in [0, 1], g the model's grid (14 at 224 input);
        the shard stores the grid and readers upsample it bilinearly to S.
    extras : {"focus_prob": float32 (N,)} the fused fake probability.
    """
    maps, probs = annotator(images, labels, grid=True)
    return maps, {"focus_prob": probs}


def check_checkpoint(checkpoint: Optional[str]) -> None:
    """Fail fast on a missing, foreign or untrusted FoCus checkpoint without loading the model.

    Raises CheckpointError as :func:`ffmask.models.focus.load_focus` would.
    """
    from ffmask.errors import CheckpointError
    from ffmask.models.checkpoint import _is_safetensors, read_description, read_tensor_file, resolve_checkpoint
    from ffmask.models.focus import DEFAULT_CHECKPOINT, MODEL_NAME

    path = DEFAULT_CHECKPOINT if checkpoint is None else checkpoint
    weights, description = resolve_checkpoint(path)
    read_description(description, MODEL_NAME)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} not found")
    if not _is_safetensors(weights):
        read_tensor_file(weights)  # weights-only load: refuses pickled code, as load_focus would
