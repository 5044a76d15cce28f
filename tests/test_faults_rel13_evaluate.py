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


def _run_json(folder: Path, dataset: str, root: Path = Path("/data"), size: int = 32, scale: float = 1.3) -> None:
    (folder / "run.json").write_text(json.dumps({"dataset": dataset, "root": str(root),
                                                 "job": {"size": size, "scale": scale}}))


def _folder_run(out: Path, root: Path, label: int, seed: int, size: int = 32, scale: float = 1.3) -> Path:
    """An annotate-folder-like run of two videos ``001`` and ``002`` (3 frames each) in ``out``."""
    out.mkdir()
    _run_json(out, "folder", root, size, scale)
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
    _run_json(tmp / "train", "folder", size=32, scale=1.3)
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


# K7. Shards of other crops than the checkpoint trained on (another --size, another --scale): at 9368f92 scored
# without a word (the model resizes every crop to its input). Now a warning, metrics.json "crop_mismatch", a
# bold sentence in metrics.md.


def test_evaluate_says_when_the_scored_crops_are_not_the_training_crops(tmp_path, checkpoint):
    from ffmask.evaluate import to_markdown

    same = [_folder_run(tmp_path / "same_r", tmp_path / "r", 0, 1), _folder_run(tmp_path / "same_f", tmp_path / "f", 1, 2)]
    ev = evaluate_checkpoint(checkpoint, same, device="cpu", workers=0, keep_images=0)
    assert ev.metrics["crop_mismatch"] == {} and "framed otherwise" not in to_markdown(ev)
    other = [_folder_run(tmp_path / "wide_r", tmp_path / "r", 0, 1, scale=2.0),
             _folder_run(tmp_path / "wide_f", tmp_path / "f", 1, 2, scale=2.0)]
    ev = evaluate_checkpoint(checkpoint, other, device="cpu", workers=0, keep_images=0)
    assert ev.metrics["crop_mismatch"] == {"trained": [[32, 1.3]], "scored": [[32, 2.0]]}
    assert ("**The scored shards hold crops of 32 px at scale 2, the checkpoint trained on crops of 32 px at "
            "scale 1.3: their faces are resized or framed otherwise than in training") in to_markdown(ev)


def test_the_crop_warning_is_printed_once_by_the_cli(tmp_path, checkpoint):
    from tests._cli import ffmask_cli

    shards = [_folder_run(tmp_path / "r", tmp_path / "r", 0, 1, size=32, scale=1.3),
              _folder_run(tmp_path / "f", tmp_path / "f", 1, 2, size=32, scale=1.8)]
    code, out, err = ffmask_cli("evaluate", checkpoint, "--shards", shards[0], "--shards", shards[1], "--out",
                                tmp_path / "report", "--device", "cpu")
    assert code == 0, out + err
    text = " ".join((out + err).split())
    assert text.count("the checkpoint trained on crops of 32 px at scale 1.3") == 1
    assert "crops of 32 px at scale 1.3 and 32 px at scale 1.8" in text
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["crop_mismatch"]["scored"] == [
        [32, 1.3], [32, 1.8]]
