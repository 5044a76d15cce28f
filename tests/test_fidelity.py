"""ffmask.fidelity and `ffmask bench masks`: scoring map methods against true masks."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import ffmask  # noqa: F401
from ffmask import fidelity, targets
from ffmask.errors import FFMaskError
from ffmask.fidelity import FaceSample, mask_scores, pixel_auc


def _brute_scores(pred, truth):
    tp = fp = fn = 0
    for p, t in zip(pred.ravel().tolist(), truth.ravel().tolist()):
        tp += p and t
        fp += p and not t
        fn += t and not p
    iou = 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
    f1 = 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    precision = (0.0 if fn else 1.0) if tp + fp == 0 else tp / (tp + fp)
    recall = 1.0 if tp + fn == 0 else tp / (tp + fn)
    return {"iou": iou, "f1": f1, "precision": precision, "recall": recall}


def _brute_auc(labels, scores):
    pos = [s for l, s in zip(labels, scores) if l]
    neg = [s for l, s in zip(labels, scores) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_mask_scores_match_brute_force():
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.5, 0.9):
        for _ in range(5):
            pred = rng.random((6, 7)) < density
            truth = rng.random((6, 7)) < 0.4
            got = mask_scores(pred, truth)
            want = _brute_scores(pred, truth)
            assert got == pytest.approx(want)
    empty = np.zeros((3, 3), bool)
    assert mask_scores(empty, empty) == {"iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    full = np.ones((3, 3), bool)
    assert mask_scores(empty, full) == {"iou": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_mask_scores_reject_bad_input():
    with pytest.raises(ValueError, match="bool"):
        mask_scores(np.zeros((3, 3), np.uint8), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="shape"):
        mask_scores(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="cannot be scored"):
        fidelity.binarize(np.zeros((3, 3)), "noise")


def test_pixel_auc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    truths = [rng.random((4, 5)) < 0.3 for _ in range(3)]
    maps = [np.round(rng.random((4, 5)), 1) + 0.3 * t for t in truths]  # ties on purpose
    labels = np.concatenate([t.ravel() for t in truths])
    scores = np.concatenate([m.ravel() for m in maps])
    assert pixel_auc(truths, maps) == pytest.approx(_brute_auc(labels, scores))
    # binary masks: AUC is the balanced accuracy
    pred = [m > 0.6 for m in maps]
    tpr = np.mean(np.concatenate([p.ravel() for p in pred])[labels])
    tnr = np.mean(~np.concatenate([p.ravel() for p in pred])[~labels])
    assert pixel_auc(truths, pred) == pytest.approx((tpr + tnr) / 2)
    assert np.isnan(pixel_auc([np.zeros((2, 2), bool)], [np.ones((2, 2))]))


def _face(real, fake, truth, manip="Deepfakes", comp="c23", vid="Deepfakes/000_001"):
    return FaceSample(vid, manip, comp, 0, real, fake, truth)


def test_evaluate_groups_are_means_of_face_scores():
    rng = np.random.default_rng(2)
    faces = []
    for k in range(6):
        real = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        fake = real.copy()
        truth = np.zeros((16, 16), bool)
        truth[3:9 + k, 4:10] = True
        fake[truth] = 255 - fake[truth]
        faces.append(_face(real, fake, truth, manip=("Deepfakes", "FaceSwap")[k % 2], comp=("c23", "c40")[k // 3]))
    res = fidelity.evaluate(faces, ["diff", "diff@0.1", "mscc"], threshold=0.1)
    assert res.thresholds == {"diff": 0.1, "diff@0.1": None, "mscc": None}
    for g in res.groups:
        members = [i for i, f in enumerate(faces)
                   if f.manipulation == g["manipulation"] and f.compression == g["compression"]]
        spec = targets.get_method(g["method"])
        outs = [spec.fn(faces[i].real, faces[i].fake) for i in members]
        preds = [fidelity.binarize(o, spec.kind, 0.1) for o in outs]
        want = np.mean([_brute_scores(p, faces[i].truth)["iou"] for p, i in zip(preds, members)])
        assert g["n"] == len(members) and g["iou"] == pytest.approx(want)
        # pooled pixel AUC, counted pair by pair (16 x 16 faces: no subsampling)
        labels = np.concatenate([faces[i].truth.ravel() for i in members])
        assert g["auc"] == pytest.approx(_brute_auc(labels, np.concatenate([np.ravel(o) for o in outs])))
        # per-face best threshold, found independently
        img = np.mean([max(_brute_scores(o > t, faces[i].truth)["iou"] for t in fidelity.THRESHOLD_GRID)
                       for o, i in zip(outs, members)]) if spec.kind == "continuous" else g["iou"]
        assert g["iou_img"] == pytest.approx(img)
        if g["method"] == "diff":
            # the oracle threshold is the best of the grid, found independently
            best = max(np.mean([_brute_scores(o > t, faces[i].truth)["iou"] for o, i in zip(outs, members)])
                       for t in fidelity.THRESHOLD_GRID)
            assert g["iou_best"] == pytest.approx(best)
            assert g["iou_best"] >= g["iou"]
    # diff binarised at 0.1 is diff@0.1
    by = {(g["method"], g["manipulation"], g["compression"]): g["iou"] for g in res.groups}
    for (m, man, comp), v in by.items():
        if m == "diff":
            assert v == pytest.approx(by[("diff@0.1", man, comp)])
    rows = fidelity.summarise(res)
    assert {(r["method"], r["compression"]) for r in rows} == {(m, c) for m in res.methods for c in ("c23", "c40")}
    md = fidelity.to_markdown(res)
    assert "| mscc | c23 |" in md and "IoU*" in md


def test_evaluate_rejects_unsuitable_methods():
    face = _face(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="noise"):
        fidelity.evaluate([face], ["noise"])
    with pytest.raises(ValueError, match="official"):
        fidelity.evaluate([face], ["official"])
    with pytest.raises(ValueError, match="unknown"):
        fidelity.evaluate([face], ["nope"])
    with pytest.raises(ValueError, match="no faces"):
        fidelity.evaluate([], ["mscc"])


def test_uniform_baseline_and_landmarks_reach_landmark_methods():
    from ffmask.targets import registry

    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fake = real.copy()
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:22] = True
    fake[truth] = 255 - fake[truth]
    pts = np.array([[10.0, 8.0], [21.0, 8.0], [21.0, 19.0], [10.0, 19.0]], np.float32)
    face = FaceSample("Deepfakes/000_001", "Deepfakes", "c23", 0, real, fake, truth, pts)
    seen = []

    def probe(r, f, landmarks=None):
        seen.append(landmarks)
        return np.zeros(r.shape[:2], bool)

    targets.register_method("lmprobe2", probe, kind="mask", landmarks=True)
    try:
        res = fidelity.evaluate([face], ["uniform", "lmprobe2"])
    finally:
        registry._SPECS.pop("lmprobe2")
        targets.METHODS.pop("lmprobe2")
    assert len(seen) == 1 and seen[0] is pts
    uniform = next(g for g in res.groups if g["method"] == "uniform")
    # all-ones: IoU = precision = share of the crop that is manipulated, recall 1, AUC 0.5
    assert uniform["iou"] == pytest.approx(truth.mean())
    assert uniform["precision"] == pytest.approx(truth.mean()) and uniform["recall"] == 1.0
    assert uniform["auc"] == pytest.approx(0.5)
    assert res.thresholds["uniform"] is None


def test_focus_maps_are_scored_from_a_checkpoint(tmp_path):
    from ffmask.errors import CheckpointError
    from ffmask.models import create_model
    from ffmask.models.checkpoint import save_checkpoint
    from ffmask.models.focus_method import focus_annotator

    model = create_model("focus", backbone="vit_tiny_patch16_224", img_size=64, depth=1)
    stem = tmp_path / "tiny"
    save_checkpoint(stem, model, model_name="focus", config=model.config.to_dict())
    ckpt = stem.with_name("tiny.safetensors")
    rng = np.random.default_rng(4)
    faces = [_face(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
                   rng.random((48, 48)) < 0.3) for _ in range(3)]
    res = fidelity.evaluate(faces, ["focus"], checkpoint=ckpt, device="cpu")
    assert res.thresholds == {"focus": fidelity.FOCUS_THRESHOLD}
    # the scores are those of the maps annotate writes for faces of unknown label
    maps, _ = focus_annotator(str(ckpt), "cpu")(np.stack([f.fake for f in faces]), np.full(3, -1))
    for s, m, f in zip(res.scores, maps, faces):
        assert m.shape == (48, 48)
        assert s.iou == pytest.approx(mask_scores(m > fidelity.FOCUS_THRESHOLD, f.truth)["iou"])
    with pytest.raises(CheckpointError):
        fidelity.evaluate(faces, ["focus"], checkpoint=tmp_path / "missing.safetensors")


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    from ffmask.synth.tree import build_synth

    root = tmp_path_factory.mktemp("fidelity_tree")
    build_synth(root, seed=7, identities=2, frames=3, compressions="c23,c40",
                manipulations="Deepfakes,NeuralTextures", jobs=1)
    return root


def test_collect_faces_crops_real_fake_and_truth_alike(tiny_tree):
    faces = fidelity.collect_faces(tiny_tree, frames=2, size=128)
    # 2 fakes per manipulation x 2 manipulations x 2 compressions x 2 frames
    assert len(faces) == 16
    for f in faces:
        assert f.real.shape == f.fake.shape == (128, 128, 3) and f.real.dtype == np.uint8
        assert f.truth.shape == (128, 128) and f.truth.dtype == bool
        assert 0.02 < f.truth.mean() < 0.9
        # outside the true mask the fake equals the original up to compression
        diff = np.abs(f.real.astype(int) - f.fake.astype(int)).mean(axis=2)
        assert diff[f.truth].mean() > diff[~f.truth].mean()
    assert {f.compression for f in faces} == {"c23", "c40"}
    with pytest.raises(FFMaskError, match="no fake"):
        fidelity.collect_faces(tiny_tree, frames=1, videos=lambda vid: False)


def test_cli_bench_masks_writes_table_json_and_figures(tiny_tree, tmp_path):
    from ffmask.cli import app

    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "masks", str(tiny_tree), "--out", str(out), "--frames", "1",
                                      "--method", "mscc,ssim,hull"])
    assert result.exit_code == 0, result.output
    assert "| hull | c40 |" in result.output
    for name in ("masks.md", "masks.json", "masks_iou.png", "masks_worst.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "masks_iou.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "masks.json").read_text())
    assert data["methods"] == ["mscc", "ssim", "hull"]
    assert data["thresholds"] == {"mscc": None, "ssim": 0.1, "hull": None}
    assert len(data["faces"]) == 8 and len(data["scores"]) == 24
    for row in data["summary"]:
        scores = [s["iou"] for s in data["scores"] if s["method"] == row["method"]
                  and data["faces"][s["face"]]["compression"] == row["compression"]]
        assert 0.0 <= row["iou"] <= 1.0
        assert min(scores) <= row["iou"] <= max(scores)
    md = (out / "masks.md").read_text()
    assert "| ssim | c23 |" in md and "By manipulation" in md

    bad = CliRunner().invoke(app, ["bench", "masks", str(tiny_tree), "--out", str(out), "--method", "mscc,nope"])
    assert bad.exit_code != 0 and "nope" in bad.output
    bad = CliRunner().invoke(app, ["bench", "masks", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_oracles_beat_every_single_threshold_of_the_residual():
    rng = np.random.default_rng(5)
    real = rng.integers(60, 200, (48, 48, 3), dtype=np.uint8)
    fake = real.copy()
    truth = np.zeros((48, 48), bool)
    truth[10:30, 12:34] = True
    fake[truth] = np.clip(fake[truth].astype(int) + 25, 0, 255).astype(np.uint8)
    noisy = np.clip(fake.astype(int) + rng.integers(-3, 4, fake.shape), 0, 255).astype(np.uint8)
    face = _face(real, noisy, truth)
    res = fidelity.evaluate([face], ["oracle", "oracle+hull", "diff@0.1"])
    iou = {s.method: s.iou for s in res.scores}
    d = np.abs(real.astype(float) - noisy).mean(2)
    d = cv2.GaussianBlur(d, (0, 0), 0.012 * 48, borderType=cv2.BORDER_REFLECT)
    best_single = max(_brute_scores(d > t, truth)["iou"] for t in fidelity.RESIDUAL_GRID)
    assert iou["oracle"] == pytest.approx(best_single)
    assert iou["oracle+hull"] >= 0.9 and iou["oracle"] >= iou["diff@0.1"]


def test_pairs_folder_groups_by_family_and_leaves_tuned_families_out(tmp_path):
    from ffmask.cli import app
    from ffmask.synth.pairs import build_pairs

    tune, held = tmp_path / "tune", tmp_path / "held"
    build_pairs(tune, seed=1, n=3, regions=["mouth"], operations=["blur"], identities=["biden"], size=96)
    build_pairs(held, seed=2, n=6, regions=["mouth", "eyes"], operations=["blur", "color"],
                identities=["obama", "biden-mirrored"], size=96)
    faces = fidelity.collect(held)
    assert len(faces) == 12 and all(f.real.shape == (96, 96, 3) for f in faces)
    assert {f.tags["region"] for f in faces} <= {"mouth", "eyes"}
    kept = fidelity.exclude_tuned(faces, fidelity.tuned_on(tune))
    # no mouth, no blur and no Biden (mirrored or not) survives
    assert all(f.tags["region"] != "mouth" and f.tags["operation"] != "blur" and f.tags["person"] != "Joe Biden"
               for f in kept)
    want = [f for f in faces if f.tags["region"] == "eyes" and f.tags["operation"] == "color"
            and f.tags["identity"] == "obama"]
    assert [f.video_id for f in kept] == [f.video_id for f in want]
    res = fidelity.evaluate(faces, ["uniform"])
    by_region = fidelity.group_scores(res, "region")
    for g in by_region:
        members = [f for f in faces if f.tags["region"] == g["group"] and f.compression == g["compression"]]
        assert g["n"] == len(members)
        assert g["iou"] == pytest.approx(np.mean([f.truth.mean() for f in members]))

    out = tmp_path / "bench"
    # the CLI on a held set of other families: only Obama's faces are scored
    other = tmp_path / "other"
    build_pairs(other, seed=3, n=4, regions=["eyes"], operations=["color"], identities=["obama", "biden-mirrored"],
                size=96)
    obama = [f for f in fidelity.collect(other) if f.tags["person"] == "Barack Obama"]
    assert 0 < len(obama) < 8
    result = CliRunner().invoke(app, ["bench", "masks", str(other), "--out", str(out), "--method", "mscc,hull,oracle",
                                      "--tuned-on", str(tune)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "masks.json").read_text())
    assert sorted(f["video_id"] for f in data["faces"]) == sorted(f.video_id for f in obama)
    assert {"region", "operation", "blend"} <= set(data["axes"])
    assert (out / "masks_iou_operation.png").is_file()
    result = CliRunner().invoke(app, ["bench", "masks", str(tune), "--out", str(out), "--tuned-on", str(tune)])
    assert result.exit_code != 0 and "tuning set" in result.output and "Traceback" not in result.output


def test_fam_maps_of_any_evaluator_are_scored_like_focus(tmp_path):
    """A model-backed method other than focus goes through the same registry path (no name in the scorer)."""
    import torch

    from ffmask import targets
    from ffmask.models.checkpoint import save_checkpoint
    from ffmask.models.evaluators import create_evaluator
    from ffmask.pipeline import JobSpec

    torch.manual_seed(0)
    model = create_evaluator("efb4-fpn", backbone="tf_efficientnet_lite0", img_size=64)
    stem = tmp_path / "det"
    save_checkpoint(stem, model, model_name="efb4-fpn", config=model.config.to_dict())
    ckpt = stem.with_name("det.safetensors")
    rng = np.random.default_rng(5)
    faces = [_face(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
                   rng.random((48, 48)) < 0.3) for _ in range(3)]
    res = fidelity.evaluate(faces, ["fam"], checkpoint=ckpt, device="cpu")
    assert res.thresholds == {"fam": fidelity.MODEL_MAP_THRESHOLD}
    spec = targets.get_method("fam")
    grids, _ = spec.fn(spec.model(JobSpec(methods=("fam",), checkpoints=str(ckpt), device="cpu")),
                       np.stack([f.fake for f in faces]), np.full(3, -1))
    for s, g, f in zip(res.scores, grids, faces):
        m = cv2.resize(np.asarray(g, np.float32), (48, 48), interpolation=cv2.INTER_LINEAR)
        assert s.iou == pytest.approx(mask_scores(m > 0.5, f.truth)["iou"])
    with pytest.raises(Exception, match="checkpoint"):
        fidelity.evaluate(faces, ["fam"])  # fam has no default model


def test_bar_styles_give_every_method_its_own_colour_and_mark_the_ceilings():
    from matplotlib.colors import to_rgba

    from ffmask.fidelity.report import bar_styles

    methods = ["mscc", "ssim", "diff@0.1", "hull", "hull-nolm", "hull-rules", "hull-rules-nolm", "hull-net",
               "hull-net-nolm", "uniform", "oracle", "oracle+hull"]  # the benchmark's twelve bars
    style = bar_styles(methods)
    assert set(style) == set(methods)
    colours = [to_rgba(style[m]["color"]) for m in methods]
    assert len(set(colours)) == len(methods)  # tab10 alone gave oracle mscc's colour
    assert [m for m in methods if style[m].get("hatch")] == ["oracle", "oracle+hull"]
    assert all(c[0] == c[1] == c[2] for m, c in zip(methods, colours) if m.startswith("oracle"))  # grey
