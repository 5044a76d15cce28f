"""Candidate masks of one (real, fake) pair, at a reduced working resolution.

The selector behind ``hull`` (:mod:`ffmask.targets.hull_select`) does not
fix a threshold or a shape: it generates many masks from the pair's own
evidence and lets a small learned scorer pick one. This module makes the
evidence and the masks; :mod:`ffmask.targets.hull_features` describes them.

:func:`pair_evidence` computes, at a working size whose shorter side is
``res`` pixels (never larger than the crop), the evidence map ``d``: the
maximum of two maps, each divided by the original's texture weight
(:func:`~ffmask.targets.hull.texture_weight`) and each in units of its own
background low level (never under 1 gray level), in the first one's gray
levels -- the residual ``mean_RGB |real - fake|`` (taken at full
resolution, then area-resized) Gaussian-smoothed at
:data:`~ffmask.targets.hull.SIGMA` of the side, as the hand rules do
(:func:`ffmask.targets.hull.residual`), and the *signed* difference
``fake - real`` smoothed per channel at
:data:`~ffmask.targets.hull.SIGNED_SIGMA` before its magnitude (the mean
over channels of ``|G * (fake - real)|``): two independently compressed
images differ by a roughly zero-mean error that this average removes,
while a consistent change (colour, brightness, blur, a swapped face)
survives it; the absolute residual keeps zero-mean edits (noise, a JPEG
round trip). Then the face region and the background
(:func:`~ffmask.targets.hull.face_region`), and the background's noise
statistics of ``d`` (median, robust sigma, the rules' low / high levels)
and the face's Otsu split.

:func:`candidate_masks` thresholds that evidence map at levels relative to the
pair's background (median + k robust sigmas for k on :data:`KS`, the rules'
low level, Otsu, fractions of the face's peak) and applies each shape
operator of :data:`SHAPES` to the cleaned binary map (as is with holes
filled, one convex hull per component, one hull of the largest component,
one hull of all; the per-component hulls dilated and eroded by
:data:`GROW` of the side, the largest one's dilated); then adds the hand rules run on the same residual
(:func:`ffmask.targets.hull.rules_on_residual`) and the MSCC mask
(:func:`ffmask.targets.mscc.mscc_mask`, full resolution, area-resized), so the
selector can always fall back to either. Duplicates are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ffmask.targets import hull as _hull

__all__ = ["RES", "KS", "PEAKS", "SHAPES", "SOURCES", "Evidence", "working_size", "pair_evidence", "thresholds",
           "candidate_masks", "to_crop"]

RES = 96  # working resolution: the shorter side, px
#: thresholds: background median + k robust sigmas
KS = (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 9.0, 13.0, 20.0, 30.0, 45.0)
#: thresholds: these fractions of the face's 99th percentile
PEAKS = (0.2, 0.35, 0.5, 0.7)
#: shape operators applied to every thresholded map
SHAPES = ("raw", "component", "largest", "all", "grown", "shrunk", "grown_largest")
#: where a candidate comes from (one-hot feature)
SOURCES = ("level", "otsu", "peak", "rules", "mscc")
OPEN = 0.015   # opening radius of a thresholded map, fraction of the side
CLOSE = 0.03   # closing radius of the "raw" shape
MIN_AREA = 0.002  # components below this fraction of the working image are dropped
GROW = 0.03   # "grown" / "shrunk": the hulls dilated / eroded by this, fraction of the side


@dataclass
class Evidence:
    """A pair's evidence at the working size (h, w).

    Attributes
    ----------
    d : float32 (h, w)
        The evidence map (module docstring), gray levels: the smoothed,
        texture-normalised absolute residual, raised where the smoothed
        signed difference stands higher above its own background.
    face, outside : bool (h, w)
        Face region and background.
    med, spread, low, high, otsu, peak : float
        Background median and 1.4826 MAD of ``d``; the rules' low / high
        levels; Otsu's split of the face; the face's 99th percentile.
    shape : (H, W)
        The crop's size.
    landmarks : bool
        Whether landmarks placed the face region.
    """

    d: np.ndarray
    face: np.ndarray
    outside: np.ndarray
    med: float
    spread: float
    low: float
    high: float
    otsu: float
    peak: float
    shape: tuple
    landmarks: bool


def working_size(shape: tuple[int, int], res: int = RES) -> tuple[int, int]:
    """(h, w) with the shorter side ``min(res, shorter side of shape)``, aspect kept."""
    h, w = shape
    s = min(1.0, float(res) / min(h, w))
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of sigma px (reflected border); none below 0.3 px."""
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma >= 0.3 else x


