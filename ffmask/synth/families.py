"""Manipulation families: region x operation x blending x strength, drawn independently.

The four FF++-named presets (:mod:`ffmask.synth.forge`) each change one kind
of place in one way. A mask method tuned on them learns *where* those four
change things. A family forgery draws the four parts independently:

- **region** (:data:`REGIONS`): ``hull`` (all 68 landmarks), ``inner``
  (jaw without the ear ends + brows), ``mouth``, ``eyes`` (eyes + brows, one
  hull or one per side), ``nose``, ``cheek`` (one side), ``forehead``,
  ``blob`` (a random rough ellipse on the face); every region is scaled or
  grown at random, from small to large.
- **operation** (:data:`OPERATIONS`): ``swap`` (another face warped onto
  the landmarks, colour matched), ``resample`` (down and up again at a random
  factor and interpolation), ``blur``, ``sharpen``, ``color`` (Lab
  brightness / chroma / contrast shift), ``warp`` (local similarity: scale,
  rotation, shift), ``noise`` (Gaussian noise or blurred texture),
  ``jpeg`` (a JPEG round trip), ``expression`` (mouth, brow and eye
  landmarks moved by a piecewise-affine mesh warp).
- **blend** (:data:`BLENDS`): ``hard``, ``feather`` (Gaussian alpha of
  random width), ``seamless`` (Poisson, ``cv2.seamlessClone``).
- **strength** in [0, 1]: from barely visible (0: a change of a few gray
  levels, e.g. a 2.5-unit Lab lightness shift or a one-pixel blur) to
  obvious (1); each operation maps it onto its own parameter range.

:func:`draw_family` draws everything a forgery needs into a JSON-ready dict
(the noise, too, comes from a seed in it), so :func:`forge_family` is a pure
function of ``(frame, landmarks, source, source landmarks, params)``: the
same params on every frame of a video give a consistent forgery that
follows the face.

The true mask is the exact support of the change: ``any(fake != target)``
over the channels. Feathering and Poisson blending reach beyond the region
they were given, and a weak operation may leave some pixels of the region
untouched; the mask records what actually changed, nothing else.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import cv2
import numpy as np

from ffmask.synth.forge import (
    _DF_REGION,
    _check,
    _composite,
    _down_axis,
    _face_width,
    _mesh_warp,
    _roi,
    _safe_warp_points,
    reinhard_transfer,
)
from ffmask.synth.warp import delaunay, feather, hull_mask, warp_triangles

__all__ = [
    "REGIONS",
    "OPERATIONS",
    "BLENDS",
    "AXES",
    "parse_axis",
    "draw_family",
    "family_name",
    "region_mask",
    "forge_family",
]

REGIONS = ("hull", "inner", "mouth", "eyes", "nose", "cheek", "forehead", "blob")
OPERATIONS = ("swap", "resample", "blur", "sharpen", "color", "warp", "noise", "jpeg", "expression")
BLENDS = ("hard", "feather", "seamless")
AXES = {"region": REGIONS, "operation": OPERATIONS, "blend": BLENDS}

_EYES = np.r_[17:27, 36:48]
_EYE_SIDES = (np.r_[17:22, 36:42], np.r_[22:27, 42:48])
_NOSE = np.arange(27, 36)
_MOUTH = np.arange(48, 60)
# one cheek per side: jaw points, mouth corner, nostril, lower eyelid
_CHEEKS = (np.r_[1:6, 48, 31, 40, 41], np.r_[11:16, 54, 35, 46, 47])
_SEAMLESS_BORDER = 3  # cv2.seamlessClone needs the mask off the image border


def parse_axis(axis: str, value) -> tuple[str, ...]:
    """``"mouth,eyes"`` (or a list) -> the canonical subset of ``AXES[axis]``, in order.

    ``None`` or ``"all"`` -> every value. ValueError for an unknown name.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    allowed = AXES[axis]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return allowed
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise ValueError(f"{axis} must be a comma-separated subset of {','.join(allowed)}, got {value!r}")
    return tuple(v for v in allowed if v in names)


def family_name(params: dict) -> str:
    """``region/operation/blend`` of a drawn family."""
    return f"{params['region']}/{params['operation']}/{params['blend']}"


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 6)


