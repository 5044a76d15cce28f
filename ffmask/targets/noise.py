"""Wavelet-domain noise residual of a face crop.

Kong, Liu, Huang, Ma & Yang, "Detect and Locate: Exposing Face Manipulation
by Semantic- and Noise-level Telltales", IEEE Transactions on Information
Forensics and Security 17 (2022). Their noise branch is supervised with the
residual that a local Wiener filter removes from the wavelet detail bands
(the classic denoiser of Mihcak et al., 1999): what is left after denoising
is the camera/compression noise that face manipulation disturbs.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from ffmask.targets._validate import check_positive, check_rgb

__all__ = ["SIGMA_BY_COMPRESSION", "noise_map", "sigma_for_compression"]

# Noise-residual σ by compression (Kong et al.): light compression keeps more
# camera noise, heavy compression needs a larger σ to suppress block artefacts.
SIGMA_BY_COMPRESSION = {"raw": 5.0, "c0": 5.0, "c23": 5.0, "hq": 5.0, "c40": 10.0, "lq": 10.0}
DEFAULT_SIGMA = 5.0


def sigma_for_compression(compression: str) -> float:
    """σ for a video of ``compression`` ("c23", "c40", "hq", ...; unknown or "" → 5)."""
    return SIGMA_BY_COMPRESSION.get(str(compression or "").lower(), DEFAULT_SIGMA)

_WAVELET = "db4"
_LEVEL = 4
_MODE = "symmetric"
_WINDOWS = (3, 5, 7, 9)
# The transform runs on a channel-first (3, H, W) copy: the filters then walk
# contiguous rows, which makes pywt's multichannel decomposition ~4x faster
# than over the (0, 1) axes of an (H, W, 3) array (benchmarks/bench_targets.py
# compares noise_map with the per-channel pywt + scipy reference).
_AXES = (-2, -1)
# Below this side length PyWavelets warns that 4 levels are too many.
# (pywt.Wavelet("db4").dec_len - 1) << 4; a constant so that PyWavelets (~25 ms
# to import) loads only in processes that compute noise maps (tested).
_MIN_SIDE = 112


def _decompose(x: np.ndarray) -> list:
    """``pywt.wavedec2`` of ``(3, H, W)`` float data over the image axes."""
    import pywt

    if min(x.shape[-2:]) >= _MIN_SIDE:
        return pywt.wavedec2(x, _WAVELET, mode=_MODE, level=_LEVEL, axes=_AXES)
    # Small crops keep the fixed 4 levels (the method's definition) and
    # should not warn on every frame.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
        return pywt.wavedec2(x, _WAVELET, mode=_MODE, level=_LEVEL, axes=_AXES)


def _wiener_shrink_chw(band: np.ndarray, sigma2: float) -> np.ndarray:
    """:func:`_wiener_shrink` of a channel-first band ``(c, h, w)`` (OpenCV filters ``(h, w, c)``)."""
    hwc = np.ascontiguousarray(band.transpose(1, 2, 0))
    return _wiener_shrink(hwc, sigma2).transpose(2, 0, 1)


def _wiener_shrink(band: np.ndarray, sigma2: float) -> np.ndarray:
    """Locally Wiener-filter one detail band ``(h, w, c)``: ``x * s2 / (v + s2)``.

    ``v = min_w max(0, boxmean_w(x^2) - s2)`` over zero-padded windows
    w in {3, 5, 7, 9}; ``v + s2`` is written as ``max(min_w boxmean, s2)``.
    """
    energy = band * band
    local = None
    for w in _WINDOWS:
        # normalize=True divides by w*w everywhere, also where the window
        # hangs over the zero border: scipy's uniform_filter(mode='constant').
        mean = cv2.boxFilter(energy, -1, (w, w), normalize=True, borderType=cv2.BORDER_CONSTANT)
        local = mean if local is None else np.minimum(local, mean, out=local)
    np.maximum(local, sigma2, out=local)
    np.divide(sigma2, local, out=local)
    local *= band
    return local


def noise_map(image: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Wavelet Wiener noise residual of an RGB image (Kong et al., TIFS 2022).

    Per channel: 4-level ``db4`` decomposition (symmetric extension); every
    detail coefficient ``x`` is replaced by ``x * s^2 / (v + s^2)`` where
    ``v = min over w in {3, 5, 7, 9} of max(0, boxmean_w(x^2) - s^2)``
    (box means over zero-padded w x w windows); the approximation band is
    set to zero; the inverse transform, cropped to the input size, is the
    residual. On images smaller than 112 px the 4 levels exceed PyWavelets'
    advised depth; they are computed anyway (boundary-dominated).

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        RGB face crop, values 0..255.
    sigma : float, optional
        Noise standard deviation in 0..255 units: 5 for c23/HQ videos,
        10 for c40/LQ.

    Returns
    -------
    ndarray of float32, shape (H, W, 3)
        The residual, in 0..255 units, centred on zero.

    Raises
    ------
    ValueError
        On wrong dtype, non-RGB shape, empty input, or ``sigma <= 0``.
    """
    image = check_rgb(image)
    sigma = check_positive(sigma, "sigma")
    sigma2 = sigma * sigma
    height, width = image.shape[:2]
    # The detail bands ignore a constant offset; removing it keeps the
    # float32 approximation coefficients small and the details accurate.
    x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)  # (3, H, W), C order
    x -= np.float32(128.0)

    coeffs = _decompose(x)
    coeffs[0] = np.zeros_like(coeffs[0])
    for i in range(1, len(coeffs)):
        coeffs[i] = tuple(_wiener_shrink_chw(band, sigma2) for band in coeffs[i])
    import pywt

    residual = pywt.waverec2(coeffs, _WAVELET, mode=_MODE, axes=_AXES)
    return np.ascontiguousarray(residual[:, :height, :width].transpose(1, 2, 0), dtype=np.float32)
