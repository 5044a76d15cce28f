"""Comparison maps of a fake face against its original: SSIM and difference.

These are the "manipulation map generator" baselines MG1/MG2 (difference)
and the SSIM map used by the FoCus paper (Tian et al., "Learning to Discover
Forgery Cues for Face Forgery Detection", arXiv:2409.01030) to compare with
its weak maps. SSIM is Wang, Bovik, Sheikh & Simoncelli, "Image quality
assessment: from error visibility to structural similarity", IEEE TIP 13
(2004), in scikit-image's formulation (uniform 7x7 window, sample
covariance).
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.targets._validate import SSIM_WIN, check_fraction, check_min_size, check_pair, gray

__all__ = ["ssim_map", "diff_map", "diff_mask"]

_K1 = 0.01
_K2 = 0.03
_N = SSIM_WIN * SSIM_WIN


def ssim_full(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Full SSIM map of two ``uint8`` gray images read as ``x / 255``.

    Equals ``skimage.metrics.structural_similarity(x / 255, y / 255,
    win_size=7, data_range=data_range, use_sample_covariance=True,
    full=True)[1]``: a 7x7 uniform window with ``scipy.ndimage`` 'reflect'
    borders (OpenCV ``BORDER_REFLECT``), K1=0.01, K2=0.03, no cropping.

    Parameters
    ----------
    x, y : ndarray of uint8, shape (H, W)
        Gray images, H, W >= 7.
    data_range : float
        The SSIM data range (1.0 for [0, 1] images; 2.0 reproduces the old
        skimage default for float images).

    Returns
    -------
    ndarray of float64, shape (H, W)
        The SSIM map, in [-1, 1].
    """
    # On integer gray levels every window sum is an integer, computed
    # exactly by OpenCV's integer box filter; all cancellations (variance =
    # E[x^2] - E[x]^2) are then done exactly in int32 instead of on rounded
    # float means. skimage's float64 running sums drift by ~1e-12, which is
    # all that separates the two maps.
    ab, sq, cov, var = _integer_terms(x, y)
    # With s = 255 and N = 49 pixels per window, skimage's terms become
    #   A1 = 2 ux uy + C1     -> 2ab + c1                (/ s^2 N^2)
    #   B1 = ux^2 + uy^2 + C1 -> a^2 + b^2 + c1          (/ s^2 N^2)
    #   A2 = 2 vxy + C2       -> 2 (N xy - ab) + c2      (/ s^2 N (N-1))
    #   B2 = vx + vy + C2     -> N (xx + yy) - a^2 - b^2 + c2
    # where vxy uses the sample covariance N / (N - 1); all sums < 2**31.
    c1 = (_K1 * data_range * 255.0 * _N) ** 2
    c2 = (_K2 * data_range * 255.0) ** 2 * _N * (_N - 1)
    num = ab.astype(np.float64)
    num *= 2.0  # 2ab: exact (|2ab| < 2**53)
    num += c1
    cov2 = cov.astype(np.float64)
    cov2 *= 2.0
    cov2 += c2
    num *= cov2
    den = sq.astype(np.float64)
    den += c1
    var2 = var.astype(np.float64)
    var2 += c2
    den *= var2
    num /= den
    return num


# The integer terms of the last pair ssim_full saw: mscc and ssim compare the
# same fake with the same original (mscc as (fake, original), ssim the other
# way round; SSIM's integer terms are symmetric), so when a run asks for both
# the window sums are computed once. Keyed on the pixels themselves (equal
# arrays, compared in ~10 µs), never on array identity.
_LAST_TERMS: list = []


def _integer_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(ab, a² + b², N·xy − ab, N·(xx + yy) − a² − b²)`` as int32 (read-only) of uint8 ``x``, ``y``.

    ``a, b, xx, yy, xy`` are the 7x7 window sums of x, y, x², y², xy. The
    result depends on the unordered pair {x, y}; the last pair's is reused.
    """
    last = _LAST_TERMS[:]  # one atomic copy: another thread may replace or clear the list
    if len(last) == 3:
        last_x, last_y, terms = last
        if x.shape == last_x.shape and (
                (np.array_equal(x, last_x) and np.array_equal(y, last_y))
                or (np.array_equal(x, last_y) and np.array_equal(y, last_x))):
            return terms
    a, b, xx, yy, xy = (_window_sum(v) for v in _moments(x, y))
    ab = a * b
    sq = a * a
    sq += b * b
    cov = xy
    cov *= _N
    cov -= ab
    var = xx
    var += yy
    var *= _N
    var -= sq
    terms = (ab, sq, cov, var)
    for t in terms:
        t.flags.writeable = False
    _LAST_TERMS[:] = [x.copy(), y.copy(), terms]
    return terms


def _moments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """x, y, x^2, y^2, xy of uint8 images (squares as uint16, exact)."""
    x16 = x.astype(np.uint16)
    y16 = y.astype(np.uint16)
    return x, y, x16 * x16, y16 * y16, x16 * y16


def _window_sum(v: np.ndarray) -> np.ndarray:
    """Exact int32 sums over 7x7 windows, scipy 'reflect' (OpenCV REFLECT) borders."""
    return cv2.boxFilter(
        v, cv2.CV_32S, (SSIM_WIN, SSIM_WIN), normalize=False, borderType=cv2.BORDER_REFLECT
    )


def ssim_map(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """SSIM dissimilarity map ``clip(1 - SSIM, 0, 1)`` of a fake against its original.

    Both images are converted to gray with OpenCV's RGB->GRAY weights
    (0.299, 0.587, 0.114), divided by 255, and compared with a 7x7 uniform
    window, K1=0.01, K2=0.03, sample covariance and data_range 1.0
    (Wang et al., IEEE TIP 2004, as in scikit-image). The map is full size:
    border pixels use mirrored ('reflect') neighbourhoods.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB original and fake face crops of the same shape, H, W >= 7.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Values in [0, 1]; 0 where the images are locally identical.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty or mismatched inputs, or
        images smaller than the 7x7 window.
    """
    real, fake = check_pair(real, fake)
    check_min_size(real, SSIM_WIN, "ssim_map")
    s = ssim_full(gray(real), gray(fake), data_range=1.0)
    np.subtract(1.0, s, out=s)
    np.clip(s, 0.0, 1.0, out=s)
    return s.astype(np.float32)


def diff_map(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Gray absolute difference ``gray(|real - fake|) / 255`` (MG1).

    The absolute difference is taken per RGB channel, converted to gray with
    OpenCV's RGB->GRAY (rounded to ``uint8``), then divided by 255.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB original and fake face crops of the same shape.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Values in [0, 1].
    """
    real, fake = check_pair(real, fake)
    return gray(cv2.absdiff(real, fake)).astype(np.float32) / np.float32(255.0)


def diff_mask(real: np.ndarray, fake: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Thresholded difference ``diff_map(real, fake) > threshold`` (MG2).

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        RGB original and fake face crops of the same shape.
    threshold : float in [0, 1), optional
        0.1 is the common choice (CLI name ``diff@0.1``).

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    threshold = check_fraction(threshold, "threshold")
    return diff_map(real, fake) > threshold
