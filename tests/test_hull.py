"""targets.hull: the noise-floor-aware manipulation mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

import ffmask  # noqa: F401
from ffmask import targets
from ffmask.targets.hull import hull_mask, noise_floor, residual


@pytest.fixture(scope="module")
def face():
    """A real face crop (the astronaut), 224 x 224 uint8 RGB."""
    img = skimage.data.astronaut()[20:240, 140:360]
    return np.ascontiguousarray(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_identical_images_give_an_empty_mask(face):
    out = hull_mask(face, face.copy())
    assert out.dtype == bool and out.shape == (224, 224)
    assert not out.any()
    # registered under its CLI name, same result through the registry
    spec = targets.get_method("hull")
    assert spec.kind == "mask" and spec.paired
    assert not spec.fn(face, face).any()
    assert targets.METHODS["hull"] is spec.fn


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
    pred = hull_mask(real_c, fake_c)
    assert _iou(pred, truth) > 0.8
    # the MSCC procedure on the same pair covers far more than the region
    assert _iou(targets.mscc_mask(real_c, fake_c), truth) < _iou(pred, truth)


def test_a_change_far_from_the_face_is_ignored(face):
    fake = face.copy()
    fake[4:44, 4:44] = 255 - fake[4:44, 4:44]  # corner patch, outside the central region
    assert not hull_mask(face, fake).any()
    # with landmarks around the corner, the same patch is kept
    pts = np.array([[4, 4], [44, 4], [44, 44], [4, 44]], float)
    assert hull_mask(face, fake, pts)[24, 24]


def test_residual_and_noise_floor(face):
    d = residual(face, face)
    assert d.dtype == np.float32 and d.shape == (224, 224) and not d.any()
    assert noise_floor(d, min_level=2.0) == 2.0
    ramp = np.tile(np.arange(100, dtype=np.float32), (100, 1))
    ring = np.ones((100, 100), bool)
    ring[8:92, 8:92] = False
    values = ramp[ring]
    med = np.median(values)
    expect = med + 3 * 1.4826 * np.median(np.abs(values - med))
    assert noise_floor(ramp, ring=0.08, k=3, min_level=0.0 + 1e-9) == pytest.approx(expect)


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
    with pytest.raises(ValueError, match=match):
        hull_mask(*args)


def test_bad_options_raise_value_error(face):
    with pytest.raises(ValueError, match="landmarks"):
        hull_mask(face, face, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="sigma"):
        hull_mask(face, face, sigma=0)
    with pytest.raises(ValueError, match="grow"):
        hull_mask(face, face, grow=-1)
    with pytest.raises(ValueError, match="ring"):
        hull_mask(face, face, ring=0.6)
    # unknown landmarks (NaN) fall back to the central region
    assert not hull_mask(face, face, np.full((68, 2), np.nan)).any()


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
    hull = np.mean([mask_scores(hull_mask(f.real, f.fake), f.truth)["iou"] for f in tiny_c40_faces])
    mscc = np.mean([mask_scores(targets.mscc_mask(f.real, f.fake), f.truth)["iou"] for f in tiny_c40_faces])
    assert hull > mscc + 0.05, (hull, mscc)
