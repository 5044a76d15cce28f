"""The MSCCNet pixel-level annotation of FaceForensics++ fakes.

Miao, Chu, Tan, Jin, Gong, Zhuang, Wu, Liu, Hu & Yu, "Multi-spectral Class
Center Network for Face Manipulation Detection and Localization"
(arXiv:2305.10794). The authors re-annotated FF++ by comparing each fake
frame with its original: SSIM difference -> threshold -> dilation -> one
convex hull -> erosion -> blur. This module reproduces their script (see
``mscc_mask``), including the quirks of the skimage version they used
(``data_range=2`` for float images). Every step after the SSIM map is the
same OpenCV arithmetic, so masks are identical; the SSIM map itself is
computed from exact integer window sums and agrees with skimage's to about
1e-12, so a pixel would have to sit that close to the 0.08 threshold to
differ.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.targets._validate import SSIM_WIN, check_min_size, check_pair, gray
from ffmask.targets.comparison import ssim_full

__all__ = ["mscc_mask"]

_DILATE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_ERODE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def mscc_mask(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Binary manipulation mask of a fake face, as annotated for MSCCNet.

    The procedure (all on OpenCV RGB->GRAY images divided by 255):

    1. ``S`` = full SSIM map of (fake, real): 7x7 uniform window, sample
       covariance, K1=0.01, K2=0.03, ``data_range=2`` (the default of the
       skimage ``compare_ssim`` the authors called, for float images).
    2. ``d = 1 - S``, min-max normalised to [0, 1], Gaussian blur 5x5
       (sigma from the kernel size).
    3. keep pixels with ``d > 0.08`` whose ``uint8(fake_gray * 255)`` is
       non-zero.
    4. dilate with a 7x7 elliptical kernel, 3 iterations.
    5. contours (``RETR_TREE``, ``CHAIN_APPROX_SIMPLE``) with more than 5
       points; fill (``cv2.fillConvexPoly``) one convex hull of all of them.
    6. erode with a 5x5 elliptical kernel, 3 iterations.
    7. Gaussian blur 7x7 of the [0, 1] mask; keep ``uint8(blur * 255) > 0``.

    Identical images, or differences too weak to leave a contour, give an
    all-zero mask (the authors' script raised and skipped the frame).

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB original and fake face crops of the same shape, H, W >= 7.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, or
        images smaller than the 7x7 SSIM window.
    """
    real, fake = check_pair(real, fake)
    check_min_size(real, SSIM_WIN, "mscc_mask")
    fake_gray = gray(fake)
    height, width = fake_gray.shape
    empty = np.zeros((height, width), dtype=bool)

    d = ssim_full(fake_gray, gray(real), data_range=2.0)
    np.subtract(1.0, d, out=d)
    d_min, d_max = d.min(), d.max()
    if not d_max > d_min:
        # The authors' division by zero gives NaN everywhere, hence no pixel.
        return empty
    d -= d_min
    d /= d_max - d_min
    d = cv2.GaussianBlur(d, (5, 5), 0)

    # The authors keep uint8(fake_gray / 255 * 255) > 0; every uint8 level
    # survives that float64 round trip unchanged, so this is fake_gray > 0.
    binary = np.logical_and(d > 0.08, fake_gray > 0).view(np.uint8)
    dilated = cv2.dilate(binary, _DILATE_KERNEL, iterations=3)

    contours, _ = cv2.findContours(dilated, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    # As in the authors' script: the first long contour as is, later ones
    # by their hulls, then the hull of everything.
    long_ones = [c for c in contours if c.shape[0] > 5]
    if not long_ones:
        return empty
    points = np.concatenate(
        [long_ones[0]] + [cv2.convexHull(c, clockwise=False) for c in long_ones[1:]]
    )
    hull_mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillConvexPoly(hull_mask, cv2.convexHull(points, clockwise=False), 1)
    eroded = cv2.erode(hull_mask, _ERODE_KERNEL, iterations=3)

    # The 7x7 kernel taps are multiples of 1/64, so the blur of a 0/1 mask
    # is exact in float32 and equals the authors' float64 result; and
    # uint8(blur * 255) > 0 is blur * 255 >= 1.
    blur = cv2.GaussianBlur(eroded.astype(np.float32), (7, 7), 0)
    return blur * np.float32(255.0) >= np.float32(1.0)
