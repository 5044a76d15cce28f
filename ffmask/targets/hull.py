"""``hull``: a manipulation mask whose thresholds come from each pair's own evidence.

:func:`hull_mask` (registered as ``hull``) generates many candidate masks
from the pair's evidence -- thresholds relative to its background noise x
shape operators, plus the hand rules below and MSCC -- and returns their
vote weighted by the IoU a small learned scorer (gradient-boosted trees
exported to arrays) predicts for each: :mod:`ffmask.targets.hull_candidates`,
:mod:`~ffmask.targets.hull_features`, :mod:`~ffmask.targets.hull_select`,
recipe :mod:`~ffmask.targets.hull_select_train`, docs/hull.md and docs/hull_training.md.
:func:`hull_rules_mask` (registered as ``hull-rules``) is the hand rules
described below (``hull`` until the selector beat them on the tuning
families' leave-families-out check).
:func:`hull_net_mask` (registered as ``hull-net``, opt-in) feeds the pair's
evidence maps -- among them :func:`hull_rules_mask`'s -- to a U-Net of about
16 k parameters trained on synth families (:mod:`ffmask.targets.hull_net`,
recipe :mod:`ffmask.targets.hull_train`), and returns the hull mask plus,
inside the face region, where the net's probability exceeds 0.6. On the
held-out families it gains +0.001 / +0.014 IoU (c23 / c40) for about 3.5x
the time (docs/hull.md), so it is not the default.

The MSCC procedure min-max normalises the SSIM difference of the whole
crop and keeps everything above 8 % of its range, then fills one convex hull
of every surviving pixel. With independent compression of the original and
the fake (FF++ c40) every pixel differs, so the hull swallows the whole crop;
and any constant threshold, tuned on one generator, is wrong for the next
one's subtler or stronger edits. ``hull`` measures, for each pair, how large
a difference compression alone leaves and how large the manipulation's is,
and thresholds between the two:

1. **Residual** ``d`` = per-pixel mean over RGB of ``|real - fake|``,
   Gaussian smoothed (sigma relative to the crop side): averaging removes
   the block-wise, sign-alternating compression error faster than the
   spatially coherent manipulation. ``d`` is divided by the local texture
   of the original (:func:`texture_weight`): encoders quantise busy regions
   harder, so the same compression leaves a larger residual there.
2. **Face region and background.** With landmarks: their convex hull,
   extended upwards over the forehead (the 68 points stop at the brows),
   grown by ``margin``; the background is everything beyond that region
   grown by ``background``. Without: a central ellipse, and the border ring.
3. **Noise model from the background** (:func:`background_levels`):
   median + ``k_low`` / ``k_high`` robust sigmas (1.4826 MAD) of ``d``
   there, floored by its ``q_low`` / ``q_high`` quantiles -- what
   compression alone reaches in this crop.
4. **Confident core**: ``d > max(background high, Otsu)`` inside the face,
   Otsu's two-class threshold of ``log(1 + d)`` over the face region
   (:func:`otsu_threshold`, scikit-image's): the split between changed and
   unchanged face pixels, wherever this pair puts it. When no pixel clears
   it (a weak edit), ``d > max(background low, Otsu)``.
5. **Hysteresis**: pixels above the background's low level join when they
   are connected to the core; an opening removes specks, a closing joins
   the pieces of one region; components without core pixels or below
   ``min_area`` are dropped.
6. **Shape**: one convex hull per kept component (a region such as both
   eyes stays two regions), dilated a little, then grown by up to ``rim``
   where the residual clears the background median + ``k_rim`` robust
   sigmas (a feathered rim differs by less than the core levels, but by
   more than nothing where this pair shows one), kept inside the face region.

Nothing in the rules is a gray-level constant fitted to a generator,
except ``min_level``, a floor for near-lossless pairs. Identical images
give an all-zero mask. The rules and the selector need only numpy, OpenCV
and scikit-image; the refinement imports torch on its first call. Method and benchmark
(held-out families, identities and seeds): docs/hull.md.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ffmask.targets._validate import check_pair, check_positive
from ffmask.targets.registry import register_method

__all__ = ["hull_mask", "hull_rules_mask", "rules_on_residual", "hull_net_mask", "residual", "texture_weight",
           "face_region", "background_noise", "background_levels"]

# Defaults chosen on synth family pairs (regions hull/nose/cheek/forehead,
# operations resample/blur/color/noise/expression, Biden and Collins, seed
# 11); reported on other regions, operations, people and seeds: docs/hull.md.
SIGMA = 0.012        # Gaussian sigma of the residual, fraction of the crop side
TEXTURE = 1.0        # strength of the texture normalisation (0: off)
TEXTURE_SIGMA = 0.03  # Gaussian sigma of the texture energy, fraction of the side
FOREHEAD = 0.4       # landmark hull extended this many face widths above the brows
MARGIN = 0.03        # face region: the (extended) landmark hull grown by this
BACKGROUND = 0.06    # background: beyond the face region grown by this
ELLIPSE = 0.42       # without landmarks: central ellipse, semi-axes this (x) and 1.15x (y)
RING = 0.08          # without landmarks: the background is the border ring this wide
K_LOW = 2.0          # hysteresis low threshold: background median + K_LOW robust sigmas
K_HIGH = 3.5         # confident core: above background median + K_HIGH robust sigmas (and Otsu)
Q_LOW = 0.95         # ... and at least these background quantiles
Q_HIGH = 0.99
MIN_LEVEL = 1.0      # thresholds never below this many gray levels
OPEN = 0.015         # opening radius, fraction of the side
CLOSE = 0.03         # closing radius
MIN_AREA = 0.002     # components below this fraction of the crop are dropped
GROW = 0.005        # final dilation radius
RIM = 0.03           # the hull then grows up to this far where the residual clears the rim level
K_RIM = 1.0          # rim level: background median + K_RIM robust sigmas


def _disk(radius_px: float) -> Optional[np.ndarray]:
    r = int(round(radius_px))
    if r < 1:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _fill_hull(out: np.ndarray, part: np.ndarray) -> None:
    """Paint into uint8 ``out`` the convex hull of the uint8 mask ``part``'s pixels (nothing when empty)."""
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)


