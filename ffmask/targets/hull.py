"""``hull``: a manipulation mask that adapts to the compression noise floor.

The MSCC procedure min-max normalises the SSIM difference of the whole
crop and keeps everything above 8 % of its range, then fills one convex hull
of every surviving pixel. With independent compression of the original and
the fake (FF++ c40) every pixel differs, so the hull swallows the whole crop.

``hull`` instead asks, for each crop, how large a difference compression
alone produces, and keeps what stands out from that:

1. residual ``d`` = per-pixel mean over RGB of ``|real - fake|``, Gaussian
   smoothed (sigma relative to the crop side). Smoothing averages the
   block-wise, zero-mean-ish compression error away faster than the
   spatially coherent manipulation signal.
   The residual is then divided by the local texture of the original
   (:func:`texture_weight`): an encoder quantises busy regions (hair,
   cheeks, patterned clothes) harder than flat ones, so the same
   compression leaves a larger residual there than on a flat background.
2. noise floor from the border ring of the crop (the crop is the face box
   enlarged by 1.3, so its outer ring lies outside the face): ``floor =
   median + k * 1.4826 * MAD`` of ``d`` on the ring, never below
   ``min_level``. The ring statistics, not the crop's range, set the scale.
3. strong pixels: ``d > max(floor, rel * p99(d on the face core))``; with
   ``low < 1`` weaker pixels (``d > low * threshold``) join when connected to
   strong ones (hysteresis; off by default). An opening removes isolated
   noise specks, a closing joins the pieces of one region.
4. connected components are kept when they reach into the central face
   region (or, with landmarks, the landmark hull) and are not tiny; one
   convex hull of the kept ones (or one per component with
   ``per_component=True``) is filled, so background compression blobs never
   enter the hull.
5. a final dilation restores the feathered rim of the blend, whose
   differences fall below any noise-aware threshold.
6. with landmarks, everything stays inside their convex hull grown by
   ``margin``: face manipulations change the face, and at c40 the hull
   would otherwise spread over compression noise on the neck and hair.

Identical images give an all-zero mask. Only numpy and OpenCV; about
4 ms per 224 x 224 crop. Method and benchmark: docs/hull.md.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ffmask.targets._validate import check_pair, check_positive
from ffmask.targets.registry import register_method

__all__ = ["hull_mask", "noise_floor", "residual", "texture_weight"]

# Defaults tuned on synthetic FF++ trees (seeds 11 and 12, identities
# 000-005), reported on other seeds and identities: see docs/hull.md.
SIGMA = 0.012       # Gaussian sigma of the residual, fraction of the crop side
RING = 0.08         # width of the border ring used for the noise floor
K = 2.0             # floor = median + K * robust sigma on the ring
MIN_LEVEL = 2.0     # floor never below this many gray levels (uint8 scale)
OPEN = 0.02         # opening radius, fraction of the side
CLOSE = 0.04        # closing radius
MIN_AREA = 0.01    # components smaller than this fraction of the crop are noise
CORE = 0.25         # central region: ellipse with this radius (fraction of the side)
GROW = 0.03        # final dilation radius
REL = 0.2           # strong pixels: above this share of the robust peak difference
LOW = 1.0           # weak pixels: above this share of the strong threshold
TEXTURE = 1.0       # strength of the texture normalisation (0: off)
TEXTURE_SIGMA = 0.03  # Gaussian sigma of the texture energy, fraction of the side
MARGIN = 0.03       # with landmarks: the mask stays within their hull grown by this


def _disk(radius_px: float) -> Optional[np.ndarray]:
    r = int(round(radius_px))
    if r < 1:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def residual(real: np.ndarray, fake: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Smoothed absolute difference: float32 (H, W), in gray levels [0, 255].

    ``mean_c |real - fake|`` Gaussian blurred with sigma ``sigma * min(H, W)``
    pixels (no blur when that is below 0.3 px).
    """
    real, fake = check_pair(real, fake)
    d = cv2.absdiff(real, fake).astype(np.float32).mean(axis=2)
    s = sigma * min(d.shape)
    if s >= 0.3:
        d = cv2.GaussianBlur(d, (0, 0), s, borderType=cv2.BORDER_REFLECT)
    return d


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
    energy = cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), max(0.3, sigma * min(gray.shape)),
                              borderType=cv2.BORDER_REFLECT)
    typical = max(float(np.median(energy)), 1e-3)
    return ((1.0 + strength * energy / typical) / (1.0 + strength)).astype(np.float32)


def _ring(shape: tuple[int, int], width: float) -> np.ndarray:
    h, w = shape
    b = max(1, int(round(width * min(h, w))))
    ring = np.ones((h, w), dtype=bool)
    ring[b:h - b, b:w - b] = False
    return ring


def noise_floor(d: np.ndarray, ring: float = RING, k: float = K, min_level: float = MIN_LEVEL) -> float:
    """Level above which a residual counts as manipulation, gray levels.

    ``max(min_level, median + k * 1.4826 * MAD)`` of ``d`` on the border
    ring of relative width ``ring``.
    """
    values = d[_ring(d.shape, ring)]
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return max(float(min_level), med + k * 1.4826 * mad)


