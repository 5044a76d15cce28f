"""hull's evidence map (hull_candidates.pair_evidence): the absolute residual's maximum with the signed
difference smoothed before its magnitude, on scenes where the answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ffmask.metrics import pixel_iou
from ffmask.targets import hull
from ffmask.targets import hull_candidates as hc

N = 160


def _scene(seed: int, offset: float, noise: float, texture: float = 0.0):
    """A smooth random 160 px image; the fake adds ``offset`` gray levels (and zero-mean noise of sigma
    ``texture``) inside a disk; each image then gets its own independent noise of sigma ``noise`` (two
    independently coded images), rounded to uint8. Returns real, fake, the disk."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(128, 40, (N, N, 3)).astype(np.float32), (0, 0), 4)
    yy, xx = np.mgrid[:N, :N]
    disk = (yy - 70) ** 2 + (xx - 85) ** 2 < 22 ** 2
    fake = base.copy()
    fake[disk] += offset
    if texture:
        fake[disk] += rng.normal(0, texture, (int(disk.sum()), 3))
    real8 = np.clip(np.round(base + rng.normal(0, noise, base.shape)), 0, 255).astype(np.uint8)
    fake8 = np.clip(np.round(fake + rng.normal(0, noise, base.shape)), 0, 255).astype(np.uint8)
    return real8, fake8, disk


def _best_candidate(real, fake, disk):
    ev = hc.pair_evidence(real, fake, None)
    masks, _ = hc.candidate_masks(ev)
    best = max((pixel_iou(hc.to_crop(m, disk.shape), disk) for m in masks), default=0.0)
    small = cv2.resize(disk.astype(np.float32), ev.d.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
    z = (float(np.median(ev.d[small])) - ev.med) / max(ev.spread, 1e-6)  # the edit in background robust sigmas
    return best, z


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_faint_consistent_change_stands_out_of_independent_noise(seed):
    # +3 gray levels under noise of sigma 6 in each image: |real - fake| alone is noise-dominated (its best
    # candidate reached IoU 0.23-0.46, the edit 0.2-0.8 robust sigmas above the background); the signed difference
    # averages the noise out and keeps the shift
    real, fake, disk = _scene(seed, offset=3.0, noise=6.0)
    best, z = _best_candidate(real, fake, disk)
    assert best > 0.85
    assert z > 8


@pytest.mark.parametrize("seed", [0, 1])
def test_a_zero_mean_change_is_still_found(seed):
    # noise injected into the disk, no shift: the signed difference averages it away, the absolute residual keeps it
    real, fake, disk = _scene(seed, offset=0.0, noise=1.0, texture=12.0)
    best, z = _best_candidate(real, fake, disk)
    assert best > 0.9
    assert z > 20


def test_identical_images_give_zero_evidence_and_the_signed_difference_is_exact():
    real, fake, _ = _scene(3, offset=4.0, noise=2.0)
    ev = hc.pair_evidence(real, real, None)
    assert not ev.d.any() and ev.med == ev.spread == 0.0
    signed = hull.signed_difference(real, fake)
    assert signed.dtype == np.float32 and signed.shape == real.shape
    assert np.array_equal(signed.astype(np.int16), fake.astype(np.int16) - real.astype(np.int16))


def test_evidence_is_in_gray_levels_and_any_size():
    # a clean, strong edit: the map reads the change's size in gray levels (the absolute residual's units)
    real, fake, disk = _scene(4, offset=20.0, noise=0.0)
    ev = hc.pair_evidence(real, fake, None)
    small = cv2.resize(disk.astype(np.float32), ev.d.shape[::-1], interpolation=cv2.INTER_AREA) > 0.99
    assert np.median(ev.d[small]) == pytest.approx(20.0, rel=0.15)
    for h, w in ((5, 9), (61, 40), (200, 130)):
        r = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
        f = cv2.resize(fake, (w, h), interpolation=cv2.INTER_AREA)
        ev = hc.pair_evidence(r, f, None)
        assert ev.d.shape == hc.working_size((h, w)) and ev.d.dtype == np.float32 and np.isfinite(ev.d).all()