def abs_difference(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """``mean_c |real - fake|`` of validated uint8 RGB crops: float32 (H, W), unsmoothed.

    The channel sum is exact in integers and divided by 3 in float32: the
    same values as ``absdiff(real, fake).astype(float32).mean(axis=2)``, at
    a tenth of its time.
    """
    a = cv2.absdiff(real, fake)
    total = a[..., 0].astype(np.uint16)
    total += a[..., 1]
    total += a[..., 2]
    out = total.astype(np.float32)
    out /= np.float32(3.0)
    return out


def residual(real: np.ndarray, fake: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Smoothed absolute difference: float32 (H, W), in gray levels [0, 255].

    ``mean_c |real - fake|`` Gaussian blurred with sigma ``sigma * min(H, W)``
    pixels (no blur when that is below 0.3 px).
    """
    real, fake = check_pair(real, fake)
    d = abs_difference(real, fake)
    s = sigma * min(d.shape)
    if s >= 0.3:
        d = cv2.GaussianBlur(d, (0, 0), s, borderType=cv2.BORDER_REFLECT)
    return d


def _aligned_empty(shape: tuple, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts at a multiple of ``align`` bytes."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.empty(n + align, np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start:start + n].view(dtype).reshape(shape)


def texture_weight(real: np.ndarray, strength: float = TEXTURE, sigma: float = TEXTURE_SIGMA) -> np.ndarray:
    """Per-pixel divisor that evens out texture-dependent compression error.

    ``w = (1 + strength * T / median(T)) / (1 + strength)`` where ``T`` is the
    Sobel gradient magnitude of the grey original, Gaussian blurred with
    sigma ``sigma * min(H, W)`` pixels. A pixel of median texture gets
    ``w = 1`` (its residual keeps its gray-level scale); flat pixels get
    ``w < 1``, busy ones ``w > 1``.

    Parameters
    ----------
    real : ndarray of uint8, shape (H, W, 3)
    strength : float >= 0
        0 gives all ones.
    sigma : float > 0

    Returns
    -------
    ndarray of float32, shape (H, W), positive.
    """
    gray = cv2.cvtColor(real, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if strength == 0:
        return np.ones(gray.shape, np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    # cv2.magnitude's last bit depends on its output's address modulo 32 (OpenCV 4.14, SIMD): a fixed,
    # 64-byte aligned buffer makes the weight the same on every call
    magnitude = _aligned_empty(gray.shape, np.float32)
    cv2.magnitude(gx, gy, magnitude)
    energy = cv2.GaussianBlur(magnitude, (0, 0), max(0.3, sigma * min(gray.shape)), borderType=cv2.BORDER_REFLECT)
    typical = max(float(np.median(energy)), 1e-3)
    return ((1.0 + strength * energy / typical) / (1.0 + strength)).astype(np.float32)


def _ring(shape: tuple[int, int], width: float) -> np.ndarray:
    h, w = shape
    b = max(1, int(round(width * min(h, w))))
    ring = np.ones((h, w), dtype=bool)
    ring[b:h - b, b:w - b] = False
    return ring


def _landmark_hull(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 1 inside the convex hull of the landmarks."""
    region = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.round(landmarks).astype(np.int32).reshape(-1, 1, 2)), 1)
    return region


