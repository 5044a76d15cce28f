"""The session-15 diagnostic of issue #10: an estimate of the edit's extent per pair (scripts/hull_extent_diag.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffmask.synth.pairs import build_pairs, read_pairs
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_train
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def diag():
    return load_script("scripts/hull_extent_diag.py")


def _evidence(d: np.ndarray, face: np.ndarray) -> hc.Evidence:
    """An Evidence whose background (everything outside ``face``) has median 0 and robust sigma 1."""
    return hc.Evidence(d.astype(np.float32), face, ~face, 0.0, 1.0, 2.0, 3.5, 1.0, float(d.max()), d.shape, True)


def test_noise_floor_excess_recovers_an_edits_share_of_the_face(diag):
    rng = np.random.default_rng(0)
    d = np.abs(rng.normal(0, 1.0, (96, 96)))  # compression noise everywhere, about 1 sigma
    face = np.zeros((96, 96), bool)
    face[16:80, 16:80] = True  # 4096 px
    d[30:62, 30:46] += 40.0  # an edit of 512 px, far above the noise: an eighth of the face
    pf, pb, ex = diag.excess_curve(_evidence(d, face))
    assert pf.shape == pb.shape == ex.shape == (len(hc.KS),)
    assert np.all(np.diff(pf) <= 0) and np.all(np.diff(pb) <= 0)  # shares fall with the level
    # at 1 sigma the noise crosses both regions alike, so the excess is about the edit's share;
    # from 6 sigmas on nothing but the edit crosses, and the excess is exactly its share
    assert abs(ex[0] - 0.125) < 0.03
    np.testing.assert_allclose(ex[list(hc.KS).index(6.0):list(hc.KS).index(30.0) + 1], 0.125)
    assert abs(diag.floor_estimate(_evidence(d, face)) - 0.125) < 0.03
    # without the edit nothing is in excess beyond sampling noise
    d0 = np.abs(rng.normal(0, 1.0, (96, 96)))
    assert diag.floor_estimate(_evidence(d0, face)) < 0.03


def test_extent_features_name_every_column_and_see_a_real_edit(diag):
    root = Path(__import__("tempfile").mkdtemp()) / "p"
    build_pairs(root, seed=5, n=2, compressions=("c23",), overwrite=True, **hull_train.TUNING)
    for s in read_pairs(root):
        ev = hc.pair_evidence(s.real, s.fake, s.landmarks)
        f = diag.extent_features(ev)
        assert f.shape == (len(diag.EXTENT_FEATURES),) and np.isfinite(f).all()
        named = dict(zip(diag.EXTENT_FEATURES, f))
        assert named["landmarks"] == 1.0
        np.testing.assert_allclose(named["log_face_share"], np.log(ev.face.mean()))
        # the exceedance curve of the face lies above the background's: a real edit's residual is in the face
        assert named["log_face_gt2"] > named["log_bg_gt2"]


def test_candidate_extent_features_compare_each_candidates_area_with_the_estimate(diag):
    masks = np.zeros((4, 8, 8), bool)
    masks[0, :2] = True      # 16 px
    masks[1, :4] = True      # 32 px
    masks[2, :8] = True      # 64 px
    masks[3, :2, :4] = True  # 8 px: a second sample's only candidate
    data = {"masks": np.packbits(masks.reshape(4, -1), axis=1), "group": np.array([0, 0, 0, 1]),
            "small": np.array([[8, 8], [8, 8]]), "face_share": np.array([0.5, 0.5])}
    est = np.log(np.array([1.0, 0.25]))  # sample 0: the edit is the face's area (32 px); sample 1: a quarter
    f = diag.candidate_extent_features(data, est)
    c = np.log(np.array([16, 32, 64, 8]) / 64 / 0.5)
    np.testing.assert_allclose(f[:, 0], c - est[[0, 0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(f[:, 1], np.abs(f[:, 0]))
    # the 32 px candidate matches the estimate; 16 and 64 px are equally far (log 2): the tie keeps their order
    np.testing.assert_allclose(f[:3, 2], [0.5, 0.0, 1.0])
    assert f[3, 2] == 0.0  # a sample's only candidate


def test_out_of_fold_estimates_never_see_their_own_unit(diag):
    # two pairs of 60 rows each, told apart by one feature, with opposite targets: a regressor that saw a pair
    # recalls its target; one that did not can only answer the other pair's
    unit = np.repeat([0, 1], 60)
    feats = unit[:, None].astype(float)
    target = np.where(unit == 0, 1.0, -1.0)
    fitted = diag.fit_extent(feats, target).predict(feats)
    assert np.all(np.abs(fitted - target) < 0.05)
    oof = diag.out_of_fold(feats, target, unit)
    np.testing.assert_allclose(oof, -target, atol=1e-9)


def test_smoke_run_scores_both_scorers_and_the_estimate():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "hull_extent_diag.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout[res.stdout.index("\n{") + 1:])["summary"]  # after the log lines
    for comp in ("c23", "c40"):
        for name in ("trees", "extent"):
            assert 0 <= summary[comp][name] <= 1
        assert summary[comp]["oracle"] > 0


def test_smoke_analyse_runs_every_diagnostic_variant():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "hull_extent_diag.py"), "--smoke", "--analyse"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout[res.stdout.index("\n{") + 1:])["summary"]
    names = set(summary["c40"]) - {"oracle"}
    assert {"trees", "features from the true extent", "trees, prior from the estimate (1.5x)"} <= names
    assert all(0 <= summary[c][n] <= 1 for c in ("c23", "c40") for n in names)


def test_a_hard_prior_pushes_down_candidates_off_the_estimate(diag):
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2] = True  # 16 px
    masks[1, :4] = True  # 32 px
    masks[2] = True      # 64 px
    data = {"masks": np.packbits(masks.reshape(3, -1), axis=1), "group": np.zeros(3, int),
            "small": np.array([[8, 8]]), "face_share": np.array([1.0])}
    # the estimate says 24 px: 16 and 32 px are within 1.5x, 64 px is not
    pushed = diag.pushed_off(np.array([0.5, 0.6, 0.9]), data, np.log(np.array([24 / 64])))
    np.testing.assert_allclose(pushed, [0.5, 0.6, -0.1])


def test_vote_log_area_compares_the_votes_area_with_the_truths(diag):
    cand = np.zeros((1, 8, 8), bool)
    cand[0, :4] = True  # the top half at the working size
    truth = np.zeros((16, 16), bool)
    truth[:4] = True  # a quarter of the crop
    data = {"masks": np.packbits(cand.reshape(1, -1), axis=1), "group": np.array([0]), "small": np.array([[8, 8]]),
            "crop": np.array([[16, 16]]), "truth": np.packbits(truth.reshape(1, -1), axis=1)}
    got = diag.vote_log_area(np.array([0.7]), data, np.array([True]))
    assert got.shape == (1,) and abs(got[0] - np.log(2.0)) < 0.15  # the vote is the half: twice the truth


def test_smoke_leave_one_generator_out_scores_both_scorers_on_each_held_out_generator():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "hull_extent_diag.py"), "--smoke", "--logo"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout[res.stdout.index("\n{") + 1:])["summary"]
    assert set(summary) == {"c23", "c40"}
    assert all(0 <= summary[c][n] <= 1 for c in summary for n in ("trees", "extent", "oracle"))
