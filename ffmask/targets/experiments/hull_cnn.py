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
- :func:`build_net`: the scorer (35 k parameters with the 64 features), predicting each candidate's IoU:
  a trunk over the pair's context once, its maps pooled inside / on the border of / outside each candidate,
  a shape encoder over the candidate and the face.

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
    """The candidate scorer: ``net(context, planes, pair, features) -> predicted IoU`` (K,).

    ``context`` float32 (P, len(CONTEXT), SIZE, SIZE): the pairs' context
    planes; ``planes`` float32 (K, 1, SIZE, SIZE): the candidates' planes;
    ``pair`` int64 (K,): each candidate's row of ``context``; ``features``
    float32 (K, n_features), standardised.

    A trunk reads each pair's context once (3x3 convolutions: stride 2 to
    SIZE / 2, then two more, the last dilated; ``2 width`` channels); each
    candidate's plane, pooled to SIZE / 2, weighs the trunk's maps three
    ways -- mean inside the candidate, on its border band (its 3x3 dilation
    minus its erosion) and inside the face but outside the candidate -- so
    the head can compare the evidence across the border; a shape encoder
    (three convolutions over the pooled plane and face, two of stride 2,
    ``2 width`` channels, global mean and max) says whether it is face-shaped. No batch
    statistics: a candidate's score depends on its pair only.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    c, w = len(CONTEXT), width
    face_plane = CONTEXT.index("face")

    class CandidateNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                nn.Conv2d(c, w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, 1, 1), nn.ReLU(),
                nn.Conv2d(2 * w, 2 * w, 3, 1, 2, dilation=2), nn.ReLU())
            self.shape = nn.Sequential(
                nn.Conv2d(2, w // 2, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(w // 2, w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, 1, 1), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(3 * 2 * w + 4 * w + 3 + n_features, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, context, planes, pair, features):
            maps = self.trunk(context).flatten(2)  # (P, 2w, S/2 * S/2)
            face = F.avg_pool2d(context[:, face_plane:face_plane + 1], 2)[pair]  # (K, 1, S/2, S/2)
            m = F.avg_pool2d(planes, 2)
            band = F.max_pool2d(m, 3, 1, 1) + F.max_pool2d(-m, 3, 1, 1)  # dilation minus erosion
            weights = torch.cat([m, band, face * (1 - m)], 1).flatten(2)  # (K, 3, S/2 * S/2)
            area = weights.sum(2)  # (K, 3)
            # each candidate's three weighted means of its own pair's maps: one product per pair (rows grouped by pair)
            order = torch.argsort(pair, stable=True)
            counts = torch.bincount(pair, minlength=len(maps)).tolist()
            parts = [torch.einsum("kjn,cn->kjc", wk, maps[p]) for p, wk in enumerate(weights[order].split(counts))]
            pooled = torch.empty(len(pair), 3, maps.shape[1], dtype=maps.dtype)
            pooled[order] = torch.cat(parts) / (area[order, :, None] + 1e-3)
            z = self.shape(torch.cat([m, face], 1))
            z = torch.cat([pooled.flatten(1), z.mean((2, 3)), z.amax((2, 3)), area / weights.shape[2], features], 1)
            return self.head(z)[:, 0]

    return CandidateNet()
