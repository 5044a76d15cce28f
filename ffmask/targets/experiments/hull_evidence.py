"""A learned *local* evidence map for ``hull``: per pixel, how likely the fake changed it.

The selector behind ``hull`` builds every candidate from one hand-made
evidence map (the smoothed, texture-normalised residual,
:func:`ffmask.targets.hull_candidates.pair_evidence`). At heavy compression
that map cannot tell the residual of two independently coded images from a
faint edit. This module holds a small fully convolutional net that looks at
*local, pair-relative* inputs only and is trained to say which pixels were
changed (``scripts/train_hull_evidence.py``, docs/hull_training.md,
"Learned local evidence (session 11): not kept").

**Not used by ``hull`` and no weights ship**: session 11's net did not pass
the gate written before its dev figures (the candidate oracle of
``scripts/evidence_proxy.py`` with its map as a second candidate source rose
by 0.072 at c40 on the synth tuning families but by only 0.015 on the
foreign generator's unseen operations, short of the +0.02 asked on both).
The module stays as the experiment's definition, shared by the training
script and the proxy; pass the weights file the script writes.

- :func:`evidence_inputs`: :data:`CHANNELS` maps at ``hull``'s working
  size -- the absolute and the signed residual in units of the pair's own
  residual scale, the original normalised by its own mean and spread, the
  texture weight, and the scale itself (a constant map). No position, no
  face prior, no landmarks.
- :func:`evidence_map`: the net (3 x 3 convolutions, dilations
  :data:`DILATIONS`, receptive field 25 px at the working size) in NumPy
  (im2col and one matrix product per layer; edge-replicated borders, as
  torch's ``padding_mode="replicate"``), weights from a no-pickle ``.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ffmask.targets import hull as _hull
from ffmask.targets import hull_candidates as hc
from ffmask.targets._weights import WeightsCache

__all__ = ["CHANNELS", "DILATIONS", "WIDTH", "SCALE_QUANTILE", "evidence_inputs", "load_weights", "forward",
           "probability", "evidence_map"]

#: the input maps, in order
CHANNELS = ("log_abs", "signed_r", "signed_g", "signed_b", "real_r", "real_g", "real_b", "log_texture", "log_scale")
#: the dilation of each 3 x 3 layer (receptive field 1 + 2 * sum = 25 px)
DILATIONS = (1, 1, 2, 4, 4)
WIDTH = 12  # channels of every hidden layer
#: the pair's residual scale: this quantile of the absolute residual over the whole image (no face prior)
SCALE_QUANTILE = 0.3
SCALE_FLOOR = 0.5  # gray levels
#: where weights would ship; none do (see above): pass ``path``
WEIGHTS = Path(__file__).parent.parent / "weights" / "hull_evidence.npz"  # where shipped weights would live


def evidence_inputs(real: np.ndarray, fake: np.ndarray, res: int = hc.RES) -> np.ndarray:
    """The net's input maps of one pair at the working size.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the same size.
    res : int
        Working resolution (shorter side, :func:`ffmask.targets.hull_candidates.working_size`).

    Returns
    -------
    ndarray of float32, shape (len(CHANNELS), h, w)
        ``log(1 + A / s)`` with ``A = mean_RGB |real - fake|`` taken at full
        resolution then area-resized and ``s`` its :data:`SCALE_QUANTILE`
        quantile over the image (at least :data:`SCALE_FLOOR`);
        ``asinh(S_c / s)`` with ``S`` the area-resized signed difference
        ``fake - real`` per channel; the area-resized original minus its
        per-channel mean over its overall standard deviation;
        ``log`` of the texture weight (:func:`ffmask.targets.hull.texture_weight`);
        ``log(s)`` everywhere.
    """
    H, W = real.shape[:2]
    h, w = hc.working_size((H, W), res)
    diff = cv2.subtract(fake, real, dtype=cv2.CV_32F)
    if (h, w) != (H, W):
        diff = cv2.resize(diff, (w, h), interpolation=cv2.INTER_AREA)
    diff = diff.reshape(h, w, 3)
    raw = _hull.abs_difference(real, fake)
    small = real
    if (h, w) != (H, W):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
        small = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
    weight = _hull.texture_weight(small)
    s = max(float(np.quantile(raw, SCALE_QUANTILE)), SCALE_FLOOR)
    out = np.empty((len(CHANNELS), h, w), np.float32)
    out[0] = np.log1p(raw / s)
    out[1:4] = np.arcsinh(diff / s).transpose(2, 0, 1)
    img = small.reshape(h, w, 3).astype(np.float32)
    img = (img - img.mean(axis=(0, 1))) / (float(img.std()) + 1.0)
    out[4:7] = img.transpose(2, 0, 1)
    out[7] = np.log(weight)
    out[8] = np.log(s)
    return out


def _read(path: Path) -> list[tuple[np.ndarray, np.ndarray, int]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_layers"])
            layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32), int(z[f"d{i}"]))
                      for i in range(n)]
            channels = tuple(json.loads(str(z["channels"])))
    except Exception as exc:  # zip, npz, key and JSON errors alike
        raise ValueError(f"cannot read hull evidence weights {path}: {exc}") from None
    if channels != CHANNELS or n < 1 or layers[0][0].shape[1] != 9 * len(CHANNELS):
        raise ValueError(f"{path}: the evidence net was trained on other input maps")
    for (w0, b0, _), (w1, _, d1) in zip(layers, layers[1:]):
        if w0.shape[0] != b0.shape[0] or w1.shape[1] != (9 if d1 else 1) * w0.shape[0]:
            raise ValueError(f"{path}: the evidence net's layers do not fit together")
    return layers


_WEIGHTS = WeightsCache("hull evidence weights", WEIGHTS, _read)


def load_weights(path: Optional[Path] = None) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The layers ``(W (out, 9 * in) or (out, in), b (out,), dilation)`` from a no-pickle ``.npz``; cached.

    The last layer is 1 x 1 (dilation 0). ValueError when the file is
    missing, unreadable, or made for other input maps.
    """
    return _WEIGHTS.get(path)


def _conv3(x: np.ndarray, wmat: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    c, h, w = x.shape
    p = np.pad(x, ((0, 0), (d, d), (d, d)), mode="edge")
    cols = np.empty((9, c, h, w), np.float32)
    for ky in range(3):
        for kx in range(3):
            cols[ky * 3 + kx] = p[:, ky * d:ky * d + h, kx * d:kx * d + w]
    return (wmat @ cols.reshape(9 * c, h * w) + b[:, None]).reshape(-1, h, w)


def forward(x: np.ndarray, layers: list) -> np.ndarray:
    """The net's logit, float32 (h, w), of inputs ``x`` (C, h, w): 3 x 3 layers with ReLU, then a 1 x 1 layer."""
    for wmat, b, d in layers[:-1]:
        x = np.maximum(_conv3(x, wmat, b, d), 0.0)
    wmat, b, _ = layers[-1]
    c, h, w = x.shape
    return (wmat @ x.reshape(c, h * w) + b[:, None]).reshape(h, w)


def evidence_map(real: np.ndarray, fake: np.ndarray, res: int = hc.RES, path: Optional[Path] = None) -> np.ndarray:
    """Probability that each working-size pixel was changed, float32 (h, w) in [0, 1].

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the same size.
    res : int
        Working resolution (shorter side).
    path : path, optional
        Another weights file (default the shipped one).
    """
    return probability(forward(evidence_inputs(real, fake, res), load_weights(path)))


def probability(z: np.ndarray) -> np.ndarray:
    """The logistic of the net's logit ``z``: float32 in [0, 1]."""
    return (1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))).astype(np.float32)
