"""``candidate_masks`` drops empty and repeated candidates in one pass over all of them
(:func:`ffmask.targets.hull_candidates._distinct`: one bit-packing call); the same masks, records and order
as dropping them one mask at a time, on the golden pairs' real candidates (tests/data/hull_golden.npz)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.targets import hull_candidates as hc
from ffmask.targets.mscc import mscc_mask

GOLDEN = Path(__file__).parent / "data" / "hull_golden.npz"


def _one_at_a_time(found, h, w):
    masks, info, seen = [], [], set()
    for mask, record in found:
        bits = np.packbits(np.asarray(mask, bool))
        if not bits.any() or bits.tobytes() in seen:
            continue
        seen.add(bits.tobytes())
        masks.append(np.asarray(mask, bool))
        info.append(record)
    return (np.stack(masks) if masks else np.zeros((0, h, w), bool)), info


@pytest.fixture(scope="module")
def found_lists():
    """Every (mask, record) list candidate_masks made on the golden pairs, with and without landmarks and MSCC."""
    with np.load(GOLDEN) as fh:
        g = {k: fh[k] for k in fh.files}
    lists = []
    real_distinct = hc._distinct

    def capture(found, h, w):
        lists.append((list(found), h, w))
        return real_distinct(found, h, w)

    hc._distinct = capture
    try:
        for i in range(3):
            real, fake = (cv2.imdecode(g[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))
            for lm in (g[f"{i}_landmarks"], None):
                ev = hc.pair_evidence(real, fake, lm)
                hc.candidate_masks(ev, mscc_mask(real, fake))
                hc.candidate_masks(ev, None)
    finally:
        hc._distinct = real_distinct
    return lists


def test_same_candidates_as_one_at_a_time(found_lists):
    assert len(found_lists) == 24  # per call: the candidates, then with their downstream-trimmed hulls
    dropped = 0
    for found, h, w in found_lists:
        masks, info = hc._distinct(found, h, w)
        ref_masks, ref_info = _one_at_a_time(found, h, w)
        assert masks.dtype == bool and masks.shape == ref_masks.shape and np.array_equal(masks, ref_masks)
        assert masks.view(np.uint8).max(initial=0) <= 1
        assert info == ref_info
        dropped += len(found) - len(info)
    assert dropped > 0  # the pairs do make repeated candidates


def test_empty_repeated_and_mixed_dtypes():
    h, w = 5, 7
    a = np.zeros((h, w), np.uint8)
    a[1, 2] = 1
    b = a.astype(bool)  # the same mask as bool: a repeat
    c = np.zeros((h, w), bool)  # empty
    d = np.ones((h, w), np.uint8)
    found = [(c, {"n": 0}), (a, {"n": 1}), (b, {"n": 2}), (d, {"n": 3}), (a.copy(), {"n": 4})]
    masks, info = hc._distinct(found, h, w)
    assert [r["n"] for r in info] == [1, 3]
    assert np.array_equal(masks, np.stack([a.astype(bool), d.astype(bool)]))
    assert hc._distinct([(c, {})], h, w)[0].shape == (0, h, w)
    assert hc._distinct([], h, w)[1] == []
