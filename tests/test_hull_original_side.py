"""``pair_evidence`` computes what it takes from the original alone (texture weight, face region,
background: :func:`ffmask.targets.hull_candidates._original_side`) once per original crop and landmarks,
and gives the same evidence, bit for bit, as computing it for every pair: on the golden pairs' real crops
(tests/data/hull_golden.npz), with fakes of one original interleaved as annotate compares them, against a
reference that recomputes everything per pair from :mod:`ffmask.targets.hull`'s functions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.targets import hull as H
from ffmask.targets import hull_candidates as hc

GOLDEN = Path(__file__).parent / "data" / "hull_golden.npz"


@pytest.fixture(scope="module")
def golden_pairs():
    with np.load(GOLDEN) as fh:
        g = {k: fh[k] for k in fh.files}
    return [tuple(cv2.imdecode(g[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake")) + (g[f"{i}_landmarks"],)
            for i in range(3)]


@pytest.fixture(autouse=True)
def empty_cache():
    hc._ORIGINAL_SIDE.clear()
    yield
    hc._ORIGINAL_SIDE.clear()


def _reference(real, fake, landmarks, res=hc.RES):
    """The evidence as computed before the cache: every step for this pair."""
    Hh, Ww = real.shape[:2]
    h, w = hc.working_size((Hh, Ww), res)
    raw = H.abs_difference(real, fake)
    small = real
    if (h, w) != (Hh, Ww):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
        small = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
    s = H.SIGMA * min(h, w)
    d = cv2.GaussianBlur(raw, (0, 0), s, borderType=cv2.BORDER_REFLECT) if s >= 0.3 else raw
    d = d / H.texture_weight(small)
    pts = None if landmarks is None else np.asarray(landmarks, np.float64) * np.array([w / Ww, h / Hh])
    face, outside = H.face_region((h, w), pts)
    return d.astype(np.float32), face, outside


def _fakes_of(real, fake, n=4):
    """n different fakes of one original: the golden fake, then edits of it."""
    out = [fake]
    rng = np.random.default_rng(5)
    for _ in range(n - 1):
        f = fake.astype(np.int16) + rng.integers(-6, 7, fake.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def _same(ev, ref):
    d, face, outside = ref
    return (np.array_equal(ev.d, d) and ev.d.dtype == d.dtype and np.array_equal(ev.face, face)
            and np.array_equal(ev.outside, outside))


def test_interleaved_fakes_give_the_evidence_of_a_fresh_computation(golden_pairs, monkeypatch):
    calls = []
    real_fn = hc._original_side
    monkeypatch.setattr(hc, "_original_side", lambda *a: calls.append(1) or real_fn(*a))
    pairs = [(real, f, lm) for real, fake, lm in golden_pairs for f in _fakes_of(real, fake)]
    order = [pairs[i + 4 * g] for i in range(4) for g in range(3)]  # fake 0 of every original, then fake 1 ...
    for with_landmarks in (True, False):
        calls.clear()
        for real, fake, lm in order:
            lm = lm if with_landmarks else None
            ev = hc.pair_evidence(real.copy(), fake, None if lm is None else lm.copy())  # equal arrays, new objects
            assert _same(ev, _reference(real, fake, lm))
            assert (ev.med, ev.spread, ev.low, ev.high) == (
                *H.background_noise(ev.d, ev.outside),
                *H.background_levels(ev.d, ev.outside, noise=H.background_noise(ev.d, ev.outside)))
        assert len(calls) == 3  # once per original (and per landmarks or none)


def test_another_original_with_the_same_sampled_pixels_is_not_taken_for_the_cached_one(golden_pairs):
    real, fake, lm = golden_pairs[0]
    hc.pair_evidence(real, fake, lm)
    other = real.copy()
    other[1, 1] = 255 - other[1, 1]  # off the key's pixel sample (every 14th row and column at 224 px)
    other[100:110, 3] = 0
    assert hc._OriginalSides._key(other, lm, (96, 96)) == hc._OriginalSides._key(real, lm, (96, 96))
    ev = hc.pair_evidence(other, fake, lm)
    assert _same(ev, _reference(other, fake, lm))
    assert not np.array_equal(ev.d, hc.pair_evidence(real, fake, lm).d)


def test_changing_the_callers_arrays_afterwards_changes_nothing(golden_pairs):
    real, fake, lm = golden_pairs[1]
    mine, points = real.copy(), lm.copy()
    first = hc.pair_evidence(mine, fake, points)
    mine[:] = 0
    points += 3.0
    again = hc.pair_evidence(real, fake, lm)
    assert _same(again, _reference(real, fake, lm)) and np.array_equal(first.d, again.d)
    with pytest.raises(ValueError):
        again.face[0, 0] = True  # shared by every fake of the original: read-only


def test_other_working_sizes_and_a_small_budget(golden_pairs, monkeypatch):
    monkeypatch.setattr(hc._OriginalSides, "budget", 100_000)  # about one entry at 224 px
    for res in (96, 64, 10 ** 6):
        for real, fake, lm in golden_pairs:
            for f in _fakes_of(real, fake, 2):
                assert _same(hc.pair_evidence(real, f, lm, res=res), _reference(real, f, lm, res=res))
    assert hc._ORIGINAL_SIDE._bytes <= 100_000
