"""Four face manipulations in the spirit of FaceForensics++'s methods, with true masks.

Each ``forge_*`` function takes an uncompressed target frame (uint8 RGB
(H, W, 3)) with its dlib 68 landmarks (float (68, 2), (x, y)) and returns
``(fake, mask)``: the manipulated frame (uint8 RGB, same shape) and the
ground-truth mask (bool (H, W), True = manipulated). The mask is exactly the
support of the manipulation: every pixel where the blending alpha (after a
small cut-off, ``ALPHA_EPS``) or the warp displacement is non-zero, and
``fake == target`` everywhere outside it.

- **Deepfakes**: identity swap of the inner face. The source face is warped
  onto the target landmarks (piecewise affine over the Delaunay triangles),
  degraded to an autoencoder's working resolution (64 or 96 px), colour
  matched with Reinhard's transfer in Lab, and blended with a feathered mask
  of the inner face.
- **FaceSwap**: graphics swap of the whole landmark convex hull: the same
  warp at full resolution, colour corrected by the ratio of Gaussian blurs
  (the classic dlib face-swap recipe) and blended with a narrow feather.
- **Face2Face**: expression transfer confined to the lower face: mouth and
  chin landmarks move towards the source's mouth shape plus a jaw-opening
  animation; the frame is warped piecewise-affinely between fixed anchors.
- **NeuralTextures**: the mouth region is re-rendered: slightly re-posed,
  at a neural renderer's lower resolution and with a small colour shift,
  blended with a feathered mask around the mouth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ffmask.synth.motion import transform_points
from ffmask.synth.warp import (
    delaunay,
    feather,
    hull_mask,
    odd,
    signed_areas,
    similarity,
    triangle_maps,
    warp_triangles,
)

__all__ = [
    "METHODS",
    "ALPHA_EPS",
    "forge_deepfakes",
    "forge_faceswap",
    "forge_face2face",
    "forge_neuraltextures",
    "reinhard_transfer",
    "draw_params",
    "forge_frame",
]

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")

# Alpha below this is treated as "untouched": the feather is cut there so
# that the mask is exactly the set of pixels the method altered.
ALPHA_EPS = 0.02

# dlib 68-point groups
_JAW = np.arange(0, 17)
_BROWS = np.arange(17, 27)
_STABLE = np.r_[27:48]  # nose and eyes: they define the head pose
_MOUTH_OUTER = np.arange(48, 60)
_DF_REGION = np.r_[2:15, 17:27]  # inner face: jaw without the ear ends, brows

# How far each point moves when the jaw opens by 1 (in face-axis units):
# lower lip fully, corners a little, the chin part of the way. The inner
# lip points stay out of the warp meshes: on a closed mouth they coincide,
# and triangles across the lip line would fold as soon as it opens.
_OPEN_WEIGHTS = {
    56: 1.0, 57: 1.0, 58: 1.0, 55: 0.6, 59: 0.6, 48: 0.3, 54: 0.3,
    7: 0.6, 8: 0.6, 9: 0.6, 6: 0.4, 10: 0.4, 5: 0.15, 11: 0.15,
}
_MESH = np.arange(0, 60)  # all landmarks but the inner lips
_CHEEK_LINKS = ((48, (3, 31, 41)), (54, (13, 35, 46)))
_MOUTH_OPEN_WEIGHTS = {k: v for k, v in _OPEN_WEIGHTS.items() if k >= 48}
_MIN_AREA = 1.0  # px^2 (doubled); slivers below this may fold harmlessly


def _check(image: np.ndarray, lms: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 RGB (H, W, 3), got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    lms = np.asarray(lms, dtype=np.float64)
    if lms.shape != (68, 2) or not np.isfinite(lms).all():
        raise ValueError(f"{name} landmarks must be finite (68, 2), got {lms.shape}")
    return lms


def _face_width(lms: np.ndarray) -> float:
    return float(np.linalg.norm(lms[16] - lms[0]))


def _down_axis(lms: np.ndarray) -> np.ndarray:
    """Unit vector pointing from the brow line to the chin (the face's 'down')."""
    v = lms[8] - lms[27]
    return v / max(np.linalg.norm(v), 1e-6)


def _composite(target: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``layer`` over ``target`` with alpha cut at ALPHA_EPS; returns (fake, mask)."""
    a = np.clip((alpha - ALPHA_EPS) / (1.0 - ALPHA_EPS), 0.0, 1.0).astype(np.float32)
    mask = a > 0
    a3 = a[..., None]
    blend = a3 * layer.astype(np.float32) + (1.0 - a3) * target.astype(np.float32)
    fake = target.copy()
    fake[mask] = np.clip(np.rint(blend[mask]), 0, 255).astype(np.uint8)
    return fake, mask


def _roi(lms: np.ndarray, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) around the landmarks plus ``margin`` x face width, clipped.

    Every manipulation is confined well inside this box (alpha and warps
    reach at most ~0.3 face widths past the landmarks), so computing on the
    crop gives the same result as on the whole frame, several times faster.
    """
    pad = margin * _face_width(lms)
    lo, hi = lms.min(0) - pad, lms.max(0) + pad
    h, w = shape
    return (int(max(0, math.floor(lo[0]))), int(max(0, math.floor(lo[1]))),
            int(min(w, math.ceil(hi[0]) + 1)), int(min(h, math.ceil(hi[1]) + 1)))


def _in_roi(target: np.ndarray, lms: np.ndarray, core) -> tuple[np.ndarray, np.ndarray]:
    """Run ``core(crop, crop_lms) -> (fake_crop, mask_crop)`` on the face box and paste back."""
    x0, y0, x1, y1 = _roi(lms, target.shape[:2], 0.6)
    fake_c, mask_c = core(target[y0:y1, x0:x1], lms - (x0, y0))
    fake = target.copy()
    fake[y0:y1, x0:x1] = fake_c
    mask = np.zeros(target.shape[:2], dtype=bool)
    mask[y0:y1, x0:x1] = mask_c
    return fake, mask


def reinhard_transfer(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer in CIE Lab, statistics taken over ``region``.

    image, reference: uint8 RGB (H, W, 3); region: bool (H, W) where both are
    measured. Every pixel of ``image`` is shifted and scaled per Lab channel
    so that, over ``region``, its mean and standard deviation match the
    reference's. Returns uint8 RGB. A region of fewer than 16 pixels returns
    ``image`` unchanged.
    """
    for name, arr in (("image", image), ("reference", reference)):
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{name} must be uint8 RGB (H, W, 3), got {arr.dtype} {arr.shape}")
    if image.shape != reference.shape or region.shape != image.shape[:2] or region.dtype != bool:
        raise ValueError(f"image {image.shape}, reference {reference.shape} and bool region "
                         f"{region.shape} must match")
    if region.sum() < 16:
        return image.copy()
    lab_i = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab_r = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    pi, pr = lab_i[region], lab_r[region]
    mu_i, sd_i = pi.mean(0), pi.std(0)
    mu_r, sd_r = pr.mean(0), pr.std(0)
    # a flat region would blow the ratio up; contrast changes stay moderate
    ratio = np.clip(sd_r / np.maximum(sd_i, 1e-3), 0.5, 2.0)
    out = (lab_i - mu_i) * ratio + mu_r
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _square_box(points: np.ndarray, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1), square around points enlarged by ``margin``, clipped."""
    lo, hi = points.min(0), points.max(0)
    c = (lo + hi) / 2
    half = max(hi - lo) * (1 + margin) / 2
    h, w = shape
    x0, y0 = int(max(0, math.floor(c[0] - half))), int(max(0, math.floor(c[1] - half)))
    x1, y1 = int(min(w, math.ceil(c[0] + half) + 1)), int(min(h, math.ceil(c[1] + half) + 1))
    return x0, y0, x1, y1


def _resample(image: np.ndarray, box, factor_or_size, up=cv2.INTER_CUBIC) -> np.ndarray:
    """Down-sample the box of ``image`` (area) and back up: what a low-res generator leaves."""
    x0, y0, x1, y1 = box
    out = image.copy()
    crop = image[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    if ch < 2 or cw < 2:
        return out
    if isinstance(factor_or_size, float):
        sw, sh = max(2, round(cw * factor_or_size)), max(2, round(ch * factor_or_size))
    else:
        sw = sh = int(factor_or_size)
    if sw >= cw and sh >= ch:
        return out
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = cv2.resize(small, (cw, ch), interpolation=up)
    return out


def forge_deepfakes(
    target: np.ndarray, target_lms: np.ndarray, source: np.ndarray, source_lms: np.ndarray,
    *, resolution: int = 64, feather_frac: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """Deepfakes-style identity swap of the inner face.

    target/source: uint8 RGB frames (sizes may differ) with (68, 2)
    landmarks. resolution: side in pixels of the face as the "autoencoder"
    renders it (the FF++ Deepfakes model works at 64 px). feather_frac:
    Gaussian feather sigma as a fraction of the face width. Returns
    (fake uint8 RGB, mask bool (H, W)).
    """
    t_lms = _check(target, target_lms, "target")
    s_lms = _check(source, source_lms, "source")
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")

    def core(tgt, lms):
        shape = tgt.shape[:2]
        fw = _face_width(lms)
        warped, covered = warp_triangles(source, s_lms, lms, delaunay(lms), shape)
        filled = np.where(covered[..., None], warped, tgt)
        rendered = _resample(filled, _square_box(lms, shape, 0.1), int(resolution))
        region = hull_mask(lms[_DF_REGION], shape)
        sigma = feather_frac * fw
        alpha = feather(region, erode_px=2.5 * sigma + 0.04 * fw, sigma_px=sigma) * covered
        inner = alpha > 0.5
        rendered = reinhard_transfer(rendered, tgt, inner if inner.any() else region)
        return _composite(tgt, rendered, alpha)

    return _in_roi(target, t_lms, core)


def forge_faceswap(
    target: np.ndarray, target_lms: np.ndarray, source: np.ndarray, source_lms: np.ndarray,
    *, feather_frac: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """FaceSwap-style graphics swap of the convex hull of all 68 landmarks.

    The source face is warped onto the target landmarks at full resolution;
    its colours are corrected by ``warped * blur(target) / blur(warped)``
    with a Gaussian of 0.6 x the inter-ocular distance; the hull is blended
    with a feather of ``feather_frac`` x face width. Returns (fake, mask).
    """
    t_lms = _check(target, target_lms, "target")
    s_lms = _check(source, source_lms, "source")

    def core(tgt, lms):
        shape = tgt.shape[:2]
        fw = _face_width(lms)
        warped, covered = warp_triangles(source, s_lms, lms, delaunay(lms), shape)
        filled = np.where(covered[..., None], warped, tgt).astype(np.float32)
        eyes = np.linalg.norm(lms[36:42].mean(0) - lms[42:48].mean(0))
        k = odd(0.6 * eyes)
        blur_t = cv2.GaussianBlur(tgt.astype(np.float32), (k, k), 0)
        blur_w = cv2.GaussianBlur(filled, (k, k), 0)
        ratio = np.clip(blur_t / np.maximum(blur_w, 1.0), 1 / 3, 3.0)
        corrected = np.clip(filled * ratio, 0, 255)
        sigma = feather_frac * fw
        alpha = feather(hull_mask(lms, shape), erode_px=2.5 * sigma, sigma_px=sigma) * covered
        return _composite(tgt, corrected, alpha)

    return _in_roi(target, t_lms, core)


def _safe_warp_points(points: np.ndarray, delta: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """points + s * delta with the largest s in {1, 0.7, 0.49, ...} that folds no triangle."""
    before = signed_areas(points, triangles)
    solid = np.abs(before) >= _MIN_AREA
    before = before[solid]
    scale = 1.0
    for _ in range(12):
        moved = points + scale * delta
        after = signed_areas(moved, triangles)[solid]
        if np.all(np.sign(after) == np.sign(before)) and np.all(np.abs(after) >= 0.2 * np.abs(before)):
            return moved
        scale *= 0.7
    return points.copy()


def _mesh_warp(image: np.ndarray, points: np.ndarray, moved: np.ndarray, triangles: np.ndarray,
               min_shift: float):
    """Warp ``image`` so that ``points`` go to ``moved``; returns (warped, changed).

    changed: bool (H, W), the pixels whose content comes from more than
    ``min_shift`` pixels away; every other pixel is left exactly as it was.
    """
    h, w = image.shape[:2]
    map_x, map_y, covered = triangle_maps(points, moved, triangles, (h, w))
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    changed = covered & (np.hypot(map_x - gx, map_y - gy) > min_shift)
    warped = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    out = image.copy()
    out[changed] = warped[changed]
    return out, changed


def forge_face2face(
    target: np.ndarray, target_lms: np.ndarray, source_lms: np.ndarray,
    *, strength: float = 0.7, mouth_open: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Face2Face-style reenactment of the lower face.

    The source's mouth shape (its landmarks aligned to the target's head
    pose by a similarity fit on eyes and nose, mouth centroid kept) is
    blended in with ``strength`` in [0, 1], and the jaw opens by
    ``mouth_open`` x face width (0 to ~0.1). Outer-lip and chin landmarks
    move; eyes, brows, nose, the upper jaw line and a ring of anchors 20 % outside
    the face stay put, so the warp is confined to the lower face. Returns
    (fake, mask): the mask is every pixel whose content moved by more than
    half a pixel.
    """
    t_lms = _check(target, target_lms, "target")
    s_lms = np.asarray(source_lms, dtype=np.float64)
    if s_lms.shape != (68, 2) or not np.isfinite(s_lms).all():
        raise ValueError(f"source landmarks must be finite (68, 2), got {s_lms.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    fw = _face_width(t_lms)
    aligned = transform_points(s_lms, similarity(s_lms[_STABLE], t_lms[_STABLE])).astype(np.float64)
    delta = np.zeros((68, 2))
    shape_delta = aligned[_MOUTH_OUTER] - t_lms[_MOUTH_OUTER]
    delta[_MOUTH_OUTER] = strength * (shape_delta - shape_delta.mean(0))
    # an expression, not a new mouth: bound each point's move
    norms = np.linalg.norm(delta, axis=1, keepdims=True)
    delta *= np.minimum(1.0, 0.06 * fw / np.maximum(norms, 1e-9))
    down = _down_axis(t_lms)
    for i, wgt in _OPEN_WEIGHTS.items():
        delta[i] += wgt * mouth_open * fw * down

    def core(tgt, lms):
        center = lms.mean(0)
        ring = center + 1.2 * (lms[np.r_[_JAW, _BROWS]] - center)
        # fixed cheek points half-way from the mouth corners to the jaw, nose
        # and lower eyelids keep the mouth's pull off the upper face
        cheeks = np.array([(lms[c] + lms[k]) / 2 for c, ks in _CHEEK_LINKS for k in ks])
        points = np.vstack([lms[_MESH], ring, cheeks])
        tris = delaunay(points)
        still = np.zeros((len(points) - len(_MESH), 2))
        moved = _safe_warp_points(points, np.vstack([delta[_MESH], still]), tris)
        return _mesh_warp(tgt, points, moved, tris, min_shift=0.5)

    return _in_roi(target, t_lms, core)


def forge_neuraltextures(
    target: np.ndarray, target_lms: np.ndarray,
    *, mouth_open: float = 0.0, render_scale: float = 0.35,
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0), feather_frac: float = 0.025,
) -> tuple[np.ndarray, np.ndarray]:
    """NeuralTextures-style re-rendering of the mouth region.

    The mouth is re-posed (lower lip down by ``mouth_open`` x face width),
    re-rendered at ``render_scale`` of the resolution (area down-sampling,
    bilinear up-sampling: the smooth texture of a neural renderer), shifted
    in shading and colour by ``tint`` = (dL, da, db) CIE Lab units, and
    blended with a feathered mask: the outer-lip hull dilated by 7 % of the
    face width. Returns (fake, mask).
    """
    t_lms = _check(target, target_lms, "target")
    if not 0.05 <= render_scale <= 1.0:
        raise ValueError(f"render_scale must be in [0.05, 1], got {render_scale}")
    if len(tint) != 3:
        raise ValueError(f"tint must be (dL, da, db), got {tint!r}")

    def core(tgt, lms):
        shape = tgt.shape[:2]
        fw = _face_width(lms)
        mouth = lms[_MOUTH_OUTER]
        mc = mouth.mean(0)
        ring = mc + 1.9 * (lms[_MOUTH_OUTER] - mc)
        delta = np.zeros_like(mouth)
        down = _down_axis(lms)
        for i, wgt in _MOUTH_OPEN_WEIGHTS.items():
            delta[i - 48] = wgt * mouth_open * fw * down
        points = np.vstack([mouth, ring])
        tris = delaunay(points)
        moved = _safe_warp_points(points, np.vstack([delta, np.zeros_like(ring)]), tris)
        reposed, _ = _mesh_warp(tgt, points, moved, tris, min_shift=0.0)

        sigma = feather_frac * fw
        alpha = feather(hull_mask(lms[_MOUTH_OUTER], shape), erode_px=-0.07 * fw, sigma_px=sigma)
        box = _square_box(ring, shape, 0.3)
        rendered = _resample(reposed, box, float(render_scale), up=cv2.INTER_LINEAR)
        if any(tint):
            x0, y0, x1, y1 = box
            lab = cv2.cvtColor(rendered[y0:y1, x0:x1].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
            lab += np.asarray(tint, dtype=np.float32)
            rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
            rendered[y0:y1, x0:x1] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        return _composite(tgt, rendered, alpha)

    return _in_roi(target, t_lms, core)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 6)


def draw_params(method: str, rng: np.random.Generator) -> dict:
    """Per-video constants of a manipulation, drawn from ``rng`` (JSON-ready).

    Face2Face and NeuralTextures also get a mouth animation:
    ``open_amp`` (fraction of face width), ``open_hz`` and ``open_phase``;
    NeuralTextures a ``tint``: lightness +-2-5 and chroma 4-8 Lab units
    in a random direction.
    """
    if method == "Deepfakes":
        return {"resolution": int(rng.choice([64, 96])), "feather_frac": _uniform(rng, 0.025, 0.04)}
    if method == "FaceSwap":
        return {"feather_frac": _uniform(rng, 0.012, 0.025)}
    if method == "Face2Face":
        return {"strength": _uniform(rng, 0.5, 0.9), "open_amp": _uniform(rng, 0.04, 0.08),
                "open_hz": _uniform(rng, 0.8, 1.6), "open_phase": _uniform(rng, 0, 2 * math.pi)}
    if method == "NeuralTextures":
        hue = float(rng.uniform(0, 2 * math.pi))
        chroma = float(rng.uniform(4.0, 8.0))
        return {"open_amp": _uniform(rng, 0.03, 0.05), "open_hz": _uniform(rng, 0.8, 1.6),
                "open_phase": _uniform(rng, 0, 2 * math.pi), "render_scale": _uniform(rng, 0.2, 0.35),
                "tint": [round(float(rng.choice([-1, 1]) * rng.uniform(2.0, 5.0)), 6),
                         round(chroma * math.cos(hue), 6), round(chroma * math.sin(hue), 6)],
                "feather_frac": _uniform(rng, 0.02, 0.03)}
    raise ValueError(f"unknown manipulation {method!r}; choose from {', '.join(METHODS)}")


def _mouth_open(params: dict, t: float) -> float:
    """Jaw opening at ``t``: oscillates between 25 % and 100 % of ``open_amp``
    (a talking mouth is never quite still)."""
    phase = 2 * math.pi * params["open_hz"] * t + params["open_phase"]
    return params["open_amp"] * (0.25 + 0.375 * (1.0 - math.cos(phase)))


def forge_frame(
    method: str, target: np.ndarray, target_lms: np.ndarray, source: np.ndarray, source_lms: np.ndarray,
    params: dict, t: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``method`` with per-video ``params`` (from :func:`draw_params`) at time ``t`` seconds."""
    if method == "Deepfakes":
        return forge_deepfakes(target, target_lms, source, source_lms, resolution=params["resolution"],
                               feather_frac=params["feather_frac"])
    if method == "FaceSwap":
        return forge_faceswap(target, target_lms, source, source_lms, feather_frac=params["feather_frac"])
    if method == "Face2Face":
        return forge_face2face(target, target_lms, source_lms, strength=params["strength"],
                               mouth_open=_mouth_open(params, t))
    if method == "NeuralTextures":
        return forge_neuraltextures(target, target_lms, mouth_open=_mouth_open(params, t),
                                    render_scale=params["render_scale"], tint=tuple(params["tint"]),
                                    feather_frac=params["feather_frac"])
    raise ValueError(f"unknown manipulation {method!r}; choose from {', '.join(METHODS)}")
