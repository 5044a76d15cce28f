"""Session 15 (rel13), K4: two folder datasets whose videos share names, scored together.

Real clips in ``real/`` and fakes in ``fake/``, each annotated with ``ffmask annotate folder`` (ids are paths
under each ROOT: ``001``, ``002`` in both). At 9368f92 ``evaluate`` keyed a video by compression and id only:
the two ``001`` were one video, so scoring both runs was refused (``video '\\x00001' has both real and fake
frames``), and two folders of one label had their videos merged into one (the video AUC over half the
videos), with a false "faces are read twice" warning. A video is now keyed by its run's source too (the
dataset, and a folder dataset's ROOT, from run.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ffmask.evaluate import evaluate_checkpoint
from ffmask.shards.writer import FaceRecord, ShardWriter
from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator
from tests._evaluator_shards import write_shards

CONFIG = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}


def _folder_run(out: Path, root: Path, label: int, seed: int) -> Path:
    """An annotate-folder-like run of two videos ``001`` and ``002`` (3 frames each) in ``out``."""
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"dataset": "folder", "root": str(root)}))
    rng = np.random.default_rng(seed)
    with ShardWriter(out / "shard-00000.h5", size=32, maps={}, config={}) as w:
        for video in ("001", "002"):
            for frame in (0, 10, 20):
                w.append(FaceRecord(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), maps={}, label=label,
                                    video_id=video, original_id="", manipulation="" if label == 0 else "fake",
                                    compression="", split="", frame_index=frame,
                                    box=np.array([0, 0, 32, 32], np.int32), landmarks=None))
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k4")
    (tmp / "train").mkdir()
    train = write_shards(tmp / "train", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    train_evaluator(train, tmp / "run", config=CONFIG,
                    args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                            device="cpu"))
    return tmp / "run"


def _video_auc_by_hand(ev) -> float:
    keys = [f"{s}|{v}" for s, v in zip(ev.table["source"], ev.table["video_id"])]
    videos = sorted(set(keys))
    means = [np.mean(ev.score[[k == v for k in keys]]) for v in videos]
    labels = [int(ev.table["label"][keys.index(v)]) for v in videos]
    return roc_auc_score(labels, means)


def test_a_real_and_a_fake_folder_with_the_same_names_are_scored_as_four_videos(tmp_path, checkpoint, caplog):
    real = _folder_run(tmp_path / "real_run", tmp_path / "real", 0, seed=1)
    fake = _folder_run(tmp_path / "fake_run", tmp_path / "fake", 1, seed=2)
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        ev = evaluate_checkpoint(checkpoint, [real, fake], device="cpu", workers=0, keep_images=0)
    # 9368f92: ValueError "video '\x00001' has both real and fake frames" (evaluate: one Error line, no scores)
    assert ev.metrics["groups"]["all"]["video_auc"] == pytest.approx(_video_auc_by_hand(ev))
    assert not [r for r in caplog.records if "read twice" in r.getMessage()]
    assert ev.metrics["scored_training_videos"]["videos_scored"] == 4


def test_two_folders_of_one_label_with_the_same_names_are_not_merged(tmp_path, checkpoint, caplog):
    a = _folder_run(tmp_path / "a_run", tmp_path / "fakes_a", 1, seed=3)
    b = _folder_run(tmp_path / "b_run", tmp_path / "fakes_b", 1, seed=4)
    real = _folder_run(tmp_path / "real_run", tmp_path / "real", 0, seed=5)
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        ev = evaluate_checkpoint(checkpoint, [a, b, real], device="cpu", workers=0, keep_images=0)
    assert ev.metrics["scored_training_videos"]["videos_scored"] == 6  # 9368f92: refused (real "001" too)
    assert ev.metrics["groups"]["all"]["video_auc"] == pytest.approx(_video_auc_by_hand(ev))
    # 9368f92 (without the real run): "6 scored faces are read twice ... a shard and its copy?"
    assert not [r for r in caplog.records if "read twice" in r.getMessage()]


def test_a_copy_of_a_run_is_still_one_source(tmp_path, checkpoint, caplog):
    import shutil

    real = _folder_run(tmp_path / "real_run", tmp_path / "real", 0, seed=1)
    shutil.copytree(real, tmp_path / "copy")  # the same run (same run.json): the same videos
    fake = _folder_run(tmp_path / "fake_run", tmp_path / "fake", 1, seed=2)
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        ev = evaluate_checkpoint(checkpoint, [real, tmp_path / "copy", fake], device="cpu", workers=0,
                                 keep_images=0)
    assert ev.metrics["scored_training_videos"]["videos_scored"] == 4
    assert any("6 scored faces are read twice" in r.getMessage() for r in caplog.records)
