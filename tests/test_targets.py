"""ffmask.targets against slow, independent references on real compressed faces.

The references live in tests/_target_refs.py: scikit-image SSIM, per-channel
PyWavelets with scipy.ndimage box filters, and the MSCCNet authors' OpenCV
script step by step. The faces are the astronaut portrait and a forged copy,
both encoded with libx264 (CRF 23 and 40) and decoded back.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from _target_refs import (
    compressed_pair,
    face_crop,
    h264_roundtrip,
    make_fake,
    ref_diff_map,
    ref_mscc_mask,
    ref_noise_map,
    ref_ssim_map,
)
from ffmask import targets

CRFS = (23, 40)

# No method may warn: not on tiny crops, identical frames or black images.
pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def pairs() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """crf -> (real, fake) decoded 200x200 face crops."""
    return {crf: compressed_pair(crf) for crf in CRFS}


@pytest.fixture(scope="module")
def odd_pair(pairs) -> tuple[np.ndarray, np.ndarray]:
    """An odd-sized, non-square, non-contiguous crop of the CRF 23 pair."""
    real, fake = pairs[23]
    return real[3:154, 1:198], fake[3:154, 1:198]


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """Max abs error over the reference's scale (at least 1 gray level)."""
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1.0))


# --------------------------------------------------------------------- ssim


@pytest.mark.parametrize("crf", CRFS)
def test_ssim_map_matches_skimage(pairs, crf):
    real, fake = pairs[crf]
    got = targets.ssim_map(real, fake)
    assert got.dtype == np.float32 and got.shape == real.shape[:2]
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, ref_ssim_map(real, fake), rtol=0, atol=1e-5)
    # The forged inner face must stand out from the untouched background.
    assert got[85:105, 75:95].mean() > 5 * got[:20, :20].mean()


def test_ssim_map_odd_noncontiguous_and_small(odd_pair):
    real, fake = odd_pair
    assert not real.flags.c_contiguous
    np.testing.assert_allclose(targets.ssim_map(real, fake), ref_ssim_map(real, fake), atol=1e-5)
    for h, w in [(7, 7), (8, 8), (7, 12)]:
        r, f = real[60 : 60 + h, 70 : 70 + w], fake[60 : 60 + h, 70 : 70 + w]
        np.testing.assert_allclose(targets.ssim_map(r, f), ref_ssim_map(r, f), atol=1e-5)


def test_ssim_map_identical_and_black(pairs):
    real, _ = pairs[23]
    assert not targets.ssim_map(real, real).any()
    black = np.zeros_like(real)
    assert not targets.ssim_map(black, black).any()
    np.testing.assert_allclose(targets.ssim_map(real, black), ref_ssim_map(real, black), atol=1e-5)


def test_ssim_methods_reject_images_smaller_than_window(pairs):
    real, fake = pairs[23]
    for fn in (targets.ssim_map, targets.mscc_mask):
        with pytest.raises(ValueError, match="at least 7x7"):
            fn(real[:6, :20], fake[:6, :20])


# --------------------------------------------------------------------- diff


@pytest.mark.parametrize("crf", CRFS)
def test_diff_map_and_mask(pairs, crf):
    real, fake = pairs[crf]
    got = targets.diff_map(real, fake)
    assert got.dtype == np.float32 and got.shape == real.shape[:2]
    np.testing.assert_allclose(got, ref_diff_map(real, fake), rtol=0, atol=1e-6)
    for t in (0.0, 0.05, 0.1, 0.5):
        mask = targets.diff_mask(real, fake, threshold=t)
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, got > t)
    default = targets.diff_mask(real, fake)
    np.testing.assert_array_equal(default, got > 0.1)
    # The forgery is a soft recolouring: a few gray levels inside the face,
    # compression noise (here none) in the untouched corner.
    inner, corner = got[85:105, 75:95], got[:20, :20]
    assert inner.mean() > 0.02 and inner.mean() > 10 * corner.mean()
    low = targets.diff_mask(real, fake, threshold=0.03)
    assert low[85:105, 75:95].mean() > 0.4 and low[:20, :20].mean() < 0.05


