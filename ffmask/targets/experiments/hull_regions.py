"""Two candidate sources for ``hull`` tried in session 12: local structure evidence and region segmentation.

Neither is part of ``hull``: they were gated on the candidate oracle
(``scripts/evidence_proxy.py``, docs/hull_training.md, "Structure and
region candidates (session 12)") as a *second* candidate source next to
the shipped ones (:func:`ffmask.targets.hull_candidates.candidate_masks`)
and failed the gate (at c40 +0.009 and +0.003 on the mean of three
development folders, +0.015 asked); the module stays as its record.
Each gives at most :data:`MAX_CANDIDATES` masks per pair, at ``hull``'s
working size, so that an oracle gain is not just more tries.

**Local structure** (:func:`structure_evidence`, :func:`structure_candidates`):
edits with no mean change -- blur, resampling, sharpening, noise, a JPEG
round trip or a warp inside the region -- change the local *structure* of
the image more than its level, and at heavy compression their
``|real - fake|`` looks like the compression residual around them. Two
maps of SSIM's local statistics of the channel means (the moments of the
full-resolution pixels, area-resized to the working size and
Gaussian-windowed there, sigma :data:`WINDOW` of its shorter side):

- the structure term ``1 - (sigma_rf + C3) / (sigma_r sigma_f + C3)``
  (``C3 = (0.03 * 255)^2 / 2``, SSIM's), 0 where the two images agree up
  to gain and offset, up to 2 where they are anti-correlated;
- the variance log ratio ``|log((sigma_f^2 + C2) / (sigma_r^2 + C2))|``
  (``C2 = (0.03 * 255)^2``): detail lost (blur) or added (noise, sharpening).

Each is smoothed like the residual
(sigma :data:`ffmask.targets.hull.SIGMA` of the side) and divided by its
own background low level (:func:`ffmask.targets.hull.background_levels`,
no gray-level floor): 1 is what compression alone reaches in this pair.
The evidence is their maximum. No position, face prior or landmarks enter
the maps; the landmarks only place the face region and the background, as
for the residual. Candidates: the face above the evidence's background
median + k robust sigmas for k in :data:`STRUCT_KS` and above its face
Otsu split (each floored at 1), opened, each as the shapes
:data:`STRUCT_SHAPES` of :func:`ffmask.targets.hull_candidates._stack_shapes`.

**Region segmentation** (:func:`region_segments`, :func:`region_candidates`):
a two-class piecewise-constant (Chan-Vese) segmentation of the shipped
residual inside the face, ``u = log(1 + d / low)``, by threshold dynamics
(Esedoglu and Tsai's scheme: the class indicator is smoothed by a Gaussian
of the length scale, and a pixel is in the changed class when
``G * L - 1/2 - TAU * F > 0``, ``F = ((u - c1)^2 - (u - c2)^2) / (c1 - c2)^2``
clipped to [-2, 2], ``c1`` / ``c2`` the two classes' means in the face),
started from the face pixels above the background's low level, for each
length scale of :data:`REGION_SCALES`; a spatially coherent two-class
split instead of a per-pixel threshold. Candidates: each segmentation as
the shapes :data:`REGION_SHAPES`.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ffmask.targets import hull as _hull
from ffmask.targets import hull_candidates as _hc

__all__ = ["MAX_CANDIDATES", "WINDOW", "STRUCT_KS", "STRUCT_SHAPES", "REGION_SCALES", "REGION_SHAPES", "TAU",
           "ITERATIONS", "structure_maps", "structure_evidence", "structure_candidates", "region_segments",
           "region_candidates"]

MAX_CANDIDATES = 12
WINDOW = 0.024  # window sigma, fraction of the working size's shorter side (2.3 px at 96 px: 6 px of a 256 px crop)
C2 = (0.03 * 255) ** 2  # SSIM's variance constant
C3 = C2 / 2  # SSIM's structure constant
STRUCT_KS = (3.0, 6.0, 12.0)  # levels: background median + k robust sigmas of the structure evidence
STRUCT_SHAPES = ("component", "largest", "grown")
REGION_SCALES = (0.015, 0.03, 0.06)  # threshold dynamics' length scales, fractions of the working side
REGION_SHAPES = ("raw", "component", "largest", "grown")
TAU = 0.25  # weight of the data term against the smoothed indicator
ITERATIONS = 12  # threshold-dynamics steps at most (stops earlier when nothing changes)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W) channel mean of a uint8 (H, W, 3) image, summed channel by channel (NumPy's mean over the
    last axis is several times slower)."""
    out = rgb[..., 0].astype(np.float32)
    out += rgb[..., 1]
    out += rgb[..., 2]
    out *= np.float32(1.0 / 3.0)
    return out