def pair_evidence(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None,
                  res: int = RES) -> Evidence:
    """The pair's evidence at the working size (see the module docstring).

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        Validated RGB crops (:func:`ffmask.targets._validate.check_pair`).
    landmarks : ndarray (N, 2) of float, or None
        Validated landmarks (x, y) in crop pixels, NaN-free, or None.
    res : int
        Working resolution (shorter side).

    Returns
    -------
    Evidence
    """
    H, W = real.shape[:2]
    h, w = working_size((H, W), res)
    raw = _hull.abs_difference(real, fake)
    signed = _hull.signed_difference(real, fake)
    small_real = real
    if (h, w) != (H, W):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
        signed = cv2.resize(signed, (w, h), interpolation=cv2.INTER_AREA)
        small_real = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
    side = min(h, w)
    weight = _hull.texture_weight(small_real)
    d = _smooth(raw, _hull.SIGMA * side) / weight
    # the signed change, smoothed before its magnitude: compression's error, roughly zero-mean, averages out
    coherent = np.abs(_smooth(signed, _hull.SIGNED_SIGMA * side))
    coherent = coherent[..., 0] + coherent[..., 1] + coherent[..., 2]  # the channel mean, 8x faster than .mean(2)
    coherent /= np.float32(3.0)  # (same bits: the same float32 sums in the same order)
    coherent /= weight
    pts = None
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float64) * np.array([w / W, h / H])
    face, outside = _hull.face_region((h, w), pts)
    # both maps in units of what compression alone reaches in this pair's background (never under 1 gray level),
    # their maximum back in the absolute residual's gray levels
    low_d = max(_hull.background_levels(d, outside)[0], _hull.MIN_LEVEL)
    low_c = max(_hull.background_levels(coherent, outside)[0], _hull.MIN_LEVEL)
    d = np.maximum(d, coherent * np.float32(low_d / low_c))
    med, spread = _hull.background_noise(d, outside)
    low, high = _hull.background_levels(d, outside)
    vals = d[face]
    otsu = _hull._otsu(vals) if vals.size else 0.0
    peak = float(np.quantile(vals, 0.99)) if vals.size else 0.0
    return Evidence(d.astype(np.float32), face, outside, med, spread, low, high, otsu, peak, (H, W),
                    landmarks is not None)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(mask)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out


