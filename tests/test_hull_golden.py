"""``hull``'s candidates and features pinned to what the code before its speed-up made.

tests/data/hull_golden.npz holds three real synth pairs (tuning seeds 102 / 103,
c23 and c40, area-resized to 104 and 64 px so both the resized and the
full-size working path run) and, with and without their landmarks, the
candidate masks (packed bits), their source / shape / param / level / trim, and the
feature rows: computed by commit db0707f (``python scripts/check_hull_exact.py
--golden tests/data/hull_golden.npz``), recomputed in session 17 from the
stored inputs (``python scripts/check_hull_exact.py --rewrite-golden``) when
the downstream-trimmed hulls and the directional features were added (the
untrimmed candidates came out bit for bit db0707f's, their absolute features
within 2.2e-5). The selector's scorer is trained on
exactly these features, so a change that alters a candidate or a feature
must fail here (and retrain the scorer). Final masks are not pinned: they
depend on the scorer's weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_features as hf
from ffmask.targets.mscc import mscc_mask

GOLDEN = Path(__file__).parent / "data" / "hull_golden.npz"
CASES = [(i, tag) for i in range(3) for tag in ("lm", "nolm")]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as fh:
        return {k: fh[k] for k in fh.files}


def _pair(golden, i):
    real, fake = (cv2.imdecode(golden[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))
    return real, fake, golden[f"{i}_landmarks"]


@pytest.mark.parametrize("i,tag", CASES)
def test_candidates_and_features_match_the_reference(golden, i, tag):
    real, fake, pts = _pair(golden, i)
    ev = hc.pair_evidence(real, fake, pts if tag == "lm" else None)
    masks, info = hc.candidate_masks(ev, mscc_mask(real, fake))
    want = golden[f"{i}_{tag}_candidates"]
    assert masks.shape[0] == want.shape[0]
    np.testing.assert_array_equal(np.packbits(masks, axis=-1), want)
    meta = [[r["source"], r["shape"], float(r["param"]), float(r["level"]), float(r["trim"])] for r in info]
    want_meta = json.loads(golden[f"{i}_{tag}_info"].tobytes().decode())
    assert [m[:2] for m in meta] == [m[:2] for m in want_meta]
    np.testing.assert_allclose([m[2:] for m in meta], [m[2:] for m in want_meta], rtol=1e-12)
    x = hf.candidate_features(ev, masks, info)
    assert x.dtype == np.float32 and x.shape == (len(masks), len(hf.FEATURES))
    want_x = golden[f"{i}_{tag}_features"]
    # the reference's own values on the machine that made them: equal to the bit; a looser bound for other CPUs'
    # SIMD rounding (one ulp of the residual moves a feature like the rest of the face's mean by up to ~1e-4 relative)
    plain = [c for c, f in enumerate(hf.FEATURES) if not f.endswith("_rank")]
    np.testing.assert_allclose(x[:, plain], want_x[:, plain], rtol=2e-4, atol=1e-6)
    # a rank is not continuous: candidates tied but for that rounding (e.g. several capturing all of the energy,
    # 1.0 against 0.99999994, an AMD EPYC against the reference's machine) may swap places. So each rank column
    # must order today's values of its feature as the reference's ranks do, up to the same rounding
    for c, f in enumerate(hf.FEATURES):
        if f.endswith("_rank"):
            v = x[np.argsort(want_x[:, c], kind="stable"), hf.FEATURES.index(f[: -len("_rank")])].astype(np.float64)
            assert np.all(np.diff(v) >= -(2e-4 * np.abs(v[1:]) + 1e-6)), f
            assert sorted(x[:, c]) == sorted(want_x[:, c]), f  # still a permutation of the same ranks


def test_golden_pairs_cover_every_source_and_shape(golden):
    """The pinned pairs exercise every kind of candidate (else the pin would miss a code path)."""
    seen_sources, seen_shapes = set(), set()
    for i, tag in CASES:
        meta = json.loads(golden[f"{i}_{tag}_info"].tobytes().decode())
        seen_sources |= {m[0] for m in meta}
        seen_shapes |= {m[1] for m in meta}
        assert len(meta) >= 40
    assert seen_sources == set(hc.SOURCES)
    assert set(hc.SHAPES) <= seen_shapes
    # both working paths: a crop above the working size (area-resized) and one at or below it
    sizes = {cv2.imdecode(golden[f"{i}_real"], cv2.IMREAD_COLOR).shape[0] for i in range(3)}
    assert min(sizes) <= hc.RES < max(sizes)


def test_grown_hull_skips_only_points_that_cannot_reach_its_boundary(golden):
    """The face region's grown landmark hull leaves out the 32-gons of deep interior points (speed); the
    result must be the hull of every point's 32-gon, on jittered real landmarks at many radii and sizes."""
    from ffmask.targets import hull as H

    base = golden["0_landmarks"].astype(np.float64)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    skipped = 0
    for trial in range(300):
        size = int(rng.integers(40, 200))
        pts = base * size / 104 + rng.normal(0, rng.uniform(0.1, 3), base.shape)
        if trial % 3 == 0:  # the face region's forehead points too, and fewer points
            pts = pts[rng.permutation(len(pts))[:int(rng.integers(3, 68))]]
        radius = float(rng.uniform(0.5, 0.2 * size))
        every = H._landmark_hull((size, size), (pts[:, None, :] + radius * circle[None]).reshape(-1, 2))
        np.testing.assert_array_equal(H._grown_hull((size, size), pts, radius), every)
        skipped += len(pts) - len(H._near_boundary(pts))
    assert skipped > 1000  # the shortcut is taken
