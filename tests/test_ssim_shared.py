"""mscc and ssim share the SSIM window sums of one (original, fake) pair.

``comparison._integer_terms`` keeps the integer terms of the last pair it
saw, keyed on the pixels. These tests check that reuse never changes a map:
the same bits as a fresh computation, in either argument order, and a new
computation as soon as the pixels differ (also when an array is changed in
place and passed again).
"""

from __future__ import annotations

import numpy as np
import pytest
from _target_refs import compressed_pair, ref_mscc_mask, ref_ssim_map

from ffmask import targets
from ffmask.targets import comparison


@pytest.fixture(scope="module")
def pairs():
    return [compressed_pair(23, size=224), compressed_pair(40, size=160)]


def _fresh(fn, *args):
    comparison._LAST_TERMS.clear()
    return fn(*args)


def test_shared_terms_give_the_same_maps(pairs):
    for real, fake in pairs:
        ssim_alone = _fresh(targets.ssim_map, real, fake)
        mscc_alone = _fresh(targets.mscc_mask, real, fake)
        # as the pipeline runs them: mscc (fake, original), then ssim (original, fake) on its terms
        comparison._LAST_TERMS.clear()
        mscc_first = targets.mscc_mask(real, fake)
        assert comparison._LAST_TERMS  # the pair's terms are kept
        kept = comparison._LAST_TERMS[2]
        ssim_after = targets.ssim_map(real, fake)
        assert comparison._LAST_TERMS[2] is kept  # reused, not recomputed
        np.testing.assert_array_equal(mscc_first, mscc_alone)
        np.testing.assert_array_equal(ssim_after.view(np.uint32), ssim_alone.view(np.uint32))
        # and still the authors' mask / skimage's SSIM
        np.testing.assert_array_equal(mscc_first, ref_mscc_mask(real, fake))
        assert np.abs(ssim_after - ref_ssim_map(real, fake)).max() < 1e-6


def test_other_pixels_are_computed_anew(pairs):
    (real, fake), (real2, fake2) = pairs
    targets.ssim_map(real, fake)
    changed = fake.copy()
    changed[100:120, 100:120] = 255 - changed[100:120, 100:120]
    got = targets.ssim_map(real, changed)
    np.testing.assert_array_equal(got, _fresh(targets.ssim_map, real, changed))
    assert not np.array_equal(got, _fresh(targets.ssim_map, real, fake))
    # the same array object changed in place between two calls
    buf = fake.copy()
    targets.ssim_map(real, buf)
    buf[:50] = 0
    np.testing.assert_array_equal(targets.ssim_map(real, buf), _fresh(targets.ssim_map, real, buf))
    # another size
    np.testing.assert_array_equal(targets.mscc_mask(real2, fake2), _fresh(targets.mscc_mask, real2, fake2))


def test_kept_terms_cannot_be_modified(pairs):
    real, fake = pairs[0]
    targets.ssim_map(real, fake)
    for term in comparison._LAST_TERMS[2]:
        with pytest.raises(ValueError):
            term += 1
