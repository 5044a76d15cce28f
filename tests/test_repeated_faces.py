"""A shard read together with its copy: its faces count twice in training and in every score, and are said.

Session 14 (seen by rel12, left: `info` flagged the copy, `train` / `evaluate` read it silently twice).
"""

from __future__ import annotations

import logging
import shutil

from ffmask import ShardDataset
from ffmask.evaluate import repeated_faces, warn_repeated_faces
from ffmask.train.evaluator import face_table
from tests._evaluator_shards import write_shards


def test_a_shard_and_its_copy_are_said_to_repeat_their_faces(tmp_path, caplog):
    paths = write_shards(tmp_path / "run", ["astronaut", "coffee"], frames=3, size=32, noise=False)
    copy = tmp_path / "elsewhere" / "copy.h5"
    copy.parent.mkdir()
    shutil.copy(paths[0], copy)

    alone = ShardDataset(paths, return_meta=False)
    table = face_table(alone)
    assert repeated_faces(table, [str(paths[0])] * len(alone)) == {"faces": 0, "example": None}
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        assert warn_repeated_faces(table, alone.index, "training") == 0
    assert not caplog.records

    both = ShardDataset([*paths, copy], return_meta=False)
    n_first = int(both.index.counts[0])
    assert n_first > 0 and len(both) == len(alone) + n_first
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        assert warn_repeated_faces(face_table(both), both.index, "training") == n_first
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"{n_first} training faces are read twice" in message
    assert str(paths[0].resolve()) in message and str(copy.resolve()) in message


def test_the_same_video_at_another_compression_is_not_a_repeat():
    # the same frames of one video annotated at c23 and at c40 (two runs passed together) are other faces
    table = {"video_id": ["a", "a"], "original_id": ["", ""], "manipulation": ["", ""],
             "compression": ["c23", "c40"], "label": [0, 0], "frame_index": [5, 5]}
    assert repeated_faces(table, ["x.h5", "y.h5"])["faces"] == 0
    table["compression"] = ["c23", "c23"]
    assert repeated_faces(table, ["x.h5", "y.h5"]) == {"faces": 1, "example": ("a", 5, "x.h5", "y.h5")}


def test_focus_training_index_says_a_copied_shard_repeats_its_faces(tmp_path, caplog):
    from ffmask.train.focus import shard_index

    paths = write_shards(tmp_path / "run", ["astronaut"], frames=2, size=32, noise=False)
    copy = tmp_path / "copy" / "shard.h5"
    copy.parent.mkdir()
    shutil.copy(paths[0], copy)
    with caplog.at_level(logging.WARNING, logger="ffmask.evaluate"):
        labels, metas = shard_index(ShardDataset(paths, return_meta=False))
        assert not caplog.records and len(metas) == len(labels) > 0
        labels, metas = shard_index(ShardDataset([paths[0], copy], return_meta=False))
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"{len(labels) // 2} FoCus training faces are read twice" in message
