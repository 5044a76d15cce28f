"""Candidate masks of one (real, fake) pair, at a reduced working resolution.

The selector behind ``hull`` (:mod:`ffmask.targets.hull_select`) does not
fix a threshold or a shape: it generates many masks from the pair's own
evidence and lets a small learned scorer pick one. This module makes the
evidence and the masks; :mod:`ffmask.targets.hull_features` describes them.

:func:`pair_evidence` computes, at a working size whose shorter side is
``res`` pixels (never larger than the crop): the residual
``mean_RGB |real - fake|`` (taken at full resolution, then area-resized),
Gaussian-smoothed and divided by the original's texture weight, exactly as
the hand rules do (:func:`ffmask.targets.hull.residual`,
:func:`~ffmask.targets.hull.texture_weight`); the face region and the
background (:func:`~ffmask.targets.hull.face_region`); and the background's
noise statistics (median, robust sigma, the rules' low / high levels) and
the face's Otsu split.

:func:`candidate_masks` thresholds that residual at levels relative to the
pair's background (median + k robust sigmas for k on :data:`KS`, the rules'
low level, Otsu, fractions of the face's peak) and applies each shape
operator of :data:`SHAPES` to the cleaned binary map (as is with holes
filled, one convex hull per component, one hull of the largest component,
one hull of all; the per-component hulls dilated and eroded by
:data:`GROW` of the side, the largest one's dilated); then adds the hand rules run on the same residual
(:func:`ffmask.targets.hull.rules_on_residual`) and the MSCC mask
(:func:`ffmask.targets.mscc.mscc_mask`, full resolution, area-resized), so the
selector can always fall back to either. Last, every hull-shaped candidate
(:data:`TRIM_SHAPES`) again with its bottom and right band of :data:`TRIM`
of the side removed (:func:`downstream_erode`): H.264 predicts each block
from the blocks above and left of it, so an edit's reconstruction error
spills into the blocks below and right of it -- at CRF 40 the residual just
below / right of a true mask is 3-15x the residual just above / left of it
(docs/hull_training.md, "The codec's spill") -- and a mask that follows the
residual overshoots there. Duplicates are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ffmask.targets import hull as _hull

__all__ = ["RES", "KS", "PEAKS", "SHAPES", "SOURCES", "TRIM", "TRIM_SHAPES", "Evidence", "working_size",
           "pair_evidence", "thresholds", "candidate_masks", "downstream_erode", "directional_morph", "to_crop"]

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
#: shapes also offered with their downstream (bottom / right) band trimmed, where the codec's spill lies
TRIM_SHAPES = ("component", "largest", "all", "grown", "grown_largest")
TRIM = 0.04   # width of that band, fraction of the side


@dataclass
class Evidence:
    """A pair's evidence at the working size (h, w).

    Attributes
    ----------
    d : float32 (h, w)
        Smoothed, texture-normalised residual, gray levels.
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
    if (h, w) != (H, W):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
    side = min(h, w)
    s = _hull.SIGMA * side
    d = cv2.GaussianBlur(raw, (0, 0), s, borderType=cv2.BORDER_REFLECT) if s >= 0.3 else raw
    weight, face, outside = _ORIGINAL_SIDE.get(real, landmarks, (h, w))
    d = d / weight
    med, spread = _hull.background_noise(d, outside)
    low, high = _hull.background_levels(d, outside, noise=(med, spread))
    vals = d[face]
    otsu = _hull._otsu(vals) if vals.size else 0.0
    peak = float(np.quantile(vals, 0.99)) if vals.size else 0.0
    return Evidence(d.astype(np.float32), face, outside, med, spread, low, high, otsu, peak, (H, W),
                    landmarks is not None)


