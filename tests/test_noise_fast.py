"""The OpenCV db4 transform of ffmask.targets.noise against PyWavelets.

``noise_map`` computes the 4-level db4 decomposition/reconstruction with
OpenCV row filters (polyphase, float32) instead of ``pywt.wavedec2`` /
``waverec2``. These tests hold it to PyWavelets' definition: the filters,
one level along one axis (symmetric extension, also for signals shorter than
the filter), and the whole residual on real H.264 crops of many sizes
against the PyWavelets float32 formulation it replaced, including what that
does to the stored (quantised) noise records.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import pywt
from _target_refs import compressed_pair

from ffmask.shards.codec import encode_map
from ffmask.targets import noise
from ffmask.targets.noise import noise_map

SAMPLE_VIDEO = (Path(__file__).resolve().parents[1] / "sample_data" / "ff++" / "manipulated_sequences"
                / "Deepfakes" / "c23" / "videos" / "000_003.mp4")


def pywt_float32_noise(image: np.ndarray, sigma: float) -> np.ndarray:
    """The residual with PyWavelets' multichannel transform in float32 (the former noise_map path).

    Shares only the Wiener shrink with ffmask (scipy-free but written here
    per band with cv2.boxFilter); the transform is pywt.wavedec2/waverec2.
    """
    s2 = float(sigma) ** 2
    h, w = image.shape[:2]
    x = image.transpose(2, 0, 1).astype(np.float32) - np.float32(128.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # level too high on small crops
        coeffs = pywt.wavedec2(x, "db4", mode="symmetric", level=4, axes=(-2, -1))
    out = [np.zeros_like(coeffs[0])]
    for level in coeffs[1:]:
        bands = []
        for band in level:
            hwc = np.ascontiguousarray(band.transpose(1, 2, 0))
            energy = hwc * hwc
            means = [cv2.boxFilter(energy, -1, (k, k), borderType=cv2.BORDER_CONSTANT) for k in (3, 5, 7, 9)]
            local = np.maximum(np.minimum.reduce(means), np.float32(s2))
            bands.append((hwc * (np.float32(s2) / local)).transpose(2, 0, 1))
        out.append(tuple(bands))
    rec = pywt.waverec2(out, "db4", mode="symmetric", axes=(-2, -1))
    return rec[:, :h, :w].transpose(1, 2, 0)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Real crops: an H.264 CRF 23 face at 256 px cut to many shapes, and a sample video frame."""
    _, fake = compressed_pair(23, size=256)
    shapes = [(224, 224), (256, 256), (113, 97), (111, 113), (97, 256), (64, 64), (31, 45), (9, 7), (2, 5), (1, 1)]
    out = [np.ascontiguousarray(fake[:h, :w]) for h, w in shapes]
    if SAMPLE_VIDEO.is_file():
        from ffmask.video import read_frames

        frame = read_frames(SAMPLE_VIDEO, [5])[5]
        out.append(np.ascontiguousarray(frame[40:40 + 180, 100:100 + 150]))  # odd, non-square, real video
    return out


def test_filters_are_pywavelets_db4():
    wavelet = pywt.Wavelet("db4")
    for ours, theirs in ((noise._DEC_LO, wavelet.dec_lo), (noise._DEC_HI, wavelet.dec_hi),
                         (noise._REC_LO, wavelet.rec_lo), (noise._REC_HI, wavelet.rec_hi)):
        np.testing.assert_array_equal(ours, np.asarray(theirs))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 115])
def test_one_level_along_rows_is_pywt_dwt_and_idwt(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 6, 3)) * 40).astype(np.float32)
    count = (n + 7) // 2
    lo, hi = np.empty((count, 6, 3), np.float32), np.empty((count, 6, 3), np.float32)
    noise._analyse_rows(x, lo, hi)
    ref_lo, ref_hi = pywt.dwt(x.astype(np.float64), "db4", mode="symmetric", axis=0)
    # float32 filtering of values ~100: agreement to float32 rounding.
    np.testing.assert_allclose(lo, ref_lo, rtol=0, atol=1e-4)
    np.testing.assert_allclose(hi, ref_hi, rtol=0, atol=1e-4)
    rec = noise._synthesise_rows(lo, hi)
    ref_rec = pywt.idwt(ref_lo, ref_hi, "db4", mode="symmetric", axis=0)
    assert rec.shape == ref_rec.shape and rec.dtype == np.float32
    np.testing.assert_allclose(rec, ref_rec, rtol=0, atol=1e-4)
    if n >= 8:  # long enough for perfect reconstruction of the middle
        np.testing.assert_allclose(rec[:n], x, rtol=0, atol=1e-4)


def test_noise_map_equals_the_pywavelets_path_on_real_crops(crops):
    worst = 0.0
    for image in crops:
        for sigma in (5.0, 10.0):
            got = noise_map(image, sigma)
            assert got.shape == image.shape and got.dtype == np.float32 and got.flags.c_contiguous
            ref = pywt_float32_noise(image, sigma)
            worst = max(worst, float(np.abs(got - ref).max()))
    # Measured 5.8e-5 (0..255 units) at most: float32 rounding of ~50-unit values.
    assert worst < 2e-4, worst


def test_stored_noise_quantisation_moves_at_most_one_step_rarely(crops):
    moved = total = 0
    for image in crops:
        if min(image.shape[:2]) < 64:
            continue
        q_new, step_new = encode_map(noise_map(image, 5.0), "noise", "scaled")
        q_old, step_old = encode_map(pywt_float32_noise(image, 5.0), "noise", "scaled")
        assert abs(step_new / step_old - 1) < 1e-5
        diff = np.abs(q_new.astype(int) - q_old.astype(int))
        assert diff.max() <= 1
        moved += int(diff.sum())
        total += diff.size
    assert moved / total < 1e-4, (moved, total)


def test_no_pywavelets_needed():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from ffmask.targets.noise import noise_map; "
            "noise_map(np.zeros((40, 40, 3), np.uint8)); print('pywt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