def structure_maps(real: np.ndarray, fake: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """SSIM's structure term and the variance log ratio of a pair, at ``size``.

    The local moments (means, variances, covariance of the two channel-mean
    images) are those of the full-resolution pixels in a window that is the
    area-resize to ``size`` followed by a Gaussian of :data:`WINDOW` of the
    shorter side (the moments are linear, so this is one window applied to
    the full-resolution products, at a fraction of the cost of blurring them
    at full size).

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
    size : (h, w)
        Output size (``hull``'s working size), at most the crop's.

    Returns
    -------
    structure, variance : ndarray of float32, shape (h, w)
        ``1 - (sigma_rf + C3) / (sigma_r sigma_f + C3)`` in [0, 2] and
        ``|log((sigma_f^2 + C2) / (sigma_r^2 + C2))|`` >= 0.
    """
    H, W = real.shape[:2]
    h, w = size
    r, f = _gray(real), _gray(fake)
    sigma = WINDOW * min(h, w)

    def window(x):
        if (h, w) != (H, W):
            x = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma >= 0.3 else x

    mr, mf = window(r), window(f)
    vr = np.maximum(window(r * r) - mr * mr, 0.0)
    vf = np.maximum(window(f * f) - mf * mf, 0.0)
    cov = window(r * f) - mr * mf
    structure = np.clip(1.0 - (cov + C3) / (np.sqrt(vr * vf) + C3), 0.0, 2.0).astype(np.float32)
    variance = np.abs(np.log((vf + C2) / (vr + C2))).astype(np.float32)
    return structure, variance


def _smooth(x: np.ndarray, side: int) -> np.ndarray:
    s = _hull.SIGMA * side
    return cv2.GaussianBlur(x, (0, 0), s, borderType=cv2.BORDER_REFLECT) if s >= 0.3 else x


def _low(d: np.ndarray, outside: np.ndarray) -> float:
    return max(_hull.background_levels(d, outside, min_level=0.0)[0], 1e-6)


def structure_evidence(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None,
                       res: int = _hc.RES) -> _hc.Evidence:
    """The local-structure evidence of a pair at ``hull``'s working size (see the module docstring).

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        Validated RGB crops.
    landmarks : ndarray (N, 2) of float, or None
        (x, y) in crop pixels; only place the face region and the background.
    res : int
        Working resolution (shorter side).

    Returns
    -------
    Evidence
        ``d``: float32 (h, w), the maximum of the two maps each over its
        background low level (1 = what compression alone reaches); the
        face region, background and ``d``'s statistics as for the residual.
    """
    H, W = real.shape[:2]
    h, w = _hc.working_size((H, W), res)
    side = min(h, w)
    pts = None if landmarks is None else np.asarray(landmarks, np.float64) * np.array([w / W, h / H])
    face, outside = _hull.face_region((h, w), pts)
    structure, variance = structure_maps(real, fake, (h, w))
    maps = [_smooth(m, side) for m in (structure, variance)]
    d = np.maximum(maps[0] / _low(maps[0], outside), maps[1] / _low(maps[1], outside)).astype(np.float32)
    med, spread = _hull.background_noise(d, outside)
    low, high = _hull.background_levels(d, outside, min_level=0.0)
    vals = d[face]
    otsu = _hull._otsu(vals) if vals.size else 0.0
    peak = float(np.quantile(vals, 0.99)) if vals.size else 0.0
    return _hc.Evidence(d, face, outside, med, spread, low, high, otsu, peak, (H, W), landmarks is not None)


def _shape_candidates(maps: list[np.ndarray], face: np.ndarray, shapes: tuple[str, ...], opened: bool,
                      records: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """The ``shapes`` of each bool (h, w) map (:func:`~ffmask.targets.hull_candidates._stack_shapes`), distinct,
    non-empty, at most :data:`MAX_CANDIDATES`; ``records[i]`` describes map i."""
    h, w = face.shape
    side = min(h, w)
    if not maps:
        return np.zeros((0, h, w), bool), []
    g = max([1] + [int(round(f * side)) for f in (_hc.OPEN, _hc.CLOSE, _hc.GROW)])
    g += (h + g) % 2
    stack = np.zeros((len(maps), h + g, w), np.uint8)
    for i, m in enumerate(maps):
        stack[i, :h] = m & face
    kernel = _hull._disk(_hc.OPEN * side)
    if opened and kernel is not None:  # the opening map by map, as the shipped candidates' (gaps emptied)
        stack[:, h:] = 1
        stack = cv2.erode(stack.reshape(-1, w), kernel).reshape(stack.shape)
        stack[:, h:] = 0
        stack = cv2.dilate(stack.reshape(-1, w), kernel).reshape(stack.shape)
        stack[:, h:] = 0
    keep = [i for i in range(len(maps)) if stack[i, :h].any()]
    out, info, seen = [], [], set()
    if keep:
        for i, shaped in zip(keep, _hc._stack_shapes(stack[keep], h, face.view(np.uint8), side,
                                                        _hc.MIN_AREA * h * w)):
            for name in shapes:
                m = shaped.get(name)
                if m is None or not m.any():
                    continue
                key = np.packbits(m).tobytes()
                if key in seen:
                    continue
                seen.add(key)
                out.append(m.astype(bool))
                info.append(dict(records[i], shape=name))
    out, info = out[:MAX_CANDIDATES], info[:MAX_CANDIDATES]
    if not out:
        return np.zeros((0, h, w), bool), []
    return np.stack(out), info


def structure_candidates(ev: _hc.Evidence) -> tuple[np.ndarray, list[dict]]:
    """At most :data:`MAX_CANDIDATES` masks from a :func:`structure_evidence`.

    Returns
    -------
    masks : ndarray of bool, shape (K, h, w)
        K in 0 .. :data:`MAX_CANDIDATES`, distinct, within the face region.
    info : list of K dicts
        ``source`` ("structure"), ``param`` (k, or -1 for Otsu), ``level``, ``shape``.
    """
    levels = [(k, ev.med + k * ev.spread) for k in STRUCT_KS] + [(-1.0, max(ev.otsu, ev.high))]
    maps, records, seen = [], [], set()
    for k, t in levels:
        t = max(float(t), 1.0)  # never below what compression alone reaches in this pair
        key = round(float(np.log(t)), 2)
        if key in seen:
            continue
        seen.add(key)
        maps.append(ev.d > t)
        records.append({"source": "structure", "param": float(k), "level": t})
    return _shape_candidates(maps, ev.face, STRUCT_SHAPES, True, records)


def region_segments(u: np.ndarray, face: np.ndarray, init: np.ndarray,
                    scales: tuple[float, ...] = REGION_SCALES) -> list[np.ndarray]:
    """Two-class Chan-Vese segmentations of ``u`` inside ``face`` by threshold dynamics, one per length scale.

    Parameters
    ----------
    u : ndarray of float32, shape (h, w)
        The evidence (larger = more changed).
    face : ndarray of bool, shape (h, w)
        The domain; pixels outside it are never in the changed class.
    init : ndarray of bool, shape (h, w)
        The starting changed class.
    scales : tuple of float
        Gaussian length scales, fractions of the shorter side.

    Returns
    -------
    list of ndarray of bool, shape (h, w)
        One per scale, in order; empty where the changed class vanished or
        the domain has a single class (``c1 <= c2`` never changes the start).
    """
    h, w = u.shape
    side = min(h, w)
    out = []
    face_f = face.astype(np.float32)
    uf = (u * face_f).astype(np.float32)
    n_face, sum_face = float(face_f.sum()), float(uf.sum(dtype=np.float64))
    for scale in scales:
        sigma = max(0.5, scale * side)
        lab = init & face
        for _ in range(ITERATIONS):
            labf = lab.astype(np.float32)
            n_in = float(labf.sum())
            if n_in == 0 or n_in == n_face:
                break
            s_in = float(np.dot(uf.ravel(), labf.ravel()))
            c1, c2 = s_in / n_in, (sum_face - s_in) / (n_face - n_in)
            if c1 <= c2:  # the "changed" class must be the one with more evidence
                lab = np.zeros_like(lab)
                break
            # ((u - c1)^2 - (u - c2)^2) / (c1 - c2)^2, which is linear in u
            force = np.clip((np.float32(c1 + c2) - 2.0 * u) / np.float32(c1 - c2), -2.0, 2.0)
            smooth = cv2.GaussianBlur(labf, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            new = face & (smooth - 0.5 - TAU * force > 0)
            if np.array_equal(new, lab):
                break
            lab = new
        out.append(lab)
    return out


def region_candidates(ev: _hc.Evidence) -> tuple[np.ndarray, list[dict]]:
    """At most :data:`MAX_CANDIDATES` masks from region segmentations of the shipped residual evidence.

    Parameters
    ----------
    ev : Evidence
        :func:`ffmask.targets.hull_candidates.pair_evidence`'s.

    Returns
    -------
    masks : ndarray of bool, shape (K, h, w)
    info : list of K dicts
        ``source`` ("region"), ``param`` (the length scale), ``level`` (0), ``shape``.
    """
    low = max(ev.low, 1e-6)
    u = np.log1p(np.maximum(ev.d, 0.0) / low).astype(np.float32)
    init = ev.face & (ev.d > low)
    segs = region_segments(u, ev.face, init)
    records = [{"source": "region", "param": float(s), "level": 0.0} for s in REGION_SCALES]
    return _shape_candidates(segs, ev.face, REGION_SHAPES, False, records)