def test_diff_extremes_and_symmetry(odd_pair):
    real, fake = odd_pair
    black = np.zeros_like(real)
    white = np.full_like(real, 255)
    assert (targets.diff_map(black, white) == 1.0).all()
    assert not targets.diff_map(real, real).any()
    np.testing.assert_array_equal(targets.diff_map(real, fake), targets.diff_map(fake, real))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, float("nan"), "x", None])
def test_diff_mask_rejects_bad_threshold(pairs, bad):
    real, fake = pairs[23]
    with pytest.raises(ValueError, match="threshold"):
        targets.diff_mask(real, fake, threshold=bad)


# --------------------------------------------------------------------- mscc


@pytest.mark.parametrize("dark", [False, True])
def test_mscc_mask_every_gray_level_as_the_authors_threshold_it(dark):
    # mscc_mask keeps a fake pixel when its gray level is > 0; the authors
    # thresholded uint8(gray / 255 * factor * 255). A fake whose changed band
    # runs through every gray level 0..255 (or only the darkest ones, where a
    # rounding slip would drop pixels) must give their mask bit for bit.
    real = face_crop()
    fake = real.copy()
    ramp = np.linspace(0, 3 if dark else 255, fake.shape[1]).round().astype(np.uint8)
    fake[120:160] = ramp[None, :, None]
    fake[170:] = ramp[::-1][None, :, None]
    got = targets.mscc_mask(real, fake)
    np.testing.assert_array_equal(got, ref_mscc_mask(real, fake))
    assert got[130:150].any()


@pytest.mark.parametrize("crf", CRFS)
def test_mscc_mask_bit_exact(pairs, crf):
    real, fake = pairs[crf]
    got = targets.mscc_mask(real, fake)
    assert got.dtype == bool and got.shape == real.shape[:2]
    np.testing.assert_array_equal(got, ref_mscc_mask(real, fake))
    # One filled convex blob over the forged inner face, background clear.
    assert got[95, 85] and not got[:15, :15].any() and not got[-15:, -15:].any()
    n_labels, _ = cv2.connectedComponents(got.view(np.uint8))
    assert n_labels == 2


def test_mscc_mask_odd_sizes_and_swapped_roles(odd_pair):
    real, fake = odd_pair
    np.testing.assert_array_equal(targets.mscc_mask(real, fake), ref_mscc_mask(real, fake))
    np.testing.assert_array_equal(targets.mscc_mask(fake, real), ref_mscc_mask(fake, real))
    r, f = real[40:48, 50:58], fake[40:48, 50:58]  # 8x8
    np.testing.assert_array_equal(targets.mscc_mask(r, f), ref_mscc_mask(r, f))


def test_mscc_mask_hull_spans_separate_changes():
    real = face_crop()
    fake = real.copy()
    fake[20:50, 20:50] = 255 - fake[20:50, 20:50]
    fake[150:180, 140:170] = 255 - fake[150:180, 140:170]
    real, fake = (h264_roundtrip([img] * 2, 23)[1] for img in (real, fake))
    got = targets.mscc_mask(real, fake)
    np.testing.assert_array_equal(got, ref_mscc_mask(real, fake))
    assert got[35, 35] and got[165, 155]
    assert got[100, 95]  # between the two patches: one hull over both


def test_mscc_mask_weak_change_just_above_threshold():
    # A strong change sets the normalisation; a faint +-7 level pattern far
    # away peaks at a normalised, blurred d of ~0.094: above 0.08, it must
    # pull the hull over to it (and would not at 0.1).
    real = face_crop()
    fake = real.copy()
    fake[20:50, 20:50] = 255 - fake[20:50, 20:50]
    pattern = np.random.default_rng(3).choice([-1, 1], size=(24, 24, 1))
    fake[150:174, 150:174] = np.clip(fake[150:174, 150:174] + 7 * pattern, 0, 255)
    got = targets.mscc_mask(real, fake)
    np.testing.assert_array_equal(got, ref_mscc_mask(real, fake))
    assert got[35, 35] and got[162, 162] and got[100, 100]


