"""The codec's spill and what ``hull`` makes of it (session 17, issue #10).

H.264 predicts each block from the blocks above and left of it, so an edit's
reconstruction error spills into the blocks below and right of it and never
above it. ``hull`` offers every hull-shaped candidate again with its
downstream band trimmed and describes each candidate's upstream and
downstream rims (``hull_candidates.directional_morph``,
``hull_features.directional_features``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from ffmask.synth.pairs import h264_roundtrip
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_features as hf
from ffmask.targets.mscc import mscc_mask


def _astronaut_pair(box=(48, 96, 96, 144)):
    """A real photo (256 px) and a copy with one block-aligned region of the face darkened."""
    real = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    fake = real.copy()
    y0, y1, x0, x1 = box
    fake[y0:y1, x0:x1] = np.clip(fake[y0:y1, x0:x1] * 0.85 + 20, 0, 255).astype(np.uint8)
    truth = np.zeros(real.shape[:2], bool)
    truth[y0:y1, x0:x1] = True
    return real, fake, truth


@pytest.mark.parametrize("crf", [23, 40])
def test_x264_spills_an_edit_below_it_and_never_above_it(crf):
    real, fake, _ = _astronaut_pair()
    d = np.abs(h264_roundtrip(real, crf).astype(np.float64) - h264_roundtrip(fake, crf)).mean(2)
    y0, y1, x0, x1 = 48, 96, 96, 144
    above = d[y0 - 32:y0 - 8, x0:x1].mean()  # the blocks before the edit's first block row: untouched
    below = d[y1 + 8:y1 + 32, x0:x1].mean()
    assert above < 0.05, above
    assert below > 1.0, below
    assert d[y0:y1, x1 + 8:x1 + 24].mean() > d[y0:y1, x0 - 24:x0 - 8].mean()  # right of it more than left


def _shift_reference(mask, r, dilate, downstream):
    """Directional morphology by explicit shifts (an independent reference): the OR (dilation) or AND
    (erosion) of the mask moved by every (dy, dx) in [0, r]^2, towards or away from the bottom / right."""
    h, w = mask.shape
    pad = np.zeros((h + 2 * r, w + 2 * r), bool)
    pad[r:r + h, r:r + w] = mask
    acc = np.zeros((h, w), bool) if dilate else np.ones((h, w), bool)
    sign = -1 if dilate == downstream else 1  # a dilation downstream reads pixels up / left of each pixel
    for dy in range(r + 1):
        for dx in range(r + 1):
            view = pad[r + sign * dy:r + sign * dy + h, r + sign * dx:r + sign * dx + w]
            acc = acc | view if dilate else acc & view
    return acc


@pytest.mark.parametrize("dilate", [True, False])
@pytest.mark.parametrize("downstream", [True, False])
def test_directional_morph_matches_explicit_shifts(dilate, downstream):
    rng = np.random.default_rng(3)
    masks = rng.random((6, 23, 31)) > 0.55
    masks[0] = False
    masks[1] = True  # the border reads as background: a full mask erodes from its edges
    for r in (1, 3):
        got = hc.directional_morph(masks, r, dilate=dilate, downstream=downstream)
        want = np.stack([_shift_reference(m, r, dilate, downstream) for m in masks])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("w", [37, 64, 96, 130])
def test_packed_directional_morphology_matches_explicit_shifts(w):
    from ffmask.targets import bitmasks

    rng = np.random.default_rng(w)
    masks = rng.random((5, 19, w)) > 0.5
    masks[0] = True
    words = bitmasks.pack(masks)
    for r in (1, 4):
        for dilate in (True, False):
            for downstream in (True, False):
                got = np.zeros((5, 19 * w), np.float32)
                bitmasks.unpack_float32(bitmasks.directional(words, w, r, dilate=dilate, downstream=downstream), w,
                                        out=got)
                want = np.stack([_shift_reference(m, r, dilate, downstream) for m in masks])
                np.testing.assert_array_equal(got.reshape(5, 19, w).astype(bool), want)
    with pytest.raises(ValueError):
        bitmasks.directional(words, w, 0, dilate=True, downstream=True)


def test_downstream_erode_removes_the_bottom_and_right_band_of_a_square():
    m = np.zeros((1, 20, 20), bool)
    m[0, 4:14, 5:15] = True
    out = hc.downstream_erode(m, 3)[0]
    want = np.zeros((20, 20), bool)
    want[4:11, 5:12] = True
    np.testing.assert_array_equal(out, want)


def test_candidates_offer_hulls_trimmed_on_their_downstream_side():
    real, fake, _ = _astronaut_pair()
    real, fake = h264_roundtrip(real, 40), h264_roundtrip(fake, 40)
    ev = hc.pair_evidence(real, fake)
    masks, info = hc.candidate_masks(ev, mscc_mask(real, fake))
    trims = [r["trim"] for r in info]
    assert set(trims) == {0.0, hc.TRIM}
    first = trims.index(hc.TRIM)
    assert all(t == hc.TRIM for t in trims[first:])  # the trimmed copies follow every other candidate
    r = max(1, round(hc.TRIM * min(ev.d.shape)))
    untrimmed = masks[:first]
    for m, rec in zip(masks[first:], info[first:]):
        assert rec["shape"] in hc.TRIM_SHAPES
        parents = [p for p, q in zip(untrimmed, info[:first]) if all(q[k] == rec[k] for k in ("source", "shape", "param"))]
        assert any(np.array_equal(_shift_reference(p, r, False, True), m) for p in parents)
    assert len({m.tobytes() for m in masks}) == len(masks)


def test_directional_features_against_a_direct_computation():
    real, fake, _ = _astronaut_pair()
    real, fake = h264_roundtrip(real, 40), h264_roundtrip(fake, 40)
    ev = hc.pair_evidence(real, fake)
    masks, info = hc.candidate_masks(ev, mscc_mask(real, fake))
    x = hf.candidate_features(ev, masks, info)
    col = {f: i for i, f in enumerate(hf.FEATURES)}
    u = ev.d / ev.low
    r = max(1, round(hf.RING * min(ev.d.shape)))
    for i in range(0, len(masks), 7):
        m = masks[i]
        up_out = _shift_reference(m, r, True, False) & ~m & ev.face
        down_out = _shift_reference(m, r, True, True) & ~m & ev.face
        up_in = m & ~_shift_reference(m, r, False, False)
        down_in = m & ~_shift_reference(m, r, False, True)
        for name, band in (("u_up_outer", up_out), ("u_down_outer", down_out), ("u_up_inner", up_in),
                           ("u_down_inner", down_in)):
            want = u[band].mean() if band.any() else 0.0
            assert x[i, col[name]] == pytest.approx(want, rel=1e-4, abs=1e-6), name
        assert x[i, col["trim"]] == info[i]["trim"]
    assert np.isfinite(x).all()


def test_the_true_masks_rims_show_the_spill():
    real, fake, truth = _astronaut_pair()
    real, fake = h264_roundtrip(real, 40), h264_roundtrip(fake, 40)
    ev = hc.pair_evidence(real, fake)
    small = cv2.resize(truth.astype(np.float32), ev.d.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
    cols = hf.directional_features(ev.d / ev.low, ev.face, small[None], max(1, round(hf.RING * 96)))[0]
    up_out, down_out = cols[0], cols[1]
    assert down_out > 3 * up_out, cols
