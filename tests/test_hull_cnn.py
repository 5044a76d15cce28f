"""The image-seeing candidate scorer's planes and the session-14 diagnostic script (issue #10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffmask.synth.pairs import build_pairs, read_pairs
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_select_train, hull_train
from ffmask.targets.experiments import hull_cnn
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _diag():
    return load_script("scripts/hull_cnn_diag.py")


@pytest.fixture(scope="module")
def pair():
    import tempfile

    root = Path(tempfile.mkdtemp()) / "p"
    build_pairs(root, seed=5, n=1, compressions=("c23",), overwrite=True, **hull_train.TUNING)
    return next(read_pairs(root))


def test_context_planes_read_the_evidence_on_the_candidates_scales(pair):
    ev = hc.pair_evidence(pair.real, pair.fake, pair.landmarks)
    ctx = hull_cnn.pair_context(ev, pair.fake)
    assert ctx.shape == (len(hull_cnn.CONTEXT), hull_cnn.SIZE, hull_cnn.SIZE) and ctx.dtype == np.float32
    excess, peak, gray, face = ctx
    # at 96 px working size the planes are area-resized: compare on the area-resized definitions
    d = ev.d.astype(np.float64)
    z = np.maximum(0, (d - ev.med) / ev.spread)
    want = hull_cnn._resize(np.log1p(z) / np.log(46.0))
    np.testing.assert_allclose(excess, want, atol=1e-5)
    assert excess.min() >= 0 and peak.min() >= 0 and peak.max() <= 2
    # the face plane is the evidence's face region; the gray plane is centred on the face
    assert abs(face.mean() - ev.face.mean()) < 0.01
    assert abs(float((gray * face).sum() / face.sum())) < 0.05
    # the strongest residual is in the manipulated region, so the excess plane is largest inside the truth
    truth = hull_cnn._resize(pair.truth.astype(np.float32)) > 0.5
    assert excess[truth].mean() > 2 * excess[~truth].mean()


def test_candidate_planes_are_each_pixels_covered_share():
    m = np.zeros((2, 96, 96), bool)
    m[0] = True
    m[1, :48] = True  # the top half
    p = hull_cnn.candidate_planes(m)
    assert p.shape == (2, 64, 64)
    np.testing.assert_allclose(p[0], 1.0)
    assert p[1, :32].min() == 1.0 and p[1, 32:].max() == 0.0
    assert hull_cnn.candidate_planes(np.zeros((0, 96, 96), bool)).shape == (0, 64, 64)


def test_feature_transform_is_a_signed_log_and_clears_non_finite_values():
    x = np.array([[0.0, np.e - 1, -(np.e - 1), np.nan, np.inf]])
    np.testing.assert_allclose(hull_cnn.feature_transform(x), [[0, 1, -1, 0, 0]], atol=1e-6)


def test_net_scores_each_candidate_from_its_own_pair_alone():
    import torch

    torch.manual_seed(0)
    net = hull_cnn.build_net(3).eval()
    context = torch.rand(2, len(hull_cnn.CONTEXT), 64, 64)
    planes = (torch.rand(5, 1, 64, 64) > 0.5).float()
    pair = torch.tensor([1, 0, 1, 0, 1])  # not grouped: the net must route each candidate to its pair
    feats = torch.rand(5, 3)
    with torch.no_grad():
        all5 = net(context, planes, pair, feats)
        alone = torch.stack([net(context[pair[k]:pair[k] + 1], planes[k:k + 1], torch.tensor([0]), feats[k:k + 1])[0]
                             for k in range(5)])
        swapped = net(context.flip(0), planes, 1 - pair, feats)
        other = net(context, planes, 1 - pair, feats)
    assert all5.shape == (5,)
    torch.testing.assert_close(all5, alone)  # no batch statistics: a candidate's score is its own
    torch.testing.assert_close(all5, swapped)
    assert not torch.allclose(all5, other)  # ... and it reads its pair's context


def test_topk_oracle_and_subset_keep_each_sample_its_candidates():
    diag = _diag()
    data = {"group": np.array([0, 0, 0, 1, 1], np.int32), "y": np.array([0.2, 0.9, 0.5, 0.3, 0.1], np.float32),
            "x": np.zeros((5, 1), np.float32), "region": np.array(["a", "b"])}
    pred = np.array([0.9, 0.1, 0.5, 0.0, 1.0])
    np.testing.assert_allclose(diag.topk_oracle(pred, data, 1), [0.2, 0.1])
    np.testing.assert_allclose(diag.topk_oracle(pred, data, 2), [0.5, 0.3])
    np.testing.assert_allclose(diag.topk_oracle(pred, data, 3), [0.9, 0.3])
    sub = hull_select_train.subset(data, np.array([False, True]))
    assert sub["group"].tolist() == [0, 0] and sub["y"].tolist() == pytest.approx([0.3, 0.1])
    assert sub["region"].tolist() == ["b"]


def test_cache_refuses_an_extract_of_other_pairs(tmp_path):
    diag = _diag()
    a, b = tmp_path / "a", tmp_path / "b"
    for root, seed in ((a, 3), (b, 4)):
        build_pairs(root, seed=seed, n=2, compressions=("c23",), overwrite=True, **hull_train.TUNING)
    np.savez(tmp_path / "b.npz", **hull_select_train.extract([b], keep_masks=True, log=lambda s: None))
    with pytest.raises(RuntimeError, match="candidates differ|working size"):
        diag.build_cache(a, tmp_path / "b.npz", tmp_path / "cache.npz", check=2)
    out = diag.build_cache(b, tmp_path / "b.npz", tmp_path / "cache.npz", check=2)
    with np.load(out) as fh:
        assert fh["ctx"].shape == (4, len(hull_cnn.CONTEXT), 64, 64)  # 2 pairs x with / without landmarks
        assert fh["planes"].shape == (len(fh["y"]), 64, 64) and fh["planes"].max() == 255


def test_diagnostic_smoke_run_scores_both_scorers_against_the_oracle():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "hull_cnn_diag.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout[res.stdout.index("\n{") + 1:])["summary"]  # after the log lines
    for comp in ("c23", "c40"):
        cell = summary[comp]
        for name in ("trees", "cnn", "mean"):
            assert 0 <= cell[name] <= 1  # (a vote of candidates may beat their best one)
            assert cell[f"{name}@top1"] <= cell[f"{name}@top3"] <= cell[f"{name}@top5"] <= cell["oracle"]


def test_diagnostic_leave_one_generator_out_smoke_run_holds_each_generator_out():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "hull_cnn_diag.py"), "--smoke", "--logo"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    shown = json.loads(res.stdout[res.stdout.index("\n{") + 1:])  # after the log lines
    assert shown["held_out"] == [["synth"], ["other"]]
    summary = shown["summary"]
    for comp in ("c23", "c40"):
        assert 0 <= summary[comp]["cnn"] <= 1 and summary[comp]["cnn@top1"] <= summary[comp]["oracle"]


def test_area_known_pushes_down_candidates_off_the_true_area():
    diag = _diag()
    truth = np.zeros((4, 4), bool)
    truth[:1] = True  # a quarter of the crop
    data = {"crop": np.array([[4, 4]]), "truth": np.packbits(truth)[None], "group": np.array([0, 0, 0]),
            "planes": np.stack([np.full((2, 2), 64), np.full((2, 2), 255), np.full((2, 2), 96)]).astype(np.uint8)}
    # areas 0.25 (right), 1.0 (4x too large), 0.376 (1.5x: just off)
    np.testing.assert_allclose(diag.area_known(np.array([0.5, 0.9, 0.7]), data), [0.5, -0.1, -0.3])