def _shapes(binary: np.ndarray, face8: np.ndarray, side: int, min_px: float) -> dict:
    """The shape operators of one (opened) thresholded map: name -> uint8 mask (absent when nothing survives).

    One labelling and one contour pass serve every shape: a component's
    convex hull is the hull of its outer contour (the same points whether it
    is traced alone or among the others, which never touch it), the largest
    one's hull is its component hull, and the hull of all is the hull of
    every outer contour.
    """
    n, labels = cv2.connectedComponents(binary, connectivity=8)  # the areas by bincount: 4x faster than its stats
    areas = np.bincount(labels.reshape(-1), minlength=n)
    keep = np.flatnonzero(areas[1:] >= min_px) + 1
    if keep.size == 0:
        return {}
    if keep.size == n - 1:
        kept = binary
    else:
        lut = np.zeros(n, np.uint8)
        lut[keep] = 1
        kept = np.take(lut, labels)
    raw = kept
    kernel = _hull._disk(CLOSE * side)
    if kernel is not None:
        raw = cv2.morphologyEx(kept, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out = {"raw": _fill_holes(raw) & face8}
    contours, _ = cv2.findContours(kept, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    by_label: dict = {}
    for c in contours:
        x, y = c[0, 0]
        by_label.setdefault(int(labels[y, x]), []).append(c)
    comp = np.zeros_like(kept)
    hulls = {}
    for lab in keep:
        parts = by_label.get(int(lab))
        if parts is None:  # inside a hole of another component: no outer contour of its own in this map
            parts, _ = cv2.findContours((labels == lab).astype(np.uint8), cv2.RETR_EXTERNAL,
                                        cv2.CHAIN_APPROX_SIMPLE)
        hulls[lab] = cv2.convexHull(np.concatenate(parts))
        cv2.fillConvexPoly(comp, hulls[lab], 1)
    out["component"] = comp & face8
    big = keep[int(np.argmax(areas[keep]))]
    largest = np.zeros_like(kept)
    cv2.fillConvexPoly(largest, hulls[big], 1)
    out["largest"] = largest & face8
    every = np.zeros_like(kept)
    cv2.fillConvexPoly(every, cv2.convexHull(np.concatenate(contours)), 1)
    out["all"] = every & face8
    kernel = _hull._disk(GROW * side)
    if kernel is not None:  # compression blurs an edit's edge: the hulls may be systematically too small or large
        out["grown"] = cv2.dilate(out["component"], kernel) & face8
        out["shrunk"] = cv2.erode(out["component"], kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        out["grown_largest"] = cv2.dilate(out["largest"], kernel) & face8
    return out


def thresholds(ev: Evidence) -> list[tuple[str, float, float]]:
    """``(source, parameter, level)`` of every threshold of the pair, levels >= the rules' floor, rounded apart."""
    floor = _hull.MIN_LEVEL
    levels = [("level", k, ev.med + k * ev.spread) for k in KS]
    levels.append(("otsu", 0.0, ev.otsu))
    levels.append(("otsu", 1.0, max(ev.otsu, ev.high)))
    levels += [("peak", f, f * ev.peak) for f in PEAKS]
    out, seen = [], set()
    for src, p, t in levels:
        t = max(float(t), floor)
        key = round(float(np.log(t)), 2)
        if key in seen:
            continue
        seen.add(key)
        out.append((src, float(p), t))
    return out


def candidate_masks(ev: Evidence, mscc: Optional[np.ndarray] = None) -> tuple[np.ndarray, list[dict]]:
    """Every distinct candidate mask of the pair at the working size.

    Parameters
    ----------
    ev : Evidence
    mscc : ndarray of bool, shape (H, W), optional
        The MSCC mask at the crop size, added as a candidate (area-resized).

    Returns
    -------
    masks : ndarray of bool, shape (K, h, w)
        K may be 0 (nothing clears any threshold and no MSCC mask).
    info : list of K dicts
        ``source`` (one of :data:`SOURCES`), ``shape`` (one of
        :data:`SHAPES`, or the source's name for rules / mscc), ``param``
        (k, Otsu variant or peak fraction), ``level`` (gray levels, 0 for
        rules / mscc).
    """
    h, w = ev.d.shape
    side = min(h, w)
    min_px = MIN_AREA * h * w
    masks, info, seen = [], [], set()

    def add(mask: np.ndarray, record: dict) -> None:
        if not mask.any():
            return
        key = mask.tobytes()
        if key in seen:
            return
        seen.add(key)
        masks.append(mask.view(bool))  # 0 / 1 values
        info.append(record)

    face8 = ev.face.view(np.uint8)
    kernel = _hull._disk(OPEN * side)
    opened_seen = set()
    for src, p, t in thresholds(ev):
        binary = (ev.d > t).view(np.uint8) & face8
        if not binary.any():
            continue
        if kernel is not None:
            binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        key = binary.tobytes()
        if key in opened_seen:  # the same opened map as a lower threshold's: every shape would be a duplicate
            continue
        opened_seen.add(key)
        for name, m in _shapes(np.ascontiguousarray(binary), face8, side, min_px).items():
            add(m, {"source": src, "shape": name, "param": p, "level": t})
    # the rules' background levels, Otsu split and noise are the evidence's (same residual, same defaults)
    rules = _hull.rules_on_residual(ev.d, ev.face, ev.outside, levels=(ev.low, ev.high), otsu=ev.otsu,
                                    noise=(ev.med, ev.spread))
    add(rules, {"source": "rules", "shape": "rules", "param": 0.0, "level": 0.0})
    if mscc is not None and mscc.any():
        small = cv2.resize(mscc.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
        add(small, {"source": "mscc", "shape": "mscc", "param": 0.0, "level": 0.0})
    if not masks:
        return np.zeros((0, h, w), bool), []
    return np.stack(masks), info


def to_crop(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working-size bool mask at the crop size ``shape`` (bilinear, > 0.5)."""
    H, W = shape
    if mask.shape == (H, W):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR) > 0.5
