"""``hull`` on two real pipeline faces pinned to what the code before session 14's speed-up made.

tests/data/hull_golden_pipeline.npz holds two 224 px face pairs as ``ffmask annotate`` hands them to
``hull`` (the FF++-like synth tree of issue #15, seed 31: a Deepfakes and a FaceSwap frame, the
detector's 68 landmarks, the pipeline's MSCC mask) and, computed by commit 06d4739 with one BLAS thread
(recomputed in session 17 from the stored inputs, ``scripts/check_hull_exact.py --rewrite-golden``, for
the downstream-trimmed hulls, the directional features and the retrained scorer),
their candidate masks (packed bits), source / shape / param / level / trim, feature rows and final mask,
plus the SHA-256 of the scorer file that mask came from. Features and candidates as in
tests/test_hull_golden.py (equal to the bit on the reference's machine; other CPUs' SIMD rounding
allowed, rank columns by the order they encode). The mask must be equal to the bit while the shipped
scorer is the one recorded; a new scorer changes masks, not candidates or features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_features as hf
from ffmask.targets import hull_select as hs
from ffmask.targets.hull import hull_mask

GOLDEN = Path(__file__).parent / "data" / "hull_golden_pipeline.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as fh:
        return {k: fh[k] for k in fh.files}


def _case(golden, i):
    real, fake = (cv2.imdecode(golden[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))
    mscc = np.unpackbits(golden[f"{i}_mscc"], count=real.shape[0] * real.shape[1]).reshape(real.shape[:2])
    return real, fake, golden[f"{i}_landmarks"], mscc.astype(bool)


@pytest.mark.parametrize("i", [0, 1])
def test_pipeline_faces_candidates_features_and_mask_match_the_reference(golden, i):
    real, fake, pts, mscc = _case(golden, i)
    assert real.shape == (224, 224, 3) and pts.shape == (68, 2)
    with threadpool_limits(1):  # as the reference: a threaded BLAS sums the features in another order
        ev = hc.pair_evidence(real, fake, pts)
        masks, info = hc.candidate_masks(ev, mscc)
        x = hf.candidate_features(ev, masks, info)
        mask = hull_mask(real, fake, pts, mscc=mscc)
    np.testing.assert_array_equal(np.packbits(masks, axis=-1), golden[f"{i}_candidates"])
    meta = [[r["source"], r["shape"], float(r["param"]), float(r["level"]), float(r["trim"])] for r in info]
    want_meta = json.loads(golden[f"{i}_info"].tobytes().decode())
    assert [m[:2] for m in meta] == [m[:2] for m in want_meta]
    np.testing.assert_allclose([m[2:] for m in meta], [m[2:] for m in want_meta], rtol=1e-12)
    want_x = golden[f"{i}_features"]
    assert x.dtype == np.float32 and x.shape == want_x.shape
    plain = [c for c, f in enumerate(hf.FEATURES) if not f.endswith("_rank")]
    np.testing.assert_allclose(x[:, plain], want_x[:, plain], rtol=2e-4, atol=1e-6)
    for c, f in enumerate(hf.FEATURES):
        if f.endswith("_rank"):  # near-ties may swap on another CPU: the ranks must order today's values
            v = x[np.argsort(want_x[:, c], kind="stable"), hf.FEATURES.index(f[: -len("_rank")])].astype(np.float64)
            assert np.all(np.diff(v) >= -(2e-4 * np.abs(v[1:]) + 1e-6)), f
            assert sorted(x[:, c]) == sorted(want_x[:, c]), f
    scorer = hashlib.sha256(hs.WEIGHTS.read_bytes()).hexdigest()
    if scorer == golden["weights_sha256"].tobytes().decode():
        np.testing.assert_array_equal(np.packbits(mask), golden[f"{i}_mask"])
    assert mask.shape == real.shape[:2] and 0 < mask.mean() < 0.6  # a face-sized region either way


def test_pipeline_golden_faces_exercise_every_source():
    with np.load(GOLDEN) as fh:
        sources = {m[0] for i in (0, 1) for m in json.loads(fh[f"{i}_info"].tobytes().decode())}
    assert sources == set(hc.SOURCES)


def test_features_are_the_same_bits_whatever_the_callers_blas_threads(golden):
    # A threaded BLAS sums a product in another order; hull_mask called in a user's process (BLAS on
    # every core) must still compute the features -- hence the masks -- the scorer was trained on.
    from threadpoolctl import threadpool_info

    if max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1) < 2:
        pytest.skip("this BLAS runs one thread only")
    real, fake, pts, mscc = _case(golden, 0)
    ev = hc.pair_evidence(real, fake, pts)
    masks, info = hc.candidate_masks(ev, mscc)
    with threadpool_limits(1, user_api="blas"):
        one = hf.candidate_features(ev, masks, info)
    with threadpool_limits(2, user_api="blas"):
        two = hf.candidate_features(ev, masks, info)
        mask_two = hull_mask(real, fake, pts, mscc=mscc)
    np.testing.assert_array_equal(two, one)
    with threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(mask_two, hull_mask(real, fake, pts, mscc=mscc))