@pytest.mark.parametrize("level,reaches_bottom", [(0, False), (1, True)])
def test_mscc_mask_ignores_black_fake_pixels(level, reaches_bottom):
    # The authors multiply the difference by the fake's gray level, so a
    # region turned pure black only shows through the SSIM ring around it,
    # while gray level 1 still counts.
    real = face_crop()
    fake = real.copy()
    fake[140:] = level
    got = targets.mscc_mask(real, fake)
    np.testing.assert_array_equal(got, ref_mscc_mask(real, fake))
    assert got[140, 100]
    assert got[-1, 100] == reaches_bottom


def test_mscc_mask_empty_cases(pairs):
    real, fake = pairs[40]
    black = np.zeros_like(real)
    # Identical frames: the authors' script divided 0 by 0 and skipped them.
    assert not targets.mscc_mask(real, real).any()
    assert not targets.mscc_mask(black, black).any()
    # A black fake has no non-zero gray pixel to seed a contour.
    assert not targets.mscc_mask(real, black).any()
    np.testing.assert_array_equal(targets.mscc_mask(black, real), ref_mscc_mask(black, real))
    # A one-level change on one pixel: a tiny SSIM dip that the min-max
    # normalisation blows up; whatever it gives, the reference must agree.
    one = real.copy()
    one[100, 100] = one[100, 100] ^ 1
    np.testing.assert_array_equal(targets.mscc_mask(real, one), ref_mscc_mask(real, one))


def test_mscc_mask_random_pairs_bit_exact():
    rng = np.random.default_rng(7)
    for _ in range(6):
        h, w = rng.integers(7, 90, size=2)
        real = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fake = real.copy()
        y, x = rng.integers(0, h), rng.integers(0, w)
        fake[y : y + 12, x : x + 12] = rng.integers(0, 256, fake[y : y + 12, x : x + 12].shape)
        np.testing.assert_array_equal(targets.mscc_mask(real, fake), ref_mscc_mask(real, fake))


# --------------------------------------------------------------------- noise


@pytest.mark.parametrize("crf,sigma", [(23, 5.0), (40, 10.0), (40, 5.0)])
def test_noise_map_matches_reference(pairs, crf, sigma):
    for image in pairs[crf]:
        got = targets.noise_map(image, sigma=sigma)
        assert got.dtype == np.float32 and got.shape == image.shape
        ref = ref_noise_map(image, sigma=sigma)
        assert _rel_err(got, ref) < 1e-4
        # A residual: centred on zero, far smaller than the image itself.
        assert abs(float(got.mean())) < 0.5 and got.std() < 0.2 * image.std()


def test_noise_map_sigma_shrinks_more(pairs):
    image = pairs[40][1]
    weak, strong = targets.noise_map(image, 5.0), targets.noise_map(image, 10.0)
    # A larger sigma treats more of the detail as noise: a larger residual.
    assert np.abs(strong).mean() > np.abs(weak).mean()


def test_noise_map_odd_and_tiny_sizes_without_warnings(odd_pair):
    real, _ = odd_pair
    crops = [real, real[:8, :8], real[:1, :1], real[:2, :5], real[:7, :9], real[:111, :113]]
    for image in crops:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = targets.noise_map(image)
        assert got.shape == image.shape
        assert _rel_err(got, ref_noise_map(image)) < 1e-4


def test_noise_map_flat_images_have_no_noise():
    for value in (0, 77, 255):
        flat = np.full((33, 40, 3), value, dtype=np.uint8)
        assert np.abs(targets.noise_map(flat)).max() < 1e-3


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf"), "five", None])
def test_noise_map_rejects_bad_sigma(pairs, bad):
    with pytest.raises(ValueError, match="sigma"):
        targets.noise_map(pairs[23][0], sigma=bad)