def _lerp(lo: float, hi: float, s: float) -> float:
    return lo + (hi - lo) * s


def draw_family(
    rng: np.random.Generator,
    *,
    regions: Optional[Iterable[str]] = None,
    operations: Optional[Iterable[str]] = None,
    blends: Optional[Iterable[str]] = None,
    strength: Optional[tuple[float, float]] = None,
) -> dict:
    """Draw one family forgery's parameters (JSON-ready) from ``rng``.

    regions, operations, blends : subsets to draw from (default: all).
    strength : (lo, hi) range within [0, 1] (default (0, 1)).
    """
    regions = parse_axis("region", regions)
    operations = parse_axis("operation", operations)
    blends = parse_axis("blend", blends)
    lo, hi = (0.0, 1.0) if strength is None else (float(strength[0]), float(strength[1]))
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"strength must be a range within [0, 1], got {strength!r}")
    p = {
        "region": str(rng.choice(regions)),
        "operation": str(rng.choice(operations)),
        "blend": str(rng.choice(blends)),
        "strength": _u(rng, lo, hi),
    }
    r = p["region"]
    # region geometry (fractions of the face width unless said otherwise)
    if r in ("hull", "inner"):
        p["scale"] = _u(rng, 0.8, 1.05) if r == "hull" else _u(rng, 0.75, 1.0)
    elif r in ("mouth", "nose", "eyes"):
        p["grow"] = _u(rng, 0.01, 0.12)
        if r == "eyes":
            p["sides"] = str(rng.choice(["both", "each", "left", "right"]))
    elif r == "cheek":
        p["side"] = int(rng.integers(2))
        p["scale"] = _u(rng, 0.55, 1.0)
    elif r == "forehead":
        p["height"] = _u(rng, 0.1, 0.35)
        p["width"] = _u(rng, 0.5, 1.0)
    elif r == "blob":
        p["center"] = [round(float(v), 6) for v in rng.dirichlet(np.ones(4))]  # weights of 4 landmarks
        p["anchors"] = [int(v) for v in rng.choice(68, size=4, replace=False)]
        p["radii"] = [_u(rng, 0.06, 0.3), _u(rng, 0.06, 0.3)]
        p["angle"] = _u(rng, 0, 180)
        p["wobble"] = [round(float(v), 6) for v in rng.uniform(-0.25, 0.25, size=6)]
    # operation
    s = p["strength"]
    op = p["operation"]
    if op == "swap":
        p["color_match"] = bool(rng.random() < 0.7)
    elif op == "resample":
        p["factor"] = round(_lerp(0.5, 0.12, s) * float(rng.uniform(0.85, 1.15)), 6)
        p["interpolation"] = str(rng.choice(["linear", "cubic", "nearest"]))
    elif op == "blur":
        p["sigma"] = round(_lerp(0.008, 0.035, s) * float(rng.uniform(0.8, 1.2)), 6)
    elif op == "sharpen":
        p["sigma"] = _u(rng, 0.005, 0.02)
        p["amount"] = round(_lerp(0.6, 2.5, s), 6)
    elif op == "color":
        hue = float(rng.uniform(0, 2 * math.pi))
        chroma = _lerp(2.0, 12.0, s) * float(rng.uniform(0.3, 1))
        p["lab_shift"] = [round(float(rng.choice([-1, 1])) * _lerp(2.5, 15.0, s) * float(rng.uniform(0.6, 1)), 6),
                          round(chroma * math.cos(hue), 6), round(chroma * math.sin(hue), 6)]
        p["contrast"] = round(1.0 + float(rng.choice([-1, 1])) * _lerp(0.03, 0.35, s) * float(rng.uniform(0, 1)), 6)
    elif op == "warp":
        p["zoom"] = round(1.0 + float(rng.choice([-1, 1])) * _lerp(0.02, 0.15, s) * float(rng.uniform(0.5, 1)), 6)
        p["rotate"] = round(float(rng.choice([-1, 1])) * _lerp(1.5, 12.0, s) * float(rng.uniform(0.5, 1)), 6)
        p["shift"] = [round(float(v) * _lerp(0.01, 0.05, s), 6) for v in rng.uniform(-1, 1, 2)]
    elif op == "noise":
        p["kind"] = str(rng.choice(["gaussian", "texture"]))
        p["level"] = round(_lerp(3.0, 16.0, s), 6)
        p["grain"] = _u(rng, 0.5, 2.5)  # texture blur sigma, px
        p["mono"] = bool(rng.random() < 0.5)
        p["noise_seed"] = int(rng.integers(2**31))
    elif op == "jpeg":
        p["quality"] = int(round(_lerp(45, 5, s)))
    elif op == "expression":
        p["mouth_open"] = round(_lerp(0.02, 0.09, s) * float(rng.uniform(0.5, 1)), 6)
        p["smile"] = round(float(rng.choice([-1, 1])) * _lerp(0.01, 0.05, s) * float(rng.uniform(0.5, 1)), 6)
        p["brow_raise"] = round(float(rng.uniform(-0.5, 1)) * _lerp(0.01, 0.05, s), 6)
        p["eye_squint"] = round(float(rng.uniform(0, 1)) * _lerp(0.0, 0.02, s), 6)
    # blending
    if p["blend"] == "feather":
        p["feather"] = _u(rng, 0.01, 0.08)   # Gaussian sigma, fraction of the face width
        p["erode"] = _u(rng, -1.0, 2.0)      # in feather sigmas (negative: grown)
    return p


