"""The model-backed target method ``fam``: Forgery Attention Maps of a trained detector.

``ffmask annotate ... --method fam --checkpoint fam=CKPT`` (or a bare
``--checkpoint CKPT`` when fam is the only model-backed method) stores, for
every face, the FAM (:func:`ffmask.models.fam.forgery_attention`) of the
evaluator checkpoint CKPT: ``|d(logit_fake - logit_real)/dx|``, max over the
colour channels, the model in eval mode, each face's map divided by its own
maximum (so in [0, 1]; a face with an all-zero gradient gets zeros). Any
checkpoint of a registered evaluator (``ffmask train evaluator``) works.

The map is computed at the model's input size and resized (area averaging
when shrinking, bilinear when enlarging) to the crop size; it is computed for
every face whatever its label (the detector's sensitivity, not a mask), and
the detector's fake probability is stored beside it as ``fam_prob``.

Like ``focus`` (:mod:`ffmask.models.focus_method`), the model is loaded once
per worker process and runs on batches; the parent only checks the
checkpoint's description (:func:`check_checkpoint`).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

__all__ = ["METHOD", "check_checkpoint", "fam_batch", "load_for_run", "load_model"]

METHOD = "fam"
#: faces per forward/backward pass (the pipeline hands over up to 64 at once).
CHUNK = 16


@functools.lru_cache(maxsize=2)
def load_model(checkpoint: str, device: Optional[str]):
    """The evaluator of ``checkpoint`` in eval mode on ``device``, loaded once per process."""
    from ffmask.evaluate import load_evaluator_checkpoint

    model, _ = load_evaluator_checkpoint(checkpoint, device)
    return model


def load_for_run(options):
    """The detector of a run: ``options.checkpoint_for("fam")`` on ``options.device``."""
    checkpoint = options.checkpoint_for(METHOD)
    if checkpoint is None:  # check_checkpoint refuses this in the parent; a direct caller gets the same words
        from ffmask.errors import OptionError

        raise OptionError(_MISSING)
    return load_model(str(checkpoint), getattr(options, "device", None))


_MISSING = ("--method fam needs the detector to explain: --checkpoint fam=CKPT "
            "(a checkpoint of `ffmask train evaluator`)")


def fam_batch(model, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """FAMs of a batch of faces.

    Parameters
    ----------
    model : an evaluator (``forward(x) -> {"logit": (N, 2)}``, ``img_size``).
    images : uint8 (N, S, S, 3) RGB crops.
    labels : int (N,), unused (the FAM does not depend on the label).

    Returns
    -------
    maps : float32 (N, S, S) in [0, 1], each face divided by its maximum.
    extras : {"fam_prob": float32 (N,)} the detector's fake probability.
    """
    import torch
    import torch.nn.functional as F

    from ffmask.models.fam import forgery_attention
    from ffmask.models.focus import prepare_images

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 faces (N, S, S, 3), got {images.dtype} {images.shape}")
    n, size = images.shape[0], images.shape[1]
    device = next(model.parameters()).device
    maps = np.zeros((n, size, images.shape[2]), np.float32)
    probs = np.zeros(n, np.float32)
    for start in range(0, n, CHUNK):
        chunk = torch.from_numpy(images[start:start + CHUNK]).permute(0, 3, 1, 2).contiguous().to(device)
        fam, prob = forgery_attention(model, prepare_images(chunk, model.img_size))
        if tuple(fam.shape[-2:]) != tuple(images.shape[1:3]):
            mode = "area" if fam.shape[-1] > size else "bilinear"
            kw = {} if mode == "area" else {"align_corners": False}
            fam = F.interpolate(fam[:, None], size=tuple(images.shape[1:3]), mode=mode, **kw)[:, 0].clamp_(min=0)
        peak = fam.flatten(1).amax(1).view(-1, 1, 1)
        fam = torch.where(peak > 0, fam / peak.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(fam))
        maps[start:start + CHUNK] = fam.clamp_(0, 1).cpu().numpy()
        probs[start:start + CHUNK] = prob.cpu().numpy()
    return maps, {"fam_prob": probs}


def check_checkpoint(checkpoint: Optional[str]) -> None:
    """Fail fast, without loading the model, on a missing checkpoint or one that is not an evaluator's.

    Raises OptionError when none is given, CheckpointError otherwise.
    """
    from ffmask.errors import CheckpointError, OptionError
    from ffmask.models.checkpoint import _is_safetensors, read_description, read_tensor_file, resolve_checkpoint
    from ffmask.models.evaluators import is_evaluator

    if checkpoint is None:
        raise OptionError(_MISSING)
    weights, description = resolve_checkpoint(checkpoint)
    doc = read_description(description)
    if not is_evaluator(doc["model"]):
        raise CheckpointError(f"{description} is a {doc['model']!r} checkpoint, not an evaluator "
                              "(--method fam explains a detector trained with `ffmask train evaluator`)")
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} not found")
    if not _is_safetensors(weights):
        read_tensor_file(weights)  # weights-only load: refuses pickled code, as loading would
