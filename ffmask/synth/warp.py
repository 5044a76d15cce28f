"""Geometry shared by the forgeries: piecewise-affine warps, hulls, feathering.

Points are float (N, 2) arrays of (x, y) pixel coordinates, OpenCV
convention (integer coordinates are pixel centres). Images are uint8 RGB
(H, W, 3).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

__all__ = [
    "delaunay",
    "signed_areas",
    "triangle_maps",
    "warp_triangles",
    "hull_mask",
    "feather",
    "similarity",
    "odd",
]

_SUBPIX_BITS = 4  # fillConvexPoly/fillPoly fixed-point precision: 1/16 px


def delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of (N, 2) points: int32 (T, 3) vertex indices."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"points must be (N>=3, 2), got {pts.shape}")
    return Delaunay(pts).simplices.astype(np.int32)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle: float64 (T,). The sign is the orientation."""
    p = np.asarray(points, dtype=np.float64)[triangles]
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def triangle_maps(
    src_pts: np.ndarray, dst_pts: np.ndarray, triangles: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward maps of the piecewise-affine warp that sends src_pts to dst_pts.

    For every pixel of an (H, W) = ``shape`` output inside a destination
    triangle, the map gives the source position that the triangle's affine
    transform sends there. Returns ``(map_x, map_y, covered)``: float32
    (H, W) maps ready for ``cv2.remap`` (-1 where not covered) and bool (H, W)
    coverage. Degenerate (zero-area) triangles are skipped.
    """
    h, w = shape
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    tris = np.asarray(triangles, dtype=np.int32)
    map_x = np.full((h, w), -1.0, dtype=np.float32)
    map_y = np.full((h, w), -1.0, dtype=np.float32)

    keep = np.abs(signed_areas(dst, tris)) > 1e-6
    tris = tris[keep]
    if len(tris) == 0:
        return map_x, map_y, np.zeros((h, w), dtype=bool)
    # only the bounding box of the destination triangles needs work
    used = dst[np.unique(tris)]
    x0 = int(max(0, np.floor(used[:, 0].min())))
    y0 = int(max(0, np.floor(used[:, 1].min())))
    x1 = int(min(w, np.ceil(used[:, 0].max()) + 1))
    y1 = int(min(h, np.ceil(used[:, 1].max()) + 1))
    if x1 <= x0 or y1 <= y0:
        return map_x, map_y, np.zeros((h, w), dtype=bool)

    label = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
    scale = 1 << _SUBPIX_BITS
    for k, tri in enumerate(tris):
        poly = np.rint((dst[tri] - (x0, y0)) * scale).astype(np.int32)
        cv2.fillConvexPoly(label, poly, int(k), lineType=cv2.LINE_8, shift=_SUBPIX_BITS)

    affines = np.stack([
        cv2.getAffineTransform(dst[t].astype(np.float32), src[t].astype(np.float32)) for t in tris
    ])  # (T, 2, 3): destination -> source
    ys, xs = np.nonzero(label >= 0)
    a = affines[label[ys, xs]]
    gx = (xs + x0).astype(np.float64)
    gy = (ys + y0).astype(np.float64)
    map_x[ys + y0, xs + x0] = a[:, 0, 0] * gx + a[:, 0, 1] * gy + a[:, 0, 2]
    map_y[ys + y0, xs + x0] = a[:, 1, 0] * gx + a[:, 1, 1] * gy + a[:, 1, 2]
    covered = np.zeros((h, w), dtype=bool)
    covered[ys + y0, xs + x0] = True
    return map_x, map_y, covered


def warp_triangles(
    src_img: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, triangles: np.ndarray,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-affine warp of ``src_img`` so that src_pts land on dst_pts.

    Returns ``(warped, covered)``: uint8 (H, W, 3) (black where not covered)
    and bool (H, W), for an output of ``shape`` = (H, W).
    """
    map_x, map_y, covered = triangle_maps(src_pts, dst_pts, triangles, shape)
    warped = cv2.remap(src_img, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT101)
    warped[~covered] = 0
    return warped, covered


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the filled convex hull of (N, 2) points."""
    hull = cv2.convexHull(np.asarray(points, dtype=np.float32))
    poly = np.rint(hull.reshape(-1, 2) * (1 << _SUBPIX_BITS)).astype(np.int32)
    out = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(out, poly, 1, lineType=cv2.LINE_8, shift=_SUBPIX_BITS)
    return out.astype(bool)


def feather(mask: np.ndarray, erode_px: float, sigma_px: float) -> np.ndarray:
    """Soft blending alpha from a bool mask: float32 (H, W) in [0, 1].

    The mask is eroded (``erode_px`` > 0) or dilated (< 0) by an elliptical
    kernel of that radius, then blurred with a Gaussian of ``sigma_px``.
    """
    m = mask.astype(np.uint8)
    r = int(round(abs(erode_px)))
    if r > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = cv2.erode(m, kernel) if erode_px > 0 else cv2.dilate(m, kernel)
    alpha = m.astype(np.float32)
    if sigma_px > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=float(sigma_px), borderType=cv2.BORDER_CONSTANT)
    return np.clip(alpha, 0.0, 1.0)


def similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) src -> dst: float64 (2, 3).

    Umeyama's closed form (IEEE TPAMI 13(4), 1991), without reflection.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("cannot fit a similarity transform to coincident points")
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def odd(value: float, minimum: int = 3) -> int:
    """The odd integer nearest above ``value`` (at least ``minimum``): a kernel size."""
    k = max(int(minimum), int(np.ceil(value)))
    return k if k % 2 else k + 1