# ------------------------------------------------------------------ regions

def _scaled_hull(points: np.ndarray, scale: float, shape) -> np.ndarray:
    c = points.mean(0)
    return hull_mask(c + scale * (points - c), shape)


def _grown(mask: np.ndarray, px: float) -> np.ndarray:
    r = int(round(px))
    if r < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def region_mask(lms: np.ndarray, shape: tuple[int, int], params: dict) -> np.ndarray:
    """bool (H, W): the region of a drawn family on a face with (68, 2) landmarks."""
    fw = _face_width(lms)
    r = params["region"]
    if r == "hull":
        return _scaled_hull(lms, params["scale"], shape)
    if r == "inner":
        return _scaled_hull(lms[_DF_REGION], params["scale"], shape)
    if r == "mouth":
        return _grown(hull_mask(lms[_MOUTH], shape), params["grow"] * fw)
    if r == "nose":
        return _grown(hull_mask(lms[_NOSE], shape), params["grow"] * fw)
    if r == "eyes":
        sides = params.get("sides", "both")
        if sides == "both":
            m = hull_mask(lms[_EYES], shape)
        else:
            picked = {"each": _EYE_SIDES, "left": _EYE_SIDES[:1], "right": _EYE_SIDES[1:]}[sides]
            m = np.zeros(shape, bool)
            for idx in picked:
                m |= hull_mask(lms[idx], shape)
        return _grown(m, params["grow"] * fw)
    if r == "cheek":
        return _scaled_hull(lms[_CHEEKS[params["side"]]], params["scale"], shape)
    if r == "forehead":
        brows = lms[17:27]
        c = brows.mean(0)
        brows = c + (brows - c) * np.array([params["width"], 1.0])
        up = -_down_axis(lms) * params["height"] * fw
        return hull_mask(np.vstack([brows - 0.02 * fw * _down_axis(lms), brows + up]), shape)
    if r == "blob":
        w = np.asarray(params["center"], np.float64)
        centre = (w[:, None] * lms[params["anchors"]]).sum(0)
        a, b = (v * fw for v in params["radii"])
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        wob = np.asarray(params["wobble"], np.float64)
        radius = 1.0 + sum(wob[k] * np.cos((k + 2) * t + wob[(k + 3) % 6] * 6) for k in range(3))
        ang = math.radians(params["angle"])
        x, y = a * radius * np.cos(t), b * radius * np.sin(t)
        pts = np.stack([centre[0] + x * math.cos(ang) - y * math.sin(ang),
                        centre[1] + x * math.sin(ang) + y * math.cos(ang)], 1)
        out = np.zeros(shape, np.uint8)
        cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)
        # on the face: within the landmark hull grown by 10 % of the face width
        return out.astype(bool) & _grown(hull_mask(lms, shape), 0.1 * fw)
    raise ValueError(f"unknown region {r!r}; choose from {', '.join(REGIONS)}")