# ------------------------------------------------------------------ official


def test_official_mask_from_compressed_mask_video():
    # FF++ mask videos: white face region on black, H.264 compressed.
    truth = np.zeros((200, 200), dtype=np.uint8)
    cv2.ellipse(truth, (90, 100), (45, 60), 10, 0, 360, 255, -1)
    frame = h264_roundtrip([np.dstack([truth] * 3)] * 2, 23)[1]
    got = targets.official_mask(frame)
    assert got.dtype == bool and got.shape == truth.shape
    truth = truth > 0
    # gray > 1 keeps all of the region plus a rim of compression ringing.
    assert got[truth].all()
    assert (got & truth).sum() / (got | truth).sum() > 0.9
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(targets.official_mask(gray), got)
    np.testing.assert_array_equal(got, gray > 1)


def test_official_mask_threshold_is_gray_above_one():
    frame = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(targets.official_mask(frame), [[False, False, True, True]])
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 1] = (2, 2, 2)  # gray 2
    rgb[0, 2] = (0, 0, 9)  # blue 9 -> gray round(1.026) = 1
    np.testing.assert_array_equal(targets.official_mask(rgb), [[False, True, False]])


@pytest.mark.parametrize(
    "frame,match",
    [
        (np.zeros((4, 4), dtype=np.float32), "uint8"),
        (np.zeros((4, 4, 4), dtype=np.uint8), r"\(H, W, 3\) or gray \(H, W\)"),
        (np.zeros((4,), dtype=np.uint8), r"\(H, W, 3\) or gray \(H, W\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
        ([[0, 255]], "numpy array"),
    ],
)
def test_official_mask_rejects_bad_frames(frame, match):
    with pytest.raises(ValueError, match=match):
        targets.official_mask(frame)


# ---------------------------------------------------------------- validation

PAIRED = [targets.ssim_map, targets.diff_map, targets.diff_mask, targets.mscc_mask]
SINGLE = [targets.noise_map]


def _bad_inputs(good: np.ndarray):
    return [
        (good.astype(np.float32), "uint8"),
        (good.astype(np.uint16), "uint8"),
        (good[..., 0], r"\(H, W, 3\)"),
        (np.dstack([good, good[..., :1]]), r"\(H, W, 3\)"),
        (good[..., :1], r"\(H, W, 3\)"),
        (good[:0], "empty"),
        (good.tolist(), "numpy array"),
    ]


@pytest.mark.parametrize("fn", PAIRED, ids=lambda f: f.__name__)
def test_paired_methods_validate_inputs(pairs, fn):
    real, fake = pairs[23]
    for bad, match in _bad_inputs(fake):
        with pytest.raises(ValueError, match=match) as err:
            fn(real, bad)
        assert "fake" in str(err.value)
        with pytest.raises(ValueError, match=match) as err:
            fn(bad, fake)
        assert "real" in str(err.value)
    with pytest.raises(ValueError, match="same shape"):
        fn(real, fake[:-2])


@pytest.mark.parametrize("fn", SINGLE, ids=lambda f: f.__name__)
def test_single_image_methods_validate_inputs(pairs, fn):
    for bad, match in _bad_inputs(pairs[23][1]):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_inputs_are_not_modified(pairs):
    real, fake = pairs[23]
    before = real.copy(), fake.copy()
    for fn in PAIRED:
        fn(real, fake)
    targets.noise_map(fake)
    np.testing.assert_array_equal(real, before[0])
    np.testing.assert_array_equal(fake, before[1])


def test_make_fake_changes_only_the_inner_face():
    real = face_crop()
    fake = make_fake(real)
    changed = np.abs(real.astype(int) - fake.astype(int)).max(axis=2) > 0
    assert changed[95, 85] and not changed[:20].any() and not changed[:, -20:].any()
