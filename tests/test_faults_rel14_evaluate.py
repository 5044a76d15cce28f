"""Session 15, second pass (rel14), L2: a shard without run.json (a copy) meets every source's videos.

Session 15's K4 keyed a video by its run's source (the dataset, from ``run.json``); a shard folder without
run.json (shards copied elsewhere without it) has no source (None). ``repeated_faces`` read None as "any
source", but ``video_overlap`` (evaluate's "trained this checkpoint" count, train's validation overlap)
compared sources exactly: at c3b6353 a copy of the training shards scored against the checkpoint reported
``scored_training_videos: 0`` (held out, silently wrong), and likewise with the copy on the training side.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from ffmask.evaluate import evaluate_checkpoint, video_overlap
from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator
from tests._evaluator_shards import write_shards

CONFIG = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}


def test_an_unknown_source_meets_any_source_of_the_same_video():
    seen = [("ff++", "youtube/000"), ("ff++", "Deepfakes/000_003")]
    # c3b6353: 0 videos; a copy of the same shards (source None) is the same videos
    found = video_overlap(seen, [(None, "youtube/000"), (None, "youtube/000"), (None, "youtube/009")])
    assert (found["videos"], found["faces"], found["videos_scored"]) == (1, 2, 2)
    # the other way round: training shards copied without run.json, scored shards of a run
    found = video_overlap([(None, "youtube/000")], [("ff++", "youtube/000"), ("ff++", "youtube/004")])
    assert (found["videos"], found["faces"]) == (1, 1)
    # people: FF++'s 003_000 shows 000 and 003; an unknown-source copy of it is read as each known source
    found = video_overlap([("ff++", "Deepfakes/000_003")], [(None, "youtube/003")])
    assert (found["videos"], found["people_videos"]) == (0, 1)
    # two known sources still never meet (K4: two folder datasets' 001)
    found = video_overlap([("folder:/data/real", "001")], [("folder:/data/fake", "001")])
    assert (found["videos"], found["people_videos"]) == (0, 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l2")
    (tmp / "train").mkdir()
    shards = write_shards(tmp / "train", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    (tmp / "train" / "run.json").write_text(json.dumps({"dataset": "folder", "root": "/data/clips",
                                                        "job": {"size": 32, "scale": 1.3}}))
    train_evaluator(shards, tmp / "run", config=CONFIG,
                    args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0,
                                            device="cpu"))
    return tmp


def test_a_copy_of_the_training_shards_without_run_json_is_not_held_out(trained, tmp_path, caplog):
    copy = tmp_path / "copy"
    copy.mkdir()
    for shard in (trained / "train").glob("*.h5"):
        shutil.copy(shard, copy / shard.name)  # the shards only, as `cp *.h5` copies them
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        ev = evaluate_checkpoint(trained / "run" / "last.json", [copy], device="cpu", workers=0, keep_images=0)
    seen = ev.metrics["scored_training_videos"]
    # c3b6353: {"videos": 0, ...}: every scored face trained the checkpoint, reported as held out
    assert seen["videos"] == seen["videos_scored"] == len(set(ev.table["video_id"].tolist())) > 0
    assert seen["faces"] == ev.metrics["n"]
    assert any("trained this checkpoint" in r.getMessage() for r in caplog.records)


# L3. Faces of unknown label (-1: a folder dataset's videos its labels file does not cover) were dropped by
# `evaluate` without a word at c3b6353: the table and metrics.json gave the labelled faces' scores as the
# scores of the shards. Now counted (metrics.json "unlabelled_faces"), a warning, a bold sentence in metrics.md.


def _unlabelled_shard(path: Path) -> None:
    import numpy as np

    from ffmask.shards.writer import FaceRecord, ShardWriter

    rng = np.random.default_rng(0)
    with ShardWriter(path, size=32, maps={"official": "mask", "ssim": "continuous"}, config={"test": True}) as w:
        for video in ("u1", "u2", "u3"):
            for frame in range(4):
                w.append(FaceRecord(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                                    maps={"official": np.zeros((32, 32), bool),
                                          "ssim": np.zeros((32, 32), np.float32)},
                                    label=-1, video_id=video, original_id="", manipulation="", compression="",
                                    split="", frame_index=frame, box=np.array([0, 0, 32, 32], np.int32),
                                    landmarks=None))


def test_unlabelled_faces_left_out_of_the_scores_are_said(trained, tmp_path):
    from ffmask.evaluate import to_markdown
    from tests._cli import ffmask_cli

    shards = tmp_path / "mixed"
    shutil.copytree(trained / "train", shards)
    _unlabelled_shard(shards / "unlabelled.h5")
    ev = evaluate_checkpoint(trained / "run" / "last.json", [shards], device="cpu", workers=0, keep_images=0)
    assert ev.metrics["n"] == 8  # the labelled faces, as before
    assert ev.metrics["unlabelled_faces"] == {"faces": 12, "videos": 3}  # c3b6353: no such key, no word
    assert "**12 faces of 3 video(s) have no label" in to_markdown(ev)
    code, out, err = ffmask_cli("evaluate", trained / "run" / "last.json", "--shards", shards, "--out",
                                tmp_path / "report", "--device", "cpu", "--workers", "0")
    assert code == 0, out + err
    assert " ".join((out + err).split()).count("12 faces of 3 video(s) have no label") == 1
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["unlabelled_faces"]["faces"] == 12
    # every face labelled: nothing said
    ev = evaluate_checkpoint(trained / "run" / "last.json", [trained / "train"], device="cpu", workers=0,
                             keep_images=0)
    assert ev.metrics["unlabelled_faces"] == {"faces": 0, "videos": 0} and "no label" not in to_markdown(ev)


# L4. A shard copied without its run.json carries the run's config itself (its "config" attribute: the
# dataset and ROOT). At c3b6353 such shards had no source: two folder runs' copies (real/ and fake/, ids
# 001 and 002 in both) scored together were refused ("video ... has both real and fake frames"), and FoCus's
# split (face_datasets) did not know a copied FF++ shard's people.


def _folder_shard(path: Path, root: str, label: int, seed: int, scale: float = 1.3) -> None:
    import numpy as np

    from ffmask.shards.writer import FaceRecord, ShardWriter

    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    config = {"dataset": "folder", "root": root, "job": {"size": 32, "scale": scale}}
    with ShardWriter(path, size=32, maps={}, config=config) as w:
        for video in ("001", "002"):
            for frame in (0, 10):
                w.append(FaceRecord(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), maps={}, label=label,
                                    video_id=video, original_id="", manipulation="" if label == 0 else "fake",
                                    compression="", split="", frame_index=frame,
                                    box=np.array([0, 0, 32, 32], np.int32), landmarks=None))


def test_copies_without_run_json_keep_their_source_from_the_shards(trained, tmp_path, caplog):
    from ffmask.evaluate import face_datasets, face_sources
    from ffmask.shards import ShardIndex

    _folder_shard(tmp_path / "copy_real" / "shard-00000.h5", "/data/real", 0, seed=1)
    _folder_shard(tmp_path / "copy_fake" / "shard-00000.h5", "/data/fake", 1, seed=2)
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        ev = evaluate_checkpoint(trained / "run" / "last.json", [tmp_path / "copy_real", tmp_path / "copy_fake"],
                                 device="cpu", workers=0, keep_images=0)
    # c3b6353: ValueError "video '...001' has both real and fake frames" (one Error line, nothing scored)
    assert ev.metrics["scored_training_videos"]["videos_scored"] == 4
    assert sorted(set(ev.table["source"].tolist())) == ["folder:/data/fake", "folder:/data/real"]
    assert not [r for r in caplog.records if "read twice" in r.getMessage()]
    index = ShardIndex([tmp_path / "copy_real" / "shard-00000.h5"])
    try:
        assert set(face_datasets(index)) == {"folder"} and set(face_sources(index)) == {"folder:/data/real"}
    finally:
        index.close()
    # a run.json beside the shards still decides (read once per folder, as before)
    (tmp_path / "copy_real" / "run.json").write_text(json.dumps({"dataset": "folder", "root": "/elsewhere"}))
    index = ShardIndex([tmp_path / "copy_real" / "shard-00000.h5"])
    try:
        assert set(face_sources(index)) == {"folder:/elsewhere"}
    finally:
        index.close()


# L5. K7's crop check read run.json only: shards copied without it, of another --scale than the training
# crops, were scored without a word at c3b6353 (crop_mismatch {}). The shard's own run config says it now.


def test_copies_without_run_json_of_other_crops_are_said(trained, tmp_path):
    from ffmask.evaluate import to_markdown

    _folder_shard(tmp_path / "r" / "shard-00000.h5", "/data/real", 0, seed=1, scale=2.0)
    _folder_shard(tmp_path / "f" / "shard-00000.h5", "/data/fake", 1, seed=2, scale=2.0)
    ev = evaluate_checkpoint(trained / "run" / "last.json", [tmp_path / "r", tmp_path / "f"], device="cpu",
                             workers=0, keep_images=0)
    assert ev.metrics["crop_mismatch"] == {"trained": [[32, 1.3]], "scored": [[32, 2.0]]}  # c3b6353: {}
    assert "the checkpoint trained on crops of 32 px at scale 1.3" in to_markdown(ev)