# --------------------------------------------------------------- operations

def _box_of(mask: np.ndarray, pad: int, shape) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    h, w = shape
    return (max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1))


def _lab_shift(image: np.ndarray, shift, contrast: float, region: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    mean_l = float(lab[..., 0][region].mean()) if region.any() else 50.0
    lab[..., 0] = (lab[..., 0] - mean_l) * contrast + mean_l
    lab += np.asarray(shift, np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _expression(tgt: np.ndarray, lms: np.ndarray, p: dict) -> np.ndarray:
    fw = _face_width(lms)
    down = _down_axis(lms)
    side = np.array([-down[1], down[0]])  # across the face
    delta = np.zeros((68, 2))
    for i, wgt in {56: 1.0, 57: 1.0, 58: 1.0, 55: 0.6, 59: 0.6, 7: 0.5, 8: 0.5, 9: 0.5}.items():
        delta[i] += wgt * p["mouth_open"] * fw * down
    for i, sgn in ((48, 1.0), (54, -1.0)):  # smile: corners out and up
        delta[i] += p["smile"] * fw * (-down - sgn * side)
    delta[17:27] += -p["brow_raise"] * fw * down
    for upper, lower in ((np.r_[37, 38], np.r_[40, 41]), (np.r_[43, 44], np.r_[46, 47])):
        delta[upper] += p["eye_squint"] * fw * down
        delta[lower] -= p["eye_squint"] * fw * down
    centre = lms.mean(0)
    ring = centre + 1.25 * (lms[np.r_[0:17, 17:27]] - centre)
    points = np.vstack([lms[:60], ring])
    tris = delaunay(points)
    moved = _safe_warp_points(points, np.vstack([delta[:60], np.zeros_like(ring)]), tris)
    warped, _ = _mesh_warp(tgt, points, moved, tris, min_shift=0.0)
    return warped


def _operation(tgt: np.ndarray, lms: np.ndarray, region: np.ndarray, p: dict,
               source: Optional[np.ndarray], source_lms: Optional[np.ndarray]) -> np.ndarray:
    """The manipulated layer: uint8 RGB of ``tgt``'s shape, to be blended over ``region``."""
    shape = tgt.shape[:2]
    fw = _face_width(lms)
    op = p["operation"]
    if op == "swap":
        if source is None:
            raise ValueError("the swap operation needs a source face")
        warped, covered = warp_triangles(source, source_lms, lms, delaunay(lms), shape)
        layer = np.where(covered[..., None], warped, tgt)
        if p.get("color_match", True):
            inner = region & covered
            layer = reinhard_transfer(layer, tgt, inner if inner.sum() >= 16 else covered)
        return layer
    if op == "resample":
        x0, y0, x1, y1 = _box_of(region, 4, shape)
        crop = tgt[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        sw, sh = max(2, round(cw * p["factor"])), max(2, round(ch * p["factor"]))
        interp = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}[p["interpolation"]]
        out = tgt.copy()
        out[y0:y1, x0:x1] = cv2.resize(cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA), (cw, ch),
                                       interpolation=interp)
        return out
    if op == "blur":
        return cv2.GaussianBlur(tgt, (0, 0), max(0.3, p["sigma"] * fw), borderType=cv2.BORDER_REFLECT)
    if op == "sharpen":
        f = tgt.astype(np.float32)
        blur = cv2.GaussianBlur(f, (0, 0), max(0.5, p["sigma"] * fw), borderType=cv2.BORDER_REFLECT)
        return np.clip(np.rint(f + p["amount"] * (f - blur)), 0, 255).astype(np.uint8)
    if op == "color":
        return _lab_shift(tgt, p["lab_shift"], p["contrast"], region)
    if op == "warp":
        ys, xs = np.nonzero(region)
        c = (float(xs.mean()), float(ys.mean()))
        m = cv2.getRotationMatrix2D(c, p["rotate"], p["zoom"])
        m[:, 2] += np.asarray(p["shift"]) * fw
        return cv2.warpAffine(tgt, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if op == "noise":
        rng = np.random.default_rng(p["noise_seed"])
        n = rng.standard_normal(shape + ((1,) if p["mono"] else (3,))).astype(np.float32)
        if p["kind"] == "texture":
            n = cv2.GaussianBlur(n, (0, 0), p["grain"])
            n = (n / max(float(n.std()), 1e-6)).reshape(shape + (-1,))
        return np.clip(np.rint(tgt.astype(np.float32) + p["level"] * n), 0, 255).astype(np.uint8)
    if op == "jpeg":
        x0, y0, x1, y1 = _box_of(region, 8, shape)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(tgt[y0:y1, x0:x1, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
        out = tgt.copy()
        out[y0:y1, x0:x1] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return out
    if op == "expression":
        return _expression(tgt, lms, p)
    raise ValueError(f"unknown operation {op!r}; choose from {', '.join(OPERATIONS)}")


# ----------------------------------------------------------------- blending

def _blend(tgt: np.ndarray, layer: np.ndarray, region: np.ndarray, fw: float, p: dict) -> np.ndarray:
    kind = p["blend"]
    if kind == "hard":
        return np.where(region[..., None], layer, tgt)
    if kind == "feather":
        sigma = p["feather"] * fw
        alpha = feather(region, erode_px=p["erode"] * sigma, sigma_px=sigma)
        return _composite(tgt, layer, alpha)[0]
    if kind == "seamless":
        h, w = region.shape
        m = region.copy()
        b = _SEAMLESS_BORDER
        m[:b], m[-b:], m[:, :b], m[:, -b:] = False, False, False, False
        if m.sum() < 16:
            return tgt.copy()
        x, y, bw, bh = cv2.boundingRect(m.astype(np.uint8))
        # seamlessClone centres the mask's bounding box on ``center``
        centre = (x + bw // 2, y + bh // 2)
        out = cv2.seamlessClone(np.ascontiguousarray(layer[..., ::-1]), np.ascontiguousarray(tgt[..., ::-1]),
                                m.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE)
        # OpenCV writes its whole bounding box back (+-1 rounding outside the
        # mask); the blend is the mask's, one pixel of rim included
        keep = _grown(m, 1)
        return np.where(keep[..., None], out[..., ::-1], tgt)
    raise ValueError(f"unknown blend {kind!r}; choose from {', '.join(BLENDS)}")


def forge_family(
    target: np.ndarray, target_lms: np.ndarray, params: dict,
    source: Optional[np.ndarray] = None, source_lms: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a drawn family (:func:`draw_family`) to one frame.

    target : uint8 RGB (H, W, 3) with float (68, 2) landmarks ``target_lms``.
    source, source_lms : the other face, needed by the ``swap`` operation.

    Returns
    -------
    fake : uint8 RGB (H, W, 3)
    mask : bool (H, W), exactly the pixels where ``fake != target`` (any channel).
    """
    lms = _check(target, target_lms, "target")
    if params["operation"] == "swap":
        if source is None or source_lms is None:
            raise ValueError("the swap operation needs a source frame and its landmarks")
        s_lms = _check(source, source_lms, "source")

    def core(tgt, local):
        region = region_mask(local, tgt.shape[:2], params)
        if not region.any():
            return tgt.copy(), np.zeros(tgt.shape[:2], bool)
        layer = _operation(tgt, local, region, params,
                           source if params["operation"] == "swap" else None,
                           s_lms if params["operation"] == "swap" else None)
        fake = _blend(tgt, layer, region, _face_width(local), params)
        return fake, np.any(fake != tgt, axis=2)

    # the swap warps a whole other frame, so it runs on the full frame
    if params["operation"] == "swap":
        return core(target, lms)
    x0, y0, x1, y1 = _roi(lms, target.shape[:2], 0.6)
    fake_c, mask_c = core(target[y0:y1, x0:x1], lms - (x0, y0))
    fake = target.copy()
    fake[y0:y1, x0:x1] = fake_c
    mask = np.zeros(target.shape[:2], dtype=bool)
    mask[y0:y1, x0:x1] = mask_c
    return fake, mask
