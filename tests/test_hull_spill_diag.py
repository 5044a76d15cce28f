"""The session-18 diagnostic of issue #10: where an edit ends inside the codec's spill (scripts/hull_spill_diag.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from ffmask.synth.pairs import h264_roundtrip
from tests._scripts import load_script


@pytest.fixture(scope="module")
def diag():
    return load_script("scripts/hull_spill_diag.py")


def _brute_step(mask: np.ndarray, u: np.ndarray) -> tuple[float, float, float]:
    """Reference: every split row tried one by one with boolean indexing."""
    rows = np.flatnonzero(mask.any(1))
    area = mask.sum()
    best = (-np.inf, 1.0, 0.0)
    for y in range(mask.shape[0] if area else 0):
        before, after = mask.copy(), mask.copy()
        before[y + 1:] = False
        after[:y + 1] = False
        if before.sum() < 0.3 * area or after.sum() < 0.1 * area:
            continue
        drop = np.log((u[before].mean() + 0.1) / (u[after].mean() + 0.1))
        if drop > best[0]:
            best = (drop, (y - rows[0] + 1) / (rows[-1] - rows[0] + 1), after.sum() / area)
    return best if np.isfinite(best[0]) else (0.0, 1.0, 0.0)


def test_profile_step_finds_where_a_strong_edit_gives_way_to_a_weak_spill(diag):
    u = np.full((40, 30), 0.2, np.float32)
    u[5:23, 5:25] = 3.0  # the edit: rows 5-22
    u[23:35, 5:25] = 1.0  # the spill below it
    mask = np.zeros((40, 30), bool)
    mask[5:35, 5:25] = True  # a candidate that runs 12 rows past the edit
    drop, depth, share = (float(v[0]) for v in diag.profile_step(mask[None], u))
    assert drop == pytest.approx(np.log(3.1 / 1.1), rel=1e-5)
    assert depth == pytest.approx(18 / 30)
    assert share == pytest.approx(12 / 30)
    # the candidate that stops at the edit's edge has no step inside it
    exact = np.zeros_like(mask)
    exact[5:23, 5:25] = True
    assert float(diag.profile_step(exact[None], u)[0][0]) == pytest.approx(0.0, abs=1e-6)


def test_step_features_match_a_brute_force_reference(diag):
    rng = np.random.default_rng(5)
    u = rng.gamma(2.0, 1.0, (24, 28)).astype(np.float32)
    masks = rng.random((6, 24, 28)) > 0.5
    masks[0] = False  # empty: no split
    masks[1] = False
    masks[1, 3, 4:9] = True  # one row: no split leaves 10 % below
    got = diag.step_features(masks, u)
    assert got.shape == (6, len(diag.STEP_COLUMNS))
    for k, m in enumerate(masks):
        np.testing.assert_allclose(got[k, :3], _brute_step(m, u), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[k, 3:6], _brute_step(m.T, u.T), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 6], got[:, 0] - got[:, 0].max())
    np.testing.assert_allclose(got[:, 7], got[:, 3] - got[:, 3].max())
    assert tuple(got[0, :6]) == (0.0, 1.0, 0.0, 0.0, 1.0, 0.0)


def test_spill_profile_on_a_real_photo_at_crf40_is_strong_below_and_nil_above(diag):
    real = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    fake = real.copy()
    fake[48:80, 96:144] = np.clip(fake[48:80, 96:144] * 0.9 + 12, 0, 255).astype(np.uint8)
    truth = np.zeros((256, 256), bool)
    truth[48:80, 96:144] = True
    u = diag.evidence_units(h264_roundtrip(real, 40), h264_roundtrip(fake, 40))
    h, w = u.shape
    small = cv2.resize(truth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
    inside, below, above = diag.spill_profile(u, small)
    assert inside > below > 3 * above
    # a truth too small to measure, or flush with the bottom edge, gives no profile
    tiny = np.zeros_like(small)
    tiny[10:13, 10:13] = True
    assert diag.spill_profile(u, tiny) is None
    flush = np.zeros_like(small)
    flush[-10:, 20:40] = True
    assert diag.spill_profile(u, flush) is None


def test_difference_coherence_tells_a_one_signed_edit_from_sign_alternating_noise(diag):
    rng = np.random.default_rng(2)
    real = rng.integers(40, 200, (96, 96, 3)).astype(np.uint8)
    fake = real.astype(np.int16)
    fake[20:50, 30:70] += 12  # the edit: one sign
    checker = np.where((np.indices((46, 40)).sum(0) % 2) == 0, 6, -6)[..., None]
    fake[50:96, 30:70] += checker  # below it: noise of alternating sign, half the edit's size
    fake = np.clip(fake, 0, 255).astype(np.uint8)
    truth = np.zeros((96, 96), bool)
    truth[20:50, 30:70] = True
    inside, below, mag_in, mag_below = diag.difference_coherence(real, fake, truth)
    assert mag_in == pytest.approx(12.0, abs=0.01) and mag_below == pytest.approx(6.0, abs=0.01)
    assert inside > 0.9 and below < 0.3, (inside, below)
    assert diag.difference_coherence(real, fake, np.zeros((96, 96), bool)) is None
