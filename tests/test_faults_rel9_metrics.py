"""Session 11 (rel9), part B: evaluate's figures on edge cases, against scikit-learn.

fb14211 averaged the frames of FF++'s ``youtube/000`` at c23 and at c40 into one
"video" when both compressions were scored together (the group ``all``); a NaN score
(broken weights) was ``Error: scores hold NaN or infinite values`` without saying whose.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ffmask.evaluate import Evaluation, score_groups


def evaluation(score, video, comp, label):
    n = len(score)
    table = {"label": np.asarray(label, np.int64), "video_id": np.asarray(video, dtype=object),
             "compression": np.asarray(comp, dtype=object),
             "manipulation": np.asarray(["Deepfakes" if x else "original" for x in label], dtype=object),
             "original_id": np.asarray([""] * n, dtype=object), "split": np.asarray(["test"] * n, dtype=object),
             "frame_index": np.arange(n)}
    return Evaluation(checkpoint="x", model="m", config={}, shards=[], table=table, score=np.asarray(score, float),
                      pred_map=None, targets={})


def test_video_auc_keeps_each_compression_of_a_video_apart():
    # two frames per (video, compression); the c40 encodings score differently from the c23 ones
    rows = []
    scores = {("youtube/000", "c23"): 0.1, ("youtube/000", "c40"): 0.7, ("youtube/001", "c23"): 0.3,
              ("youtube/001", "c40"): 0.35, ("Deepfakes/000_001", "c23"): 0.6, ("Deepfakes/000_001", "c40"): 0.2,
              ("Deepfakes/001_000", "c23"): 0.8, ("Deepfakes/001_000", "c40"): 0.4}
    for (video, comp), s in scores.items():
        for _ in range(2):
            rows.append((s, video, comp, int(video.startswith("Deepfakes"))))
    ev = evaluation(*zip(*rows))
    got = score_groups(ev)["all"]["video_auc"]
    videos = list(scores)  # eight test videos: four per compression
    want = roc_auc_score([int(v.startswith("Deepfakes")) for v, _ in videos], [scores[k] for k in videos])
    assert got == pytest.approx(want)  # 0.6875
    merged = roc_auc_score([0, 0, 1, 1], [0.4, 0.325, 0.4, 0.6])  # fb14211: one "video" per id, 0.875
    assert got != pytest.approx(merged)
    for comp in ("c23", "c40"):
        keys = [k for k in videos if k[1] == comp]
        assert score_groups(ev)[f"compression={comp}"]["video_auc"] == pytest.approx(
            roc_auc_score([int(v.startswith("Deepfakes")) for v, _ in keys], [scores[k] for k in keys]))


@pytest.mark.parametrize("labels, scores", [
    ([0, 0, 0], [0.1, 0.2, 0.3]),            # one class only
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]),    # every score tied
    ([0, 1], [0.2, 0.9]),                    # a single video of each label
])
def test_frame_figures_agree_with_scikit_learn_or_are_nan(labels, scores):
    ev = evaluation(scores, [f"v{i}" for i in range(len(labels))], ["c23"] * len(labels), labels)
    frame = score_groups(ev)["all"]["frame"]
    if len(set(labels)) < 2:
        assert np.isnan(frame["auc"]) and np.isnan(frame["ap"]) and np.isnan(frame["eer"])
    else:
        assert frame["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert frame["acc"] == pytest.approx(np.mean((np.asarray(scores) > 0.5) == np.asarray(labels)))


def test_a_checkpoint_predicting_nan_is_one_line_naming_it(tmp_path, monkeypatch):
    import ffmask.train.evaluator as ev_mod
    from _evaluator_shards import write_shards
    from ffmask.errors import FFMaskError
    from ffmask.evaluate import evaluate_checkpoint
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    (tmp_path / "s").mkdir()
    shards = write_shards(tmp_path / "s", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    config = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    train_evaluator(shards, tmp_path / "run", config=config,
                    args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                            device="cpu"))
    real_predict = ev_mod.predict

    def nan_predict(*a, **k):
        out = real_predict(*a, **k)
        out["score"][1] = np.nan
        return out

    monkeypatch.setattr(ev_mod, "predict", nan_predict)
    with pytest.raises(FFMaskError, match=r"predicts no score \(NaN or infinite\) for 1 of 8 faces"):
        evaluate_checkpoint(tmp_path / "run", shards, device="cpu", workers=0)


def test_evaluate_says_when_the_scored_videos_trained_the_checkpoint_in_other_shard_files(tmp_path):
    # fb14211 (F24) compared shard paths only: the same videos in a copy, another compression or another
    # annotate run were scored as held out without a word
    import shutil

    from _evaluator_shards import write_shards
    from ffmask.evaluate import evaluate_checkpoint, to_markdown
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    for name in ("train", "other"):
        (tmp_path / name).mkdir()
    train = write_shards(tmp_path / "train", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    other = write_shards(tmp_path / "other", ("chelsea", "rocket"), frames=2, size=32, noise=False, seed=1)
    shutil.copytree(tmp_path / "train", tmp_path / "copy")  # the same videos, other files
    config = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    train_evaluator(train, tmp_path / "run", config=config,
                    args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                            device="cpu"))
    ev = evaluate_checkpoint(tmp_path / "run", [tmp_path / "copy", *other], device="cpu", workers=0, keep_images=0)
    assert ev.metrics["scored_training_shards"] == []  # other files: F24's check cannot see it
    seen = ev.metrics["scored_training_videos"]
    assert (seen["videos"], seen["faces"], seen["videos_scored"], seen["unread"]) == (4, 8, 8, 0), seen
    assert "**4 of the 8 scored videos (8 faces) trained this checkpoint" in to_markdown(ev)
    ev = evaluate_checkpoint(tmp_path / "run", other, device="cpu", workers=0, keep_images=0)
    assert ev.metrics["scored_training_videos"]["videos"] == 0 and "trained this checkpoint" not in to_markdown(ev)


def test_scored_videos_showing_people_of_training_videos_are_counted(tmp_path):
    import json

    from ffmask.evaluate import training_videos_scored
    from ffmask.shards.writer import FaceRecord, ShardWriter

    def shard(folder, videos):
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({"dataset": "ff++"}))
        with ShardWriter(folder / "shard-00000.h5", size=16, maps={}, config={}) as w:
            for vid in videos:
                w.append(FaceRecord(image=np.zeros((16, 16, 3), np.uint8), maps={}, label=int("_" in vid),
                                    video_id=vid, original_id="", manipulation="", compression="c23", split="",
                                    frame_index=0, box=np.array([0, 0, 16, 16], np.int32), landmarks=None))
        return str(folder / "shard-00000.h5")

    trained = shard(tmp_path / "a", ["youtube/000", "Deepfakes/000_003"])
    doc = {"data": {"train_shards": [trained, str(tmp_path / "gone.h5")]}}
    seen = training_videos_scored(doc, ["youtube/003", "youtube/005", "youtube/000", "youtube/000"],
                                  ["ff++", "ff++", "ff++", "ff++"])
    # 000 trained it; 003's face was in the fake 000_003; 005 is new; one training file is gone
    assert seen == {"videos": 1, "faces": 2, "people_videos": 1, "videos_scored": 3, "unread": 1}


def test_train_evaluator_says_when_validation_videos_are_training_videos(tmp_path, caplog):
    # fb14211 trained and validated on the same videos in two shard folders without a word
    import json
    import logging
    import shutil

    from _evaluator_shards import write_shards
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    (tmp_path / "train").mkdir()
    train = write_shards(tmp_path / "train", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    shutil.copytree(tmp_path / "train", tmp_path / "val")
    config = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    with caplog.at_level(logging.WARNING, logger="ffmask.train"):
        train_evaluator(train, tmp_path / "run", config=config, val_shards=tmp_path / "val",
                        args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                                device="cpu"))
    assert any("4 of the 4 validation videos (8 faces) are training videos" in r.getMessage() for r in caplog.records)
    data = json.loads((tmp_path / "run" / "last.json").read_text())["data"]
    assert data["val_overlap"] == {"videos": 4, "faces": 8, "people_videos": 0, "videos_scored": 4}


def test_evaluate_prints_each_warning_once(tmp_path):
    # fb14211 printed each of its warnings twice: the library's log line (Python's last-resort handler,
    # before the table) and the CLI's coloured line after it
    import os
    import shutil
    import subprocess
    import sys

    from _evaluator_shards import write_shards
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    (tmp_path / "train").mkdir()
    train = write_shards(tmp_path / "train", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    shutil.copytree(tmp_path / "train", tmp_path / "copy")
    train_evaluator(train, tmp_path / "run", config={"backbone": "tf_efficientnet_lite0", "img_size": 32,
                                                      "map_size": 8, "fpn_channels": 8},
                    args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                            device="cpu"))
    env = dict(os.environ, COLUMNS="300", OMP_NUM_THREADS="1")
    for shards in ("copy", "train"):  # other files of the training videos; the training files themselves
        p = subprocess.run([sys.executable, "-m", "ffmask", "evaluate", str(tmp_path / "run"), "--shards",
                            str(tmp_path / shards), "--out", str(tmp_path / f"report-{shards}"), "--workers", "0",
                            "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
        text = p.stdout + p.stderr
        assert p.returncode == 0, text
        assert text.count("scored videos (8 faces) trained this checkpoint") == 1, text
    assert text.count("scored shard(s) trained this checkpoint") == 1 and "scored shards trained" not in text, text