def _check_landmarks(landmarks, shape) -> Optional[np.ndarray]:
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"landmarks must be an (N, 2) array of x, y with N >= 3, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        return None  # NaN landmarks (unknown) fall back to the central region
    return pts




#: unit vectors of the 32-gon that stands in for a disk around each hull vertex (:func:`_grown_hull`)
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1)


def _near_boundary(points: np.ndarray, margin: float = 1.5) -> np.ndarray:
    """The float (N, 2) ``points`` that are hull vertices or within ``margin`` px of their convex hull's edges.

    A point deeper inside moves every point of its 32-gon at least ``margin - sqrt(2) > 0`` px inside the hull
    of the other points' rounded 32-gons (rounding moves a point by at most sqrt(2) / 2 px, the hull's
    support in any direction by as much), so leaving it out changes neither the hull nor its vertices.
    """
    idx = cv2.convexHull(points.astype(np.float32), returnPoints=False).reshape(-1)
    if idx.size < 3:
        return points
    v = points[idx]
    edge = np.roll(v, -1, axis=0) - v
    length = np.hypot(edge[:, 0], edge[:, 1])
    if np.any(length == 0):
        return points
    # the hull's vertex order (either orientation): signed distance inside, by the polygon's own orientation
    area2 = np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1])
    sign = 1.0 if area2 > 0 else -1.0
    rel = points[:, None, :] - v[None, :, :]
    dist = sign * (edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]) / length[None, :]
    keep = dist.min(axis=1) <= margin
    keep[idx] = True
    return points[keep]