def _original_side(real: np.ndarray, landmarks: Optional[np.ndarray],
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`pair_evidence` takes from the original alone: its texture weight at the working ``size``
    (float32 (h, w)), and the face region and background there (bool (h, w) each)."""
    H, W = real.shape[:2]
    h, w = size
    small_real = real if (h, w) == (H, W) else cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
    pts = None
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float64) * np.array([w / W, h / H])
    face, outside = _hull.face_region((h, w), pts)
    return _hull.texture_weight(small_real), face, outside


class _OriginalSides:
    """The last originals' :func:`_original_side`, reused for every fake compared with the same original.

    An original face is compared with each of its fakes (FF++: four), and
    annotate compares a video's frames in turn, so the same original crop
    and landmarks come back after one fake video's frames. Its texture
    weight, face region and background were two thirds of
    :func:`pair_evidence`'s time; they are computed once per original crop.
    Entries are keyed on a sample of the pixels and checked against a copy
    of the whole crop and of the landmarks (the same arrays, never the same
    objects), so the result is the same as without the cache. The least
    recently used entries go beyond :attr:`budget` bytes. Thread-safe.
    """

    budget = 48 << 20

    def __init__(self):
        from collections import OrderedDict
        import threading

        self._entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(real: np.ndarray, landmarks: Optional[np.ndarray], size: tuple[int, int]) -> tuple:
        step = max(1, min(real.shape[:2]) // 16)
        sample = real[::step, ::step].tobytes()
        points = None if landmarks is None else np.asarray(landmarks, np.float64).tobytes()
        return real.shape, str(real.dtype), tuple(size), sample, points

    def get(self, real: np.ndarray, landmarks: Optional[np.ndarray],
            size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = self._key(real, landmarks, size)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None and np.array_equal(entry[0], real):
            return entry[1]
        value = _original_side(real, landmarks, size)
        for a in value:
            a.flags.writeable = False  # shared by every fake of this original
        copy = np.array(real)
        nbytes = copy.nbytes + sum(a.nbytes for a in value)
        if nbytes > self.budget:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (copy, value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.budget:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped[2]
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


_ORIGINAL_SIDE = _OriginalSides()


def _stack_shapes(stack: np.ndarray, h: int, face8: np.ndarray, side: int, min_px: float) -> list[dict]:
    """The shape operators of every (opened) thresholded map of ``stack``: per map, name -> uint8 (h, w) mask.

    ``stack`` is uint8 (M, h + g, w): the M maps, each followed by ``g`` empty
    rows, ``g`` at least every kernel's radius and ``h + g`` even. Each
    operator runs once on the whole stack, with the result of running it map
    by map: no kernel reaches across the empty rows (they are what a map's
    own zero border reads; they are emptied again between a closing's
    dilation and its erosion), no component or contour spans them, and the
    labelling's order within a map is its own (the labelling scans rows in
    pairs; ``h + g`` even keeps every map's pairs).

    Per map, absent when no component of at least ``min_px`` pixels survives:
    ``raw`` (the kept components closed, holes filled), ``component`` (one
    convex hull per kept component: the hull of its outer contour, the same
    points whether it is traced alone or among the others, which never
    touch it), ``largest`` (the hull of the largest, the first in label
    order on ties), ``all`` (the hull of every outer contour), the component
    hulls dilated (``grown``) and eroded (``shrunk``) by :data:`GROW` and the
    largest one's dilated (``grown_largest``); all within the face.
    """
    m, hg, w = stack.shape
    flat = stack.reshape(m * hg, w)
    face_pad = np.zeros((hg, w), np.uint8)
    face_pad[:h] = face8
    n, labels = cv2.connectedComponents(flat, connectivity=8)  # the areas by bincount: 4x faster than its stats
    areas = np.bincount(labels.reshape(-1), minlength=n)
    keep = np.flatnonzero(areas[1:] >= min_px) + 1
    out: list = [{} for _ in range(m)]
    if keep.size == 0:
        return out
    if keep.size == n - 1:  # every component kept: the maps as they are
        kept = flat
    else:
        lut = np.zeros(n, np.uint8)
        lut[keep] = 1
        kept = np.take(lut, labels)
    closed = kept
    kernel = _hull._disk(CLOSE * side)
    if kernel is not None:  # the closing with a zero border: dilation, the gaps emptied, erosion
        closed = cv2.dilate(kept, kernel).reshape(m, hg, w)
        closed[:, h:] = 0
        closed = cv2.erode(closed.reshape(m * hg, w), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    raw = np.zeros_like(kept)
    cv2.drawContours(raw, contours, -1, 1, thickness=cv2.FILLED)  # the closed maps, holes filled
    contours, _ = cv2.findContours(kept, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    by_label: dict = {}
    by_map: dict = {}  # every map's outer contours, in the order findContours gives them
    for c in contours:
        x, y = c[0, 0]
        by_label.setdefault(int(labels[y, x]), []).append(c)
        by_map.setdefault(int(y) // hg, []).append(c)
    comp, largest, every = (np.zeros((m * hg, w), np.uint8) for _ in range(3))
    hulls = {}
    for lab in keep:
        parts = by_label.get(int(lab))
        if parts is None:  # inside a hole of another component: no outer contour of its own in this map
            parts, _ = cv2.findContours((labels == lab).view(np.uint8), cv2.RETR_EXTERNAL,
                                        cv2.CHAIN_APPROX_SIMPLE)
        hulls[lab] = cv2.convexHull(np.concatenate(parts))
        cv2.fillConvexPoly(comp, hulls[lab], 1)
    # the map of every kept component: labels number components in scan order, so map i's are those above
    # every earlier map's largest label, up to its own
    which = np.searchsorted(np.maximum.accumulate(labels.reshape(m, hg * w).max(1)), keep, side="left")
    present = np.unique(which)
    for i in present:
        labs = keep[which == i]
        cv2.fillConvexPoly(largest, hulls[labs[int(np.argmax(areas[labs]))]], 1)
        cv2.fillConvexPoly(every, cv2.convexHull(np.concatenate(by_map[int(i)])), 1)
    shapes = {name: (a.reshape(m, hg, w) & face_pad).reshape(m * hg, w)
              for name, a in (("raw", raw), ("component", comp), ("largest", largest), ("all", every))}
    kernel = _hull._disk(GROW * side)
    if kernel is not None:  # compression blurs an edit's edge: the hulls may be systematically too small or large
        shapes["grown"] = cv2.dilate(shapes["component"], kernel)
        shapes["shrunk"] = cv2.erode(shapes["component"], kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        shapes["grown_largest"] = cv2.dilate(shapes["largest"], kernel)
    for name in ("grown", "grown_largest"):
        if name in shapes:
            shapes[name] = (shapes[name].reshape(m, hg, w) & face_pad).reshape(m * hg, w)
    stacked = {name: a.reshape(m, hg, w) for name, a in shapes.items()}
    for i in present:
        out[int(i)] = {name: a[i, :h] for name, a in stacked.items()}
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


def candidate_masks(ev: Evidence, mscc: Optional[np.ndarray] = None,
                    extra_levels: Sequence[tuple[str, float, float]] = ()) -> tuple[np.ndarray, list[dict]]:
    """Every distinct candidate mask of the pair at the working size.

    Parameters
    ----------
    ev : Evidence
    mscc : ndarray of bool, shape (H, W), optional
        The MSCC mask at the crop size, added as a candidate (area-resized).
    extra_levels : sequence of (source, parameter, level)
        Thresholds of ``ev.d`` tried after :func:`thresholds`' (none by
        default; ``scripts/evidence_proxy.py`` adds fixed levels of a learned map).

    Returns
    -------
    masks : ndarray of bool, shape (K, h, w)
        K may be 0 (nothing clears any threshold and no MSCC mask).
    info : list of K dicts
        ``source`` (one of :data:`SOURCES`), ``shape`` (one of
        :data:`SHAPES`, or the source's name for rules / mscc), ``param``
        (k, Otsu variant or peak fraction), ``level`` (gray levels, 0 for
        rules / mscc), ``trim`` (0, or :data:`TRIM` for a hull-shaped
        candidate's downstream-trimmed copy, which follows all the others).
    """
    h, w = ev.d.shape
    side = min(h, w)
    min_px = MIN_AREA * h * w
    found: list = []  # (mask, record) in the order they are made; duplicates and empty masks dropped at the end

    def add(mask: np.ndarray, record: dict) -> None:
        found.append((mask, record))

    face8 = ev.face.view(np.uint8)
    levels = thresholds(ev)
    if extra_levels:
        have = {round(float(np.log(t)), 2) for _, _, t in levels}
        levels += [(a, float(b), float(t)) for a, b, t in extra_levels if round(float(np.log(t)), 2) not in have]
    # every thresholded map in one stack, each followed by g empty rows (:func:`_stack_shapes`)
    g = max([1] + [int(round(f * side)) for f in (OPEN, CLOSE, GROW)])
    g += (h + g) % 2
    hg = h + g
    stack = np.zeros((len(levels), hg, w), np.uint8)
    np.greater(ev.d[None], np.array([t for _, _, t in levels], np.float64)[:, None, None], out=stack[:, :h].view(bool))
    stack[:, :h] &= face8
    kernel = _hull._disk(OPEN * side)
    if kernel is not None:  # the opening, map by map: the gaps read as the erosion's border (ignored), then empty
        stack[:, h:] = 1
        stack = cv2.erode(stack.reshape(-1, w), kernel).reshape(stack.shape)
        stack[:, h:] = 0
        stack = cv2.dilate(stack.reshape(-1, w), kernel).reshape(stack.shape)
        stack[:, h:] = 0
    picked, opened_seen = [], set()
    for i in range(len(levels)):
        key = np.packbits(stack[i, :h]).tobytes()
        # an empty map has no shape; the same opened map as a lower threshold's: every shape would be a duplicate
        if key in opened_seen or not stack[i, :h].any():
            continue
        opened_seen.add(key)
        picked.append(i)
    if picked:
        for i, shapes in zip(picked, _stack_shapes(stack[picked], h, face8, side, min_px)):
            src, p, t = levels[i]
            for name, m in shapes.items():
                add(m, {"source": src, "shape": name, "param": p, "level": t})
    # the rules' background levels, Otsu split and noise are the evidence's (same residual, same defaults)
    rules = _hull.rules_on_residual(ev.d, ev.face, ev.outside, levels=(ev.low, ev.high), otsu=ev.otsu,
                                    noise=(ev.med, ev.spread))
    add(rules, {"source": "rules", "shape": "rules", "param": 0.0, "level": 0.0})
    if mscc is not None and mscc.any():
        small = cv2.resize(mscc.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
        add(small, {"source": "mscc", "shape": "mscc", "param": 0.0, "level": 0.0})
    masks, info = _distinct(found, h, w)
    for record in info:
        record["trim"] = 0.0
    hulls = [i for i, record in enumerate(info) if record["shape"] in TRIM_SHAPES]
    if not hulls:
        return masks, info
    trimmed = downstream_erode(masks[hulls], max(1, round(TRIM * side)))
    found = list(zip(masks, info)) + [(m, {**info[i], "trim": TRIM}) for m, i in zip(trimmed, hulls)]
    return _distinct(found, h, w)


def directional_morph(masks: np.ndarray, r: int, *, dilate: bool, downstream: bool) -> np.ndarray:
    """Every mask dilated or eroded towards one side by an (r + 1) x (r + 1) square, zero border.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, h, w)
    r : int
        Reach in pixels, >= 1.
    dilate : bool
        Dilate (grow) or erode (shrink).
    downstream : bool
        The side: True acts on the bottom / right edges (a dilation grows the
        masks down and right, an erosion removes their bottom and right band
        of ``r`` pixels), False on the top / left edges.

    Returns
    -------
    ndarray of bool, shape (K, h, w)
        Each mask as ``cv2.dilate`` / ``cv2.erode`` would give it alone (the
        masks run as one stack, ``r`` empty rows apart).
    """
    k, h, w = masks.shape
    if k == 0:
        return masks.copy()
    stack = np.zeros((k, h + r, w), np.uint8)
    stack[:, :h] = masks
    # the anchor picks the side: at (r, r) the square reaches up / left of each pixel, at (0, 0) down / right;
    # a dilation grows a mask away from where the square reaches, an erosion removes the band facing it
    reach_up_left = dilate == downstream
    anchor = (r, r) if reach_up_left else (0, 0)
    op = cv2.dilate if dilate else cv2.erode
    # the square never reaches past the empty rows below a mask (down) or above it (the previous gap / border)
    out = op(stack.reshape(k * (h + r), w), np.ones((r + 1, r + 1), np.uint8), anchor=anchor,
             borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(k, h + r, w)[:, :h].view(bool)


def downstream_erode(masks: np.ndarray, r: int) -> np.ndarray:
    """``masks`` (bool (K, h, w)) with their bottom and right band of ``r`` pixels removed: a pixel stays
    when the ``r`` pixels below and right of it (the square between) are all in its mask."""
    return directional_morph(masks, r, dilate=False, downstream=True)


def _distinct(found: list, h: int, w: int) -> tuple[np.ndarray, list[dict]]:
    """The non-empty masks of ``found`` ((h, w) 0 / 1 masks with their records), each kept at its first
    occurrence: bool (K, h, w) and the K records. All masks are packed to bits in one call (8x less to
    hash; the same bytes as packing each alone, every row being padded alike)."""
    if not found:
        return np.zeros((0, h, w), bool), []
    block = np.empty((len(found), h * w), np.uint8)
    for row, (mask, _) in zip(block, found):
        row[:] = mask.reshape(-1).view(np.uint8)  # 0 / 1 values (bool or uint8 masks)
    packed = np.packbits(block, axis=1)
    filled = packed.any(1)
    keep, seen = [], set()
    for j in np.flatnonzero(filled).tolist():
        key = packed[j].tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(j)
    if not keep:
        return np.zeros((0, h, w), bool), []
    return block[keep].view(bool).reshape(len(keep), h, w), [found[j][1] for j in keep]


def to_crop(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working-size bool mask at the crop size ``shape`` (bilinear, > 0.5)."""
    H, W = shape
    if mask.shape == (H, W):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR) > 0.5
