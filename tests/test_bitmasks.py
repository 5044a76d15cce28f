"""Bit-packed morphology (ffmask.targets.bitmasks) against OpenCV's, mask by mask."""

import cv2
import numpy as np
import pytest

from ffmask.targets import bitmasks
from ffmask.targets import hull_features as hf

KERNELS = [cv2.getStructuringElement(shape, (2 * r + 1, 2 * r + 1))
           for shape in (cv2.MORPH_ELLIPSE, cv2.MORPH_CROSS, cv2.MORPH_RECT) for r in (1, 2, 3, 4, 6)]


def _masks(rng, k, h, w):
    """Blobs, specks, lines and masks touching every border: what the candidates look like, and worse."""
    out = np.zeros((k, h, w), np.uint8)
    for m in out:
        for _ in range(int(rng.integers(1, 6))):
            kind = rng.integers(3)
            x, y = int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5))
            if kind == 0:
                cv2.circle(m, (x, y), int(rng.integers(0, max(2, min(h, w) // 3))), 1, -1)
            elif kind == 1:
                cv2.line(m, (x, y), (int(rng.integers(w)), int(rng.integers(h))), 1, int(rng.integers(1, 3)))
            else:
                m |= (rng.random((h, w)) < 0.02).astype(np.uint8)
    out[0] = 0  # an empty mask
    out[-1] = 1  # a full one: the erosion's border
    return out.astype(bool)


@pytest.mark.parametrize("shape", [(96, 96), (40, 130), (37, 64), (21, 13), (5, 200), (70, 129)])
def test_dilate_and_erode_equal_opencv_mask_by_mask(shape):
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    masks = _masks(rng, 9, h, w)
    words = bitmasks.pack(masks)
    assert words.dtype == np.dtype("<u8") and words.shape == (9, h, -(-w // 64))
    back = bitmasks.unpack_float32(words, w).reshape(9, h, w)
    assert back.dtype == np.float32 and np.array_equal(back, masks)
    for kernel in KERNELS:
        dil = bitmasks.unpack_float32(bitmasks.dilate(words, w, kernel), w).reshape(9, h, w)
        ero = bitmasks.unpack_float32(bitmasks.erode(words, w, kernel), w).reshape(9, h, w)
        for i, m in enumerate(masks.view(np.uint8)):
            assert np.array_equal(dil[i], cv2.dilate(m, kernel)), (shape, kernel.shape, i)
            assert np.array_equal(ero[i], cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0))


def test_results_keep_the_bits_beyond_the_width_zero():
    rng = np.random.default_rng(3)
    masks = _masks(rng, 4, 30, 70)
    kernel = KERNELS[3]
    once = bitmasks.dilate(bitmasks.pack(masks), 70, kernel)
    assert not np.any(once[..., -1] >> np.uint64(70 - 64))
    # a closing chained on packed words: the erosion must not read the dilation's spill as foreground
    closed = bitmasks.unpack_float32(bitmasks.erode(once, 70, kernel), 70).reshape(4, 30, 70)
    for i, m in enumerate(masks.view(np.uint8)):
        ref = cv2.erode(cv2.dilate(m, kernel), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        assert np.array_equal(closed[i], ref)


def test_row_runs_reads_centred_runs_and_refuses_others():
    assert bitmasks.row_runs(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) == [0, 3, 3, 4, 4, 4, 3, 3, 0]
    with pytest.raises(ValueError, match="centred"):
        bitmasks.row_runs(np.array([[0, 1, 1], [1, 1, 1], [0, 1, 0]]))
    with pytest.raises(ValueError, match="odd"):
        bitmasks.row_runs(np.ones((4, 4)))


def test_rims_are_each_candidates_opencv_rims():
    """The features' rims: mask - erode(mask), (dilate(mask) - mask) & face, and the 8-connected components."""
    rng = np.random.default_rng(11)
    h, w = 96, 112
    masks = _masks(rng, 12, h, w)
    face = np.zeros((h, w), np.uint8)
    cv2.ellipse(face, (56, 48), (40, 46), 0, 0, 360, 1, -1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    rims, n_comp = hf._rims_and_components(masks, face.astype(bool), kernel)
    assert rims.shape == (24, h * w) and rims.dtype == np.float32
    for i, m in enumerate(masks.view(np.uint8)):
        inner = m - cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        outer = (cv2.dilate(m, kernel) - m) & face
        assert np.array_equal(rims[i].reshape(h, w), inner)
        assert np.array_equal(rims[12 + i].reshape(h, w), outer)
        assert n_comp[i] == cv2.connectedComponents(m, connectivity=8)[0] - 1
