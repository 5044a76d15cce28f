"""Wavelet-domain noise residual of a face crop.

Kong, Liu, Huang, Ma & Yang, "Detect and Locate: Exposing Face Manipulation
by Semantic- and Noise-level Telltales", IEEE Transactions on Information
Forensics and Security 17 (2022). Their noise branch is supervised with the
residual that a local Wiener filter removes from the wavelet detail bands
(the classic denoiser of Mihcak et al., 1999): what is left after denoising
is the camera/compression noise that face manipulation disturbs.
"""

from __future__ import annotations


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


# The transform is PyWavelets' wavedec2/waverec2(..., "db4", mode="symmetric",
# level=4) written with OpenCV row filters in float32: ~1.7-2x faster than
# pywt's multichannel transform at 224 px (the whole noise_map), and its output
# agrees with it to float32 rounding (tests/test_noise_fast.py;
# docs/annotate.md has the figures).
_LEVEL = 4
_WINDOWS = (3, 5, 7, 9)
# PyWavelets' db4 decomposition low-pass filter, pywt.Wavelet("db4").dec_lo
# (PyWavelets 1.8); the other three filters follow from it by the
# quadrature-mirror relations (reversal and sign flips, exact in floating
# point). A constant, so that PyWavelets is not needed at all (tested against
# pywt.Wavelet("db4")).
_DEC_LO = np.array([
    -0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
    -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965])
_REC_LO = _DEC_LO[::-1]
_REC_HI = _DEC_LO * np.array([1.0, -1.0] * 4)
_DEC_HI = _REC_HI[::-1]
_TAPS = len(_DEC_LO)  # 8
# Zero rows/columns between sub-bands that share one buffer: at least the
# largest Wiener window's radius (9 // 2), so that the zero-padded box means
# of one band never see another band.
_GAP = max(_WINDOWS) // 2
# Bands of at least this many coefficients are shrunk without the
# approximation quadrant next to them (a quarter less filtering); smaller
# levels in one call (fewer calls).
_SPLIT_AREA = 48 * 48