def _grown_hull(shape: tuple[int, int], points: np.ndarray, radius: float,
                near: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 (H, W): the convex hull of ``points`` dilated by a disk of ``radius`` px.

    A convex set dilated by a disk is the hull of its vertices' disks, so a
    32-gon around every vertex fills it exactly (to the polygon's 0.5 %)
    without a large morphological kernel. Points more than 1.5 px inside
    the hull get no 32-gon: theirs could not reach the hull's boundary
    (:func:`_near_boundary`, whatever the radius: ``near`` is its result
    when the caller has it), so the result is that of every point's.
    """
    pts = np.asarray(points, np.float64)
    if radius >= 0.5:
        pts = _near_boundary(pts) if near is None else near
        pts = (pts[:, None, :] + radius * _CIRCLE[None]).reshape(-1, 2)
    return _landmark_hull(shape, pts)


def face_region(shape: tuple[int, int], landmarks: Optional[np.ndarray] = None, *, forehead: float = FOREHEAD,
                margin: float = MARGIN, background: float = BACKGROUND, ellipse: float = ELLIPSE,
                ring: float = RING) -> tuple[np.ndarray, np.ndarray]:
    """Where a face manipulation may be, and where only compression acts.

    Parameters
    ----------
    shape : (H, W)
    landmarks : ndarray (N, 2) of x, y in pixels, or None
        With the 68 dlib points, the brow points (17-26) raised by
        ``forehead`` face widths (|p16 - p0|) along the brow-to-chin axis are
        added, so the forehead counts as face.

    Returns
    -------
    face : bool (H, W)
        The convex hull of the (extended) landmarks grown by ``margin`` x the
        shorter side; without landmarks a central ellipse with semi-axes
        ``ellipse`` and ``1.15 * ellipse`` x the side.
    background : bool (H, W)
        Beyond the face region grown by ``background`` x the side; without
        landmarks (or when that leaves under 1 % of the crop) the border ring
        ``ring`` x the side wide.
    """
    h, w = shape
    side = min(h, w)
    if landmarks is None:
        face = np.zeros((h, w), np.uint8)
        cv2.ellipse(face, (w // 2, h // 2), (max(1, int(ellipse * side)), max(1, int(1.15 * ellipse * side))),
                    0, 0, 360, 1, -1)
        return face.astype(bool), _ring((h, w), ring)
    pts = np.asarray(landmarks, np.float64)
    if len(pts) == 68 and forehead > 0:
        down = pts[8] - pts[27]
        down = down / max(float(np.linalg.norm(down)), 1e-6)
        width = float(np.linalg.norm(pts[16] - pts[0]))
        pts = np.vstack([pts, pts[17:27] - forehead * width * down])
    # the points whose 32-gons can reach the hull's boundary: the same for both radii
    near = _near_boundary(pts) if (margin + background) * side >= 0.5 else None
    face = _grown_hull((h, w), pts, margin * side, near)
    outside = ~_grown_hull((h, w), pts, (margin + background) * side, near).astype(bool)
    if outside.mean() < 0.01:
        outside = _ring((h, w), ring)
    return face.astype(bool), outside


def background_noise(d: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of ``d`` over the bool ``background`` ((0, 0) when empty)."""
    values = d[background]
    if values.size == 0:
        return 0.0, 0.0
    med = float(np.median(values))
    return med, 1.4826 * float(np.median(np.abs(values - med)))


def background_levels(d: np.ndarray, background: np.ndarray, k_low: float = K_LOW, k_high: float = K_HIGH,
                      q_low: float = Q_LOW, q_high: float = Q_HIGH, min_level: float = MIN_LEVEL,
                      noise: Optional[tuple[float, float]] = None) -> tuple[float, float]:
    """How far compression alone reaches: ``(low, high)`` gray levels.

    ``max(median + k * 1.4826 * MAD, quantile q)`` of ``d`` over the bool
    ``background``, for ``(k, q) = (k_low, q_low)`` and ``(k_high, q_high)``,
    each at least ``min_level``. Median and MAD shift little when a
    manipulation reaches into the background (hair, neck); the quantile
    takes over where the noise is heavy-tailed (busy hair, patterned cloth).
    ``noise``: ``background_noise(d, background)`` when the caller has it.
    """
    values = d[background]
    if values.size == 0:
        return float(min_level), float(min_level)
    med, spread = background_noise(d, background) if noise is None else noise
    # the quantiles floor them where the noise is heavy-tailed (busy hair)
    q_lo, q_hi = np.quantile(values, [q_low, q_high])
    low, high = max(med + k_low * spread, float(q_lo)), max(med + k_high * spread, float(q_hi))
    return max(float(min_level), float(low)), max(float(min_level), float(high))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``log(1 + values)``, mapped back to the values' scale."""
    logs = np.log1p(values.astype(np.float64))
    if logs.size == 0 or np.ptp(logs) < 1e-9:
        return float(values.max()) if values.size else 0.0
    return float(np.expm1(otsu_threshold(logs.reshape(-1), nbins=128)))


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's two-class threshold of float ``values``: :func:`skimage.filters.threshold_otsu`'s value, bit for bit.

    The same operations in the same order as scikit-image 0.26 on a float
    image (``np.histogram`` over the values' range, float32 counts, bin
    centres, the between-class variance of every split and its first
    maximum), written out because importing ``skimage.filters`` imports
    ``scipy.ndimage`` (0.3-0.55 s of CPU, once in every worker process of a
    run, measured) for this one function. ``tests/test_hull_otsu.py`` checks
    the equality against scikit-image.

    Parameters
    ----------
    values : ndarray of float, shape (N,)
        N >= 1 finite values, not all equal.
    nbins : int
        Histogram bins.

    Returns
    -------
    float
        The centre of the bin that ends the lower class.
    """
    counts, edges = np.histogram(values, bins=nbins)
    counts = counts.astype(np.float32)
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.argmax(variance12)])


def _check_fraction(name: str, value: float, upper: Optional[float] = None) -> None:
    if not (np.isfinite(float(value)) and float(value) >= 0 and (upper is None or float(value) < upper)):
        bound = f" and below {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a finite number >= 0{bound}, got {value!r}")


def hull_rules_mask(
    real: np.ndarray,
    fake: np.ndarray,
    landmarks: Optional[np.ndarray] = None,
    *,
    sigma: float = SIGMA,
    texture: float = TEXTURE,
    texture_sigma: float = TEXTURE_SIGMA,
    forehead: float = FOREHEAD,
    margin: float = MARGIN,
    background: float = BACKGROUND,
    ellipse: float = ELLIPSE,
    ring: float = RING,
    k_low: float = K_LOW,
    k_high: float = K_HIGH,
    q_low: float = Q_LOW,
    q_high: float = Q_HIGH,
    min_level: float = MIN_LEVEL,
    open_radius: float = OPEN,
    close_radius: float = CLOSE,
    min_area: float = MIN_AREA,
    grow: float = GROW,
    rim: float = RIM,
    k_rim: float = K_RIM,
    per_component: bool = True,
) -> np.ndarray:
    """Manipulation mask of a fake face crop against its original by the hand rules (steps 1-6 of the module
    docstring).

    Registered as ``hull-rules``; ``hull`` (:func:`hull_mask`) was this until
    the candidate selector beat it; also an input of :func:`hull_net_mask`
    and one of the selector's candidates.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the original and the fake with the same box (the face
        roughly centred, as :func:`ffmask.faces.crop_box` makes them).
    landmarks : ndarray, shape (N, 2), optional
        Face landmarks (x, y) in crop pixels (the 68 dlib points that
        ``ffmask annotate`` passes). They place the face region and the
        background (:func:`face_region`). NaNs mean unknown (then, as
        without landmarks, a central ellipse and the border ring).
    sigma, texture_sigma, margin, background, ellipse, ring, open_radius, close_radius, grow : float
        Lengths as fractions of the shorter crop side (module docstring).
    texture : float
        Strength of the texture normalisation (:func:`texture_weight`); 0 off.
    forehead : float
        Face widths above the brows that count as face (with 68 landmarks).
    k_low, k_high : float >= 0
        Robust sigmas above the background median: the hysteresis low
        threshold and the floor of the confident core (``k_low <= k_high``).
    q_low, q_high : float in [0, 1]
        Background quantiles that floor the same two levels.
    min_level : float
        Lowest threshold, gray levels; guards near-lossless pairs.
    min_area : float
        Components below this fraction of the crop area are dropped.
    rim, k_rim : float
        After the hull (dilated by ``grow``), pixels within ``rim`` x the
        side of it join where the residual exceeds the background median +
        ``k_rim`` robust sigmas: a blend's faint rim, where this pair shows one.
    per_component : bool
        One convex hull per kept component (default) or one of them all.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region; all False for identical images.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, bad
        landmarks or out-of-range parameters.
    """
    real, fake = check_pair(real, fake)
    for name, value in (("sigma", sigma), ("texture_sigma", texture_sigma), ("ellipse", ellipse), ("ring", ring),
                        ("min_level", min_level)):
        check_positive(value, name)
    for name, value in (("texture", texture), ("forehead", forehead), ("margin", margin),
                        ("background", background), ("open_radius", open_radius),
                        ("close_radius", close_radius), ("min_area", min_area), ("grow", grow), ("rim", rim),
                        ("k_rim", k_rim)):
        _check_fraction(name, value)
    _check_fraction("ring", ring, 0.5)
    _check_fraction("k_low", k_low)
    _check_fraction("k_high", k_high)
    if k_low > k_high:
        raise ValueError(f"k_low must not exceed k_high, got {k_low!r} > {k_high!r}")
    for name, value in (("q_low", q_low), ("q_high", q_high)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    pts = _check_landmarks(landmarks, real.shape[:2])
    h, w = real.shape[:2]
    empty = np.zeros((h, w), dtype=bool)

    d = residual(real, fake, sigma)
    if not d.any():
        return empty
    if texture > 0:
        d /= texture_weight(real, texture, texture_sigma)
    face, outside = face_region((h, w), pts, forehead=forehead, margin=margin, background=background,
                                ellipse=ellipse, ring=ring)
    return rules_on_residual(d, face, outside, k_low=k_low, k_high=k_high, q_low=q_low, q_high=q_high,
                             min_level=min_level, open_radius=open_radius, close_radius=close_radius,
                             min_area=min_area, grow=grow, rim=rim, k_rim=k_rim, per_component=per_component)


def rules_on_residual(d: np.ndarray, face: np.ndarray, outside: np.ndarray, *, k_low: float = K_LOW,
                      k_high: float = K_HIGH, q_low: float = Q_LOW, q_high: float = Q_HIGH,
                      min_level: float = MIN_LEVEL, open_radius: float = OPEN, close_radius: float = CLOSE,
                      min_area: float = MIN_AREA, grow: float = GROW, rim: float = RIM, k_rim: float = K_RIM,
                      per_component: bool = True, levels: Optional[tuple[float, float]] = None,
                      otsu: Optional[float] = None, noise: Optional[tuple[float, float]] = None) -> np.ndarray:
    """Steps 3-6 of the rules on an already computed residual (parameters unchecked, as :func:`hull_mask`).

    Parameters
    ----------
    d : ndarray of float32, shape (H, W)
        Smoothed, texture-normalised residual (:func:`residual` / :func:`texture_weight`),
        at the crop's size or any working size (lengths scale with its shorter side).
    face, outside : ndarray of bool, shape (H, W)
        Face region and background (:func:`face_region`).
    levels, otsu, noise : optional
        What the rules would compute from ``d``, ``face`` and ``outside``
        when not given (a caller that already has them saves the time):
        ``background_levels(d, outside, k_low, k_high, q_low, q_high,
        min_level)``, ``_otsu(d[face])`` and ``background_noise(d, outside)``.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    h, w = d.shape
    side = min(h, w)
    empty = np.zeros((h, w), dtype=bool)
    if not d.any() or not face.any():
        return empty
    low, high = levels if levels is not None else background_levels(d, outside, k_low, k_high, q_low, q_high,
                                                                    min_level)
    # The confident core: above what compression reaches in this crop's
    # background, and on the changed side of the face's own two-class split.
    otsu = _otsu(d[face]) if otsu is None else otsu
    strong = (d > max(high, otsu)) & face
    if not strong.any():
        # nothing clears the confident level: a weak edit; its core is
        # what clears both the low level and the face's own split
        strong = (d > max(low, otsu)) & face
    if not strong.any():
        return empty
    weak = ((d > low) & face).astype(np.uint8)
    kernel = _disk(open_radius * side)
    if kernel is not None:
        weak = cv2.morphologyEx(weak, cv2.MORPH_OPEN, kernel)
    kernel = _disk(close_radius * side)
    if kernel is not None:
        weak = cv2.morphologyEx(weak, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    weak &= face.astype(np.uint8)

    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    seeded = np.zeros(n, dtype=bool)
    seeded[np.unique(labels[strong])] = True
    keep = seeded & (stats[:, cv2.CC_STAT_AREA] >= min_area * h * w)
    keep[0] = False
    if not keep.any():
        return empty
    out = np.zeros((h, w), dtype=np.uint8)
    parts = [labels == lab for lab in np.flatnonzero(keep)] if per_component else [keep[labels]]
    for part in parts:
        _fill_hull(out, part.astype(np.uint8))
    kernel = _disk(grow * side)
    if kernel is not None:
        out = cv2.dilate(out, kernel)
    kernel = _disk(rim * side)
    if kernel is not None:
        med, spread = background_noise(d, outside) if noise is None else noise
        out |= cv2.dilate(out, kernel) & (d > med + k_rim * spread).astype(np.uint8)
    return out.astype(bool) & face


def hull_mask(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None, *,
              weights=None, mscc: Optional[np.ndarray] = None) -> np.ndarray:
    """Manipulation mask of a fake face crop against its original: many candidate masks, voted by predicted IoU.

    Registered as ``hull``. Candidate masks come from the pair's own
    evidence -- its smoothed, texture-normalised residual thresholded at
    levels relative to its background noise (median + k robust sigmas,
    Otsu, fractions of the face's peak), each as is, one convex hull per
    component (also grown and shrunk), one of the largest (also grown), one
    of all; the hand rules (:func:`hull_rules_mask`, on the same residual);
    the MSCC mask -- and gradient-boosted trees trained on synth families
    predict each one's IoU from pair-normalised features (absolute and
    relative to the pair's other candidates); the mask is the candidates'
    per-pixel vote weighted by ``exp(predicted IoU / 0.05)``, so a clear
    winner is returned as it is (:mod:`ffmask.targets.hull_select`,
    docs/hull.md). numpy and OpenCV
    only; the scorer (``weights/hull_select.npz``, no pickle) is read on the
    first call.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the original and the fake with the same box (the face
        roughly centred, as :func:`ffmask.faces.crop_box` makes them), any size.
    landmarks : ndarray, shape (N, 2), optional
        Face landmarks (x, y) in crop pixels (the 68 dlib points that
        ``ffmask annotate`` passes); they place the face region and the
        background (:func:`face_region`). NaNs mean unknown (then, as
        without landmarks, a central ellipse and the border ring).
    weights : path, optional
        Another scorer file of the same layout (default: the shipped one).
    mscc : ndarray of bool, shape (H, W), optional
        ``mscc_mask(real, fake)`` when the caller has it already (the
        pipeline passes it when ``mscc`` is requested too: the registry
        entry's ``uses``); computed here when None. Another mask gives
        another result: it is one of the candidates.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region; all False for identical images.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, bad
        landmarks, an ``mscc`` mask of another shape, or an unreadable
        scorer file.
    """
    from ffmask.targets import hull_select

    real, fake = check_pair(real, fake)
    pts = _check_landmarks(landmarks, real.shape[:2])
    if mscc is not None:
        mscc = np.asarray(mscc)
        if mscc.shape != real.shape[:2]:
            raise ValueError(f"mscc mask must have the crop's shape {real.shape[:2]}, got {mscc.shape}")
        mscc = mscc.astype(bool, copy=False)
    return hull_select.select_mask(real, fake, pts, weights, mscc=mscc)


SHAPES = ("none", "component", "largest")


def _shape_step(prob: np.ndarray, face: np.ndarray, threshold: float, shape: str, min_area: float) -> np.ndarray:
    """Threshold ``prob``, drop specks, then one convex hull per component / of the largest / none."""
    h, w = prob.shape
    binary = ((prob > threshold) & face).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_area * h * w) + 1
    if keep.size == 0:
        return np.zeros((h, w), dtype=bool)
    if shape == "largest":
        keep = keep[[int(np.argmax(stats[keep, cv2.CC_STAT_AREA]))]]
    if shape == "none":
        return np.isin(labels, keep)
    out = np.zeros((h, w), dtype=np.uint8)
    for lab in keep:
        _fill_hull(out, (labels == lab).astype(np.uint8))
    return out.astype(bool) & face


def hull_net_mask(
    real: np.ndarray,
    fake: np.ndarray,
    landmarks: Optional[np.ndarray] = None,
    *,
    threshold: float = 0.6,
    with_rules: bool = True,
    shape: str = "none",
    min_area: float = MIN_AREA,
    weights=None,
) -> np.ndarray:
    """Manipulation mask of a fake face crop against its original: the hand rules plus a learned refinement.

    The pair's evidence maps (:func:`ffmask.targets.hull_net.evidence`: the
    residual over this pair's background noise level at three scales, over
    its face's Otsu split, the signed change, the hand-rule mask
    :func:`hull_rules_mask`, the texture weight, the noise level) go through a
    small U-Net trained on synth families (docs/hull.md). The mask is the
    rule mask plus, inside the face region, where the net's probability
    (upsampled to the crop) exceeds ``threshold``; components below
    ``min_area`` are dropped. (Exactly: the mean of the probability and the
    rule mask, thresholded at ``threshold / 2``.) That combination, the
    threshold and the shape were chosen on the tuning half's
    leave-regions-out check, where it beat the rules at both compressions.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the original and the fake with the same box (the face
        roughly centred, as :func:`ffmask.faces.crop_box` makes them), any size.
    landmarks : ndarray, shape (N, 2), optional
        Face landmarks (x, y) in crop pixels (the 68 dlib points that
        ``ffmask annotate`` passes); they place the face region and the
        background (:func:`face_region`). NaNs mean unknown (then, as
        without landmarks, a central ellipse and the border ring).
    threshold : float in (0, 1)
        On the net's probability.
    with_rules : bool
        Add the rule mask (default); False: the net's thresholded probability alone.
    shape : {"none", "component", "largest"}
        The thresholded pixels as they are (default), one convex hull per
        kept component, or one of the largest.
    min_area : float >= 0
        Components below this fraction of the crop are dropped.
    weights : path, optional
        Another weights file of the same architecture (default: the shipped one).

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region; all False for identical images.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, bad
        landmarks or options, or an unreadable weights file.
    """
    from ffmask.targets import hull_net

    real, fake = check_pair(real, fake)
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    _check_fraction("min_area", min_area, 1.0)
    pts = _check_landmarks(landmarks, real.shape[:2])
    net = hull_net.load_net(weights)
    h, w = real.shape[:2]
    if np.array_equal(real, fake):
        return np.zeros((h, w), dtype=bool)
    maps, face, rules = hull_net.evidence(real, fake, pts)
    prob = hull_net.refine_probability(maps, (h, w), net)
    if not with_rules:
        return _shape_step(prob, face, float(threshold), shape, float(min_area))
    return _shape_step(0.5 * (prob + rules), face, 0.5 * float(threshold), shape, float(min_area))


# ``--method hull``: the candidate selector (landmarks optional)
register_method("hull", hull_mask, kind="mask", input="pair", landmarks=True, uses=("mscc",))
# ``--method hull-rules``: the hand rules alone, every constant a keyword
register_method("hull-rules", hull_rules_mask, kind="mask", input="pair", landmarks=True)
# ``--method hull-net``: the rules plus the learned refinement (opt-in: ~3.5x the time for +0.001 / +0.014
# held-out IoU at c23 / c40, docs/hull.md)
register_method("hull-net", hull_net_mask, kind="mask", input="pair", landmarks=True)