def _landmark_hull(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 1 inside the convex hull of the landmarks."""
    region = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.round(landmarks).astype(np.int32).reshape(-1, 1, 2)), 1)
    return region


def _core(shape: tuple[int, int], radius: float, landmark_hull: Optional[np.ndarray]) -> np.ndarray:
    """The region a kept component must touch: the landmark hull, else a central disk."""
    if landmark_hull is not None and landmark_hull.any():
        return landmark_hull.astype(bool)
    h, w = shape
    core = np.zeros((h, w), dtype=np.uint8)
    cv2.ellipse(core, (w // 2, h // 2), (max(1, int(radius * min(h, w))),) * 2, 0, 0, 360, 1, -1)
    return core.astype(bool)


def _check_landmarks(landmarks, shape) -> Optional[np.ndarray]:
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"landmarks must be an (N, 2) array of x, y with N >= 3, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        return None  # NaN landmarks (unknown) fall back to the central region
    return pts


def hull_mask(
    real: np.ndarray,
    fake: np.ndarray,
    landmarks: Optional[np.ndarray] = None,
    *,
    sigma: float = SIGMA,
    ring: float = RING,
    k: float = K,
    min_level: float = MIN_LEVEL,
    open_radius: float = OPEN,
    close_radius: float = CLOSE,
    min_area: float = MIN_AREA,
    core: float = CORE,
    grow: float = GROW,
    rel: float = REL,
    low: float = LOW,
    texture: float = TEXTURE,
    texture_sigma: float = TEXTURE_SIGMA,
    margin: float = MARGIN,
    per_component: bool = False,
) -> np.ndarray:
    """Manipulation mask of a fake face crop against its original.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB crops of the original and the fake with the same box (the face
        roughly centred, as :func:`ffmask.faces.crop_box` makes them).
    landmarks : ndarray, shape (N, 2), optional
        Face landmarks (x, y) in crop pixels (the 68 dlib points that
        ``ffmask annotate`` passes); their convex hull replaces the central
        ellipse as the region a kept component must touch, and the mask is
        kept within that hull grown by ``margin``. NaNs mean unknown.
    sigma, ring, open_radius, close_radius, grow, core, texture_sigma, margin : float
        Lengths as fractions of the shorter crop side (see the module
        docstring); ``core`` is the radius of the central ellipse.
    texture : float
        Strength of the texture normalisation (:func:`texture_weight`);
        0 turns it off.
    k : float
        Robust standard deviations above the ring median for the floor.
    min_level : float
        Lowest floor, gray levels; guards near-lossless pairs whose ring
        residual is exactly zero.
    min_area : float
        Components below this fraction of the crop area are dropped.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region; all False for identical images.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, bad
        landmarks or non-positive parameters.
    """
    real, fake = check_pair(real, fake)
    for name, value in (("sigma", sigma), ("ring", ring), ("k", k), ("min_level", min_level),
                        ("core", core)):
        check_positive(value, name)
    check_positive(texture_sigma, "texture_sigma")
    for name, value in (("open_radius", open_radius), ("close_radius", close_radius),
                        ("min_area", min_area), ("grow", grow), ("texture", texture), ("margin", margin)):
        if not (np.isfinite(float(value)) and float(value) >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if ring >= 0.5:
        raise ValueError(f"ring must be below 0.5 (a border ring of the crop), got {ring!r}")
    pts = _check_landmarks(landmarks, real.shape[:2])
    h, w = real.shape[:2]
    side = min(h, w)
    empty = np.zeros((h, w), dtype=bool)

    d = residual(real, fake, sigma)
    if texture > 0 and d.any():
        d /= texture_weight(real, texture, texture_sigma)
    landmark_hull = _landmark_hull((h, w), pts) if pts is not None else None
    centre = _core((h, w), core, landmark_hull)
    floor = noise_floor(d, ring, k, min_level)
    # Strong evidence: well above the floor and a fair share of the crop's
    # strongest (robust) difference; weak pixels join only when connected
    # to strong ones (hysteresis), so noise blobs far from them drop out.
    peak = float(np.percentile(d[centre], 99)) if centre.any() else float(d.max())
    high = max(floor, rel * peak)
    strong = d > high
    if not strong.any():
        return empty
    weak = (d > max(min_level, low * high)).astype(np.uint8)
    kernel = _disk(open_radius * side)
    if kernel is not None:
        weak = cv2.morphologyEx(weak, cv2.MORPH_OPEN, kernel)
    kernel = _disk(close_radius * side)
    if kernel is not None:
        weak = cv2.morphologyEx(weak, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    face = None
    if landmark_hull is not None:
        kernel = _disk(margin * side)
        face = landmark_hull if kernel is None else cv2.dilate(landmark_hull, kernel)
        weak &= face

    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    seeded = np.zeros(n, dtype=bool)
    seeded[np.unique(labels[strong])] = True
    touching = np.zeros(n, dtype=bool)
    touching[np.unique(labels[centre])] = True
    keep = seeded & touching & (stats[:, cv2.CC_STAT_AREA] >= min_area * h * w)
    keep[0] = False
    out = np.zeros((h, w), dtype=np.uint8)
    if not keep.any():
        return empty
    if per_component:
        for lab in np.flatnonzero(keep):
            contours, _ = cv2.findContours((labels == lab).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    else:
        contours, _ = cv2.findContours(keep[labels].astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    kernel = _disk(grow * side)
    if kernel is not None and out.any():
        out = cv2.dilate(out, kernel)
    if face is not None:
        out &= face
    return out.astype(bool)


# ``--method hull``: hull_mask with its defaults (landmarks optional, keyword-only knobs)
register_method("hull", hull_mask, kind="mask", input="pair", landmarks=True)