def _phases(filt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two 4-tap polyphase components of a flipped 8-tap filter, as ``(4, 1)`` float32 kernels."""
    flipped = filt[::-1]
    return tuple(np.ascontiguousarray(flipped[start::2].reshape(-1, 1), dtype=np.float32) for start in (1, 0))


_ANALYSIS = (_phases(_DEC_LO), _phases(_DEC_HI))
_SYNTHESIS = (_phases(_REC_LO), _phases(_REC_HI))


def _correlate_rows(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``out[i] = sum_k kernel[k] * x[i + k]`` along axis 0 (zeros past the last row)."""
    return cv2.filter2D(x, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)


def _analyse_rows(x: np.ndarray, lo_out: np.ndarray, hi_out: np.ndarray) -> None:
    """One-level db4 analysis along axis 0 with symmetric extension (``pywt.dwt(x, 'db4', axis=0)``).

    ``x`` is ``(n, m, 3)`` float32; ``lo_out`` and ``hi_out`` are
    ``((n + 7) // 2, m, 3)`` float32 views that receive the approximation and
    detail coefficients. PyWavelets keeps samples ``1, 3, 5, ...`` of the full
    convolution of the extended signal; split into even and odd rows of the
    padded input, each output is two 4-tap correlations (no discarded work).
    """
    count = lo_out.shape[0]
    # BORDER_REFLECT (fedcba|abcdef) is PyWavelets' "symmetric" extension.
    padded = cv2.copyMakeBorder(x, _TAPS - 1, _TAPS - 1, 0, 0, cv2.BORDER_REFLECT)
    even, odd = padded[2::2], padded[1::2]
    for (k_even, k_odd), out in zip(_ANALYSIS, (lo_out, hi_out)):
        np.add(_correlate_rows(even, k_even)[:count], _correlate_rows(odd, k_odd)[:count], out=out)


def _synthesise_rows(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One-level db4 reconstruction along axis 0 (``pywt.idwt(lo, hi, 'db4', axis=0)``).

    ``lo`` and ``hi`` are ``(n, m, 3)`` float32; returns ``(2n - 6, m, 3)``.
    Even and odd output rows are each a 4-tap correlation of the
    coefficients (the polyphase form of upsampling by two and filtering).
    """
    count = lo.shape[0] - 3
    out = np.empty((2 * count,) + lo.shape[1:], dtype=np.float32)
    (lo_even, lo_odd), (hi_even, hi_odd) = _SYNTHESIS
    np.add(_correlate_rows(lo, lo_even)[:count], _correlate_rows(hi, hi_even)[:count], out=out[0::2])
    np.add(_correlate_rows(lo, lo_odd)[:count], _correlate_rows(hi, hi_odd)[:count], out=out[1::2])
    return out


def _analyse_level(x: np.ndarray) -> np.ndarray:
    """One 2-D db4 level of ``x`` ``(n, m, 3)``, as a transposed quad buffer.

    Returns float32 ``(2 * m1 + G, 2 * n1 + G, 3)`` with ``n1 = (n + 7) // 2``,
    ``m1 = (m + 7) // 2`` and ``G`` zero rows/columns between the quadrants:
    top-left the approximation (transposed), top-right the band that is
    detail along axis 0 and approximation along axis 1, bottom-left the
    reverse, bottom-right detail along both. Transposing between the two
    passes lets both filter along rows, where decimation is a free row
    slice; the next level works on the transposed approximation (the 2-D
    transform is separable, so the axis order changes only float rounding).
    """
    n, m = x.shape[:2]
    n1, m1, gap = (n + _TAPS - 1) // 2, (m + _TAPS - 1) // 2, _GAP
    rows = np.empty((2 * n1 + gap, m, 3), dtype=np.float32)
    rows[n1 : n1 + gap] = 0.0
    _analyse_rows(x, rows[:n1], rows[n1 + gap :])
    cols = cv2.transpose(rows)
    quad = np.empty((2 * m1 + gap, 2 * n1 + gap, 3), dtype=np.float32)
    quad[m1 : m1 + gap] = 0.0
    _analyse_rows(cols, quad[:m1], quad[m1 + gap :])
    return quad


def _synthesise_level(quad: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_analyse_level`: ``(2 * n1 - 6, 2 * m1 - 6, 3)`` float32."""
    gap = _GAP
    m1, n1 = (quad.shape[0] - gap) // 2, (quad.shape[1] - gap) // 2
    half = cv2.transpose(_synthesise_rows(quad[:m1], quad[m1 + gap :]))
    return _synthesise_rows(half[:n1], half[n1 + gap :])


def _wiener_shrink(band: np.ndarray, sigma2: float) -> np.ndarray:
    """Locally Wiener-filter detail coefficients ``(h, w, c)`` in place: ``x * s2 / (v + s2)``.

    ``v = min_w max(0, boxmean_w(x^2) - s2)`` over zero-padded windows
    w in {3, 5, 7, 9}; ``v + s2`` is written as ``max(min_w boxmean, s2)``.
    Bands that share a buffer must be ``_GAP`` zeros apart (zeros stay zero).
    Returns ``band``.
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
    band *= local
    return band


def noise_map(image: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Wavelet Wiener noise residual of an RGB image (Kong et al., TIFS 2022).

    Per channel: 4-level ``db4`` decomposition (symmetric extension); every
    detail coefficient ``x`` is replaced by ``x * s^2 / (v + s^2)`` where
    ``v = min over w in {3, 5, 7, 9} of max(0, boxmean_w(x^2) - s^2)``
    (box means over zero-padded w x w windows); the approximation band is
    set to zero; the inverse transform, cropped to the input size, is the
    residual. On images smaller than 112 px the 4 levels exceed PyWavelets'
    advised depth; they are computed anyway (boundary-dominated).

    The transform is PyWavelets' ``wavedec2``/``waverec2`` (db4, mode
    "symmetric") computed with OpenCV row filters in float32, all three
    channels at once; it equals PyWavelets' float32 transform to float32
    rounding (≤ 6e-5 in 0..255 units on 224 px crops).

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
    x = image.astype(np.float32)
    x -= np.float32(128.0)

    quads = []
    for _ in range(_LEVEL):
        quad = _analyse_level(x)
        m1, n1 = (quad.shape[0] - _GAP) // 2, (quad.shape[1] - _GAP) // 2
        x = quad[:m1, :n1]  # the approximation, analysed next (a copy is padded)
        quads.append(quad)
    residual = None
    for quad in reversed(quads):
        # Shrink the detail quadrants (the gaps stay zero). Small levels in
        # one call over the whole buffer, where call overhead dominates; the
        # approximation quadrant is overwritten next anyway: zero at the
        # coarsest level (the method drops it), else the reconstruction from
        # the level below, cut to the band size as pywt.waverec2 does.
        m1, n1 = (quad.shape[0] - _GAP) // 2, (quad.shape[1] - _GAP) // 2
        if m1 * n1 >= _SPLIT_AREA:
            _wiener_shrink(quad[m1 + _GAP :], sigma2)
            _wiener_shrink(quad[:m1, n1 + _GAP :], sigma2)
        else:
            _wiener_shrink(quad, sigma2)
        quad[:m1, :n1] = 0.0 if residual is None else residual[:m1, :n1]
        residual = _synthesise_level(quad)
    return np.ascontiguousarray(residual[:height, :width])
