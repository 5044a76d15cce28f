"""targets.hull: the hand rules (hull_rules_mask, a candidate of hull_mask's selector and an input of the
refinement) and the helpers; the selector (hull_mask) is tested in test_hull_select.py, hull_net_mask's learned
refinement in test_hull_refine.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

import ffmask  # noqa: F401
from ffmask import targets
from ffmask.targets.hull import (background_levels, face_region, hull_mask, hull_net_mask, hull_rules_mask, residual,
                                 texture_weight)


@pytest.fixture(scope="module")
def face():
    """A real face crop (the astronaut), 224 x 224 uint8 RGB."""
    img = skimage.data.astronaut()[20:240, 140:360]
    return np.ascontiguousarray(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_identical_images_give_an_empty_mask(face):
    for fn in (hull_net_mask, hull_mask):
        out = fn(face, face.copy())
        assert out.dtype == bool and out.shape == (224, 224)
        assert not out.any()
    # registered under its CLI name, same result through the registry
    spec = targets.get_method("hull-rules")
    assert spec.kind == "mask" and spec.paired and spec.landmarks
    assert not spec.fn(face, face).any()
    assert targets.METHODS["hull-rules"] is spec.fn is hull_rules_mask


def test_recovers_a_pasted_region_under_jpeg_noise(face):
    # A colour-shifted face region blended with a feathered edge, as face
    # swaps are; independent JPEG compression of the two images then makes
    # every pixel differ a little, the region a lot.
    core = np.zeros((224, 224), np.float32)
    cv2.ellipse(core, (112, 124), (55, 65), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(core, (0, 0), 5)
    truth = alpha > 0.02
    shifted = np.clip(face.astype(np.float32) + np.array([30, -20, 25], np.float32), 0, 255)
    fake = np.rint(face * (1 - alpha[..., None]) + shifted * alpha[..., None]).astype(np.uint8)

    def jpeg(img, q):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)

    real_c, fake_c = jpeg(face, 40), jpeg(fake, 35)
    assert np.count_nonzero(real_c != fake_c) > 0.5 * real_c.size  # noise everywhere
    pred = hull_rules_mask(real_c, fake_c)
    assert _iou(pred, truth) > 0.8
    # the MSCC procedure on the same pair covers far more than the region
    assert _iou(targets.mscc_mask(real_c, fake_c), truth) < _iou(pred, truth)


def test_a_change_far_from_the_face_is_ignored(face):
    fake = face.copy()
    fake[4:44, 4:44] = 255 - fake[4:44, 4:44]  # corner patch, outside the central region
    assert not hull_rules_mask(face, fake).any()
    # with landmarks around the corner, the same patch is kept
    pts = np.array([[4, 4], [44, 4], [44, 44], [4, 44]], float)
    assert hull_rules_mask(face, fake, pts)[24, 24]


def test_residual_and_background_levels(face):
    d = residual(face, face)
    assert d.dtype == np.float32 and d.shape == (224, 224) and not d.any()
    ramp = np.tile(np.arange(100, dtype=np.float32), (100, 1))  # columns 0..99
    left = np.zeros((100, 100), bool)
    left[:, :50] = True  # values 0..49, uniformly
    # median 24.5, MAD 12.5 (half the values lie within 12.5 of it)
    low, high = background_levels(ramp, left, 1.0, 2.0, q_low=0.0, q_high=0.0, min_level=0.1)
    assert low == pytest.approx(24.5 + 1.4826 * 12.5) and high == pytest.approx(24.5 + 2 * 1.4826 * 12.5)
    assert background_levels(ramp, left, 0.0, 2.0, q_low=0.0, min_level=30.0)[0] == 30.0
    # a quantile floors a level: the 0.99 quantile of 0..49, 100 times each, is 49
    assert background_levels(ramp, left, 0.0, 0.0, q_low=0.0, q_high=0.99)[1] == pytest.approx(49.0)
    # 5 % of large values in the background (an edit reaching the hair) barely move the MAD levels
    spiked = ramp.copy()
    spiked[:5, :50] = 255
    assert background_levels(spiked, left, 1.0, 2.0, q_low=0.0, q_high=0.0)[1] == pytest.approx(high, rel=0.15)
    # the caller's median and robust sigma are used as given (the evidence computes them once)
    assert background_levels(ramp, left, 1.0, 2.0, q_low=0.0, q_high=0.0, min_level=0.1, noise=(24.5, 1.4826 * 12.5)) \
        == (low, high)
    assert background_levels(ramp, left, 1.0, 2.0, q_low=0.0, q_high=0.0, min_level=0.1, noise=(0.0, 1.0)) == (1.0, 2.0)


def test_face_region_covers_the_forehead_and_keeps_the_background_off_it():
    from ffmask.synth.portraits import load_portrait

    p = load_portrait("obama")
    lms = p.landmarks.astype(np.float64)
    shape = p.image.shape[:2]
    face, background = face_region(shape, lms)
    assert not (face & background).any()
    brow_y = lms[17:27, 1].mean()
    width = np.linalg.norm(lms[16] - lms[0])
    cx = int(lms[27, 0])
    # a point a third of a face width above the brows is face; the chin too
    assert face[int(brow_y - width / 3), cx] and face[int(lms[8, 1]) - 2, int(lms[8, 0])]
    # far corners are background
    assert background[0, 0] and background[-1, -1]
    ell, ring = face_region((100, 120))
    assert ell[50, 60] and not ell[0, 0] and ring[0, 0] and not ring[50, 60]


def test_thresholds_follow_the_pair_not_constants(face):
    # The same region edited weakly or strongly, with compression-like noise
    # everywhere: both are found, because the thresholds come from the pair.
    rng = np.random.default_rng(3)
    region = np.zeros((224, 224), np.uint8)
    cv2.ellipse(region, (112, 150), (40, 22), 0, 0, 360, 1, -1)  # a mouth-sized patch
    truth = region.astype(bool)
    noise = cv2.GaussianBlur(rng.normal(0, 1, face.shape).astype(np.float32), (0, 0), 0.8)
    for level, shift in ((2.0, 6.0), (2.0, 30.0), (6.0, 30.0)):
        fake = face.astype(np.float32) + shift * truth[..., None]
        fake_c = np.clip(np.rint(fake + level * noise), 0, 255).astype(np.uint8)
        pred = hull_rules_mask(face, fake_c)
        # all of the edit, plus a rim of a few pixels (smoothing and the final dilation)
        recall = (pred & truth).sum() / truth.sum()
        precision = (pred & truth).sum() / max(1, pred.sum())
        assert recall > 0.95 and precision > 0.55, (level, shift, recall, precision)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8)), "uint8"),
        ((np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)), "same shape"),
        ((np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)), r"\(H, W, 3\)"),
        (([[0]], np.zeros((8, 8, 3), np.uint8)), "numpy array"),
        ((np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8, 3), np.uint8)), "empty"),
    ],
)
def test_bad_images_raise_value_error(args, match):
    for fn in (hull_net_mask, hull_mask):
        with pytest.raises(ValueError, match=match):
            fn(*args)


def test_bad_options_raise_value_error(face):
    with pytest.raises(ValueError, match="landmarks"):
        hull_rules_mask(face, face, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="sigma"):
        hull_rules_mask(face, face, sigma=0)
    with pytest.raises(ValueError, match="grow"):
        hull_rules_mask(face, face, grow=-1)
    with pytest.raises(ValueError, match="ring"):
        hull_rules_mask(face, face, ring=0.6)
    with pytest.raises(ValueError, match="k_low"):
        hull_rules_mask(face, face, k_low=5.0, k_high=2.0)
    with pytest.raises(ValueError, match="texture"):
        hull_rules_mask(face, face, texture=-1)
    with pytest.raises(ValueError, match="margin"):
        hull_rules_mask(face, face, margin=float("nan"))
    # unknown landmarks (NaN) fall back to the central region
    assert not hull_rules_mask(face, face, np.full((68, 2), np.nan)).any()
    assert not hull_net_mask(face, face, np.full((68, 2), np.nan)).any()
    with pytest.raises(ValueError, match="landmarks"):
        hull_net_mask(face, face, np.zeros((5, 3)))


def test_texture_weight_matches_an_independent_computation(face):
    from scipy import ndimage

    gray = (0.299 * face[..., 0] + 0.587 * face[..., 1] + 0.114 * face[..., 2])
    gx = ndimage.sobel(gray, axis=1, mode="mirror")
    gy = ndimage.sobel(gray, axis=0, mode="mirror")
    energy = ndimage.gaussian_filter(np.hypot(gx, gy), 0.03 * 224, mode="reflect", truncate=4.0)
    want = (1 + 1.5 * energy / np.median(energy)) / 2.5
    got = texture_weight(face, 1.5, 0.03)
    assert got.dtype == np.float32 and got.shape == (224, 224)
    # OpenCV rounds the grey level to uint8 and differs from float math by < 0.5 level
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.01)
    assert np.median(got) == pytest.approx(1.0, abs=0.01)
    assert (texture_weight(face, 0.0) == 1).all()
    # a flat image region weighs less than the textured hair/background
    flat = np.full((64, 64, 3), 128, np.uint8)
    flat[:, 32:] = np.random.default_rng(0).integers(0, 256, (64, 32, 3))
    w = texture_weight(flat, 1.0, 0.03)
    assert w[:, :20].mean() < 1 < w[:, 44:].mean()


def test_texture_normalisation_rejects_noise_on_busy_regions(face):
    # A pasted region plus encoder-like noise: spatially correlated, and
    # proportional to the local gradient energy of the image (busy regions
    # are quantised harder). Without the texture weight the noise on the
    # hair and the suit survives the floor and the hull swallows it.
    core = np.zeros((224, 224), np.float32)
    cv2.ellipse(core, (112, 130), (40, 45), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(core, (0, 0), 3)
    truth = alpha > 0.02
    shifted = np.clip(face.astype(np.float32) + np.array([25, -25, 25], np.float32), 0, 255)
    fake = face * (1 - alpha[..., None]) + shifted * alpha[..., None]
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.GaussianBlur(np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)),
                              (0, 0), 4)
    noise = cv2.GaussianBlur(np.random.default_rng(1).normal(0, 1, face.shape).astype(np.float32), (0, 0), 1.5) * 3
    noisy = fake + noise * 4 * np.clip(energy / np.median(energy), 0, 6)[..., None]
    fake_c = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    with_texture = _iou(hull_rules_mask(face, fake_c), truth)
    assert with_texture > 0.7, with_texture
    assert _iou(targets.mscc_mask(face, fake_c), truth) < with_texture - 0.2


def test_landmarks_bound_the_mask(face):
    # A change that spreads beyond the face (towards the neck) stays within
    # the landmark hull grown by the margin.
    fake = face.copy()
    fake[60:188, 55:169] = np.clip(fake[60:188, 55:169].astype(int) + 40, 0, 255).astype(np.uint8)
    pts = np.array([[70, 70], [154, 70], [154, 170], [70, 170]], float)
    free = hull_rules_mask(face, fake)
    bound = hull_rules_mask(face, fake, pts, margin=0.03, forehead=0)
    assert free[180:188, 60:160].any()  # without landmarks the neck is in
    region = np.zeros((224, 224), np.uint8)
    cv2.rectangle(region, (70, 70), (154, 170), 1, -1)
    # margin 0.03 x 224 = 6.7 px, +1 px for the polygon's rasterisation
    region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))).astype(bool)
    assert bound.any() and not (bound & ~region).any()
    assert _iou(bound, region) > 0.8


@pytest.fixture(scope="module")
def tiny_c40_faces(tmp_path_factory):
    from ffmask import fidelity
    from ffmask.synth.tree import build_synth

    root = tmp_path_factory.mktemp("hull_tree")
    build_synth(root, seed=5, identities=3, frames=4, compressions="c40", jobs=1)
    return fidelity.collect_faces(root, compressions=("c40",), frames=2)


def test_hull_beats_mscc_at_c40_on_a_synthetic_tree(tiny_c40_faces):
    from ffmask.fidelity import mask_scores

    assert len(tiny_c40_faces) >= 12
    hull = np.mean([mask_scores(hull_rules_mask(f.real, f.fake), f.truth)["iou"] for f in tiny_c40_faces])
    mscc = np.mean([mask_scores(targets.mscc_mask(f.real, f.fake), f.truth)["iou"] for f in tiny_c40_faces])
    assert hull > mscc + 0.05, (hull, mscc)
