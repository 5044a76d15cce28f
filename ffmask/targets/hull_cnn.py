"""A candidate scorer that sees each candidate as an image next to the pair's evidence (issue #10 diagnostic).

``hull``'s selector (:mod:`ffmask.targets.hull_select`) scores each candidate
mask from 64 hand features. This module describes a candidate by pictures
instead: at ``SIZE`` x ``SIZE`` pixels, the candidate mask itself on top of
the pair's context planes (:data:`CONTEXT`), so a small CNN can tell whether
the candidate's border follows an edge of the residual, whether it covers a
coherent blob or noise speckle, and whether it is face-shaped for this face;
the 64 hand features join before the head (:func:`build_net`).

- :func:`pair_context`: float32 (len(CONTEXT), SIZE, SIZE) per pair, from the
  evidence the candidates are cut from (:class:`ffmask.targets.hull_candidates.Evidence`)
  and the fake crop.
- :func:`candidate_planes`: the candidates (K, h, w) area-resized to SIZE, float32 in [0, 1].
- :func:`feature_transform`: the hand features on a tamer scale (signed log).
- :func:`build_net`: the scorer (about 40 k parameters), predicting each candidate's IoU.

Used by ``scripts/hull_cnn_diag.py`` (docs/hull_training.md, "Session 14: a
scorer that sees the candidates"); not part of the shipped ``hull``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.targets.hull_candidates import Evidence

__all__ = ["SIZE", "CONTEXT", "pair_context", "candidate_planes", "feature_transform", "build_net"]

SIZE = 64  # side of every plane, px
#: the pair's context planes, in order: the residual's excess over the background in robust sigmas (signed log,
#: the scale of the candidates' level thresholds), the residual over the face's 99th percentile (the scale of the
#: peak thresholds), the fake's gray level centred on the face's mean, the face region (landmark hull or ellipse)
CONTEXT = ("excess", "peak", "gray", "face")


def _resize(plane: np.ndarray) -> np.ndarray:
    if plane.shape == (SIZE, SIZE):
        return plane.astype(np.float32)
    return cv2.resize(plane.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def pair_context(ev: Evidence, fake: np.ndarray) -> np.ndarray:
    """The pair's :data:`CONTEXT` planes at SIZE x SIZE.

    Parameters
    ----------
    ev : Evidence
        The pair's evidence (:func:`ffmask.targets.hull_candidates.pair_evidence`).
    fake : ndarray of uint8, shape (H, W, 3)
        The fake RGB crop.

    Returns
    -------
    ndarray of float32, shape (4, SIZE, SIZE)
        ``excess`` = log1p(max(0, (d - med) / spread)) / log(46) (1 at the
        candidates' highest level, 45 sigmas), ``peak`` = d / (face's 99th
        percentile) clipped to [0, 2], ``gray`` = (gray - face mean) / 64, ``face`` in [0, 1].
    """
    spread = max(float(ev.spread), 1e-6)
    excess = np.log1p(np.maximum(0.0, (ev.d - ev.med) / spread)) / np.log(46.0)
    peak = np.clip(ev.d / max(float(ev.peak), 1e-6), 0.0, 2.0)
    gray = cv2.cvtColor(fake, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray = cv2.resize(gray, (ev.d.shape[1], ev.d.shape[0]), interpolation=cv2.INTER_AREA)
    mean = float(gray[ev.face].mean()) if ev.face.any() else float(gray.mean())
    planes = [excess, peak, (gray - mean) / 64.0, ev.face.astype(np.float32)]
    return np.stack([_resize(p) for p in planes])


def candidate_planes(masks: np.ndarray) -> np.ndarray:
    """Candidate masks (K, h, w) bool as float32 (K, SIZE, SIZE): each pixel's covered share (area resize)."""
    masks = np.asarray(masks)
    if len(masks) == 0:
        return np.zeros((0, SIZE, SIZE), np.float32)
    return np.stack([_resize(m) for m in masks])


def feature_transform(x: np.ndarray) -> np.ndarray:
    """Hand features (K, F) on a signed-log scale, ``sign(x) log1p(|x|)``, float32 (non-finite -> 0)."""
    x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)


def build_net(n_features: int, width: int = 16):
    """The candidate scorer: ``net(planes, features) -> predicted IoU`` (K,).

    ``planes`` float32 (K, 1 + len(CONTEXT), SIZE, SIZE): the candidate's
    plane first, then its pair's context; ``features`` float32 (K,
    n_features), standardised. Four stride-2 3x3 convolutions (``width``,
    2 ``width``, 2 ``width``, 4 ``width`` channels, ReLU, batch norm-free so
    a candidate's score does not depend on its batch), global mean and max
    pooling, the features concatenated, a two-layer head.
    """
    import torch
    from torch import nn

    c = 1 + len(CONTEXT)

    class CandidateNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.conv = nn.Sequential(
                nn.Conv2d(c, w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(8 * w + n_features, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, planes, features):
            z = self.conv(planes)
            z = torch.cat([z.mean((2, 3)), z.amax((2, 3)), features], 1)
            return self.head(z)[:, 0]

    return CandidateNet()
