"""Session 11 (rel9), part B: a validation split must not show training's people.

``train focus`` holds out whole videos for validation when no face has split "val"
(``split_by_video``). fb14211 grouped the videos by original only: FF++'s fake
``000_003`` (003's face in 000's video) went with 000, so it could train while
003's own video and its fakes validated; on ten FF++-style identities with seeds
0-4 (val fraction 0.2), three of five splits put four people on both sides. Videos
that show a common person now form one group; where that joins most videos into
one group (Celeb-DF's many swaps), the split says validation shares people.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffmask.train.focus import split_by_video


def ff_faces(n: int = 10):
    """FF++-style faces: n originals, pairs (0, 1), (2, 3), ... each swapped both ways, 2 methods, 3 frames."""
    labels, metas = [], []
    for a in range(0, n, 2):
        for x, y in ((a, a + 1), (a + 1, a)):
            for _ in range(3):
                labels.append(0)
                metas.append({"video_id": f"youtube/{x:03d}", "original_id": "", "dataset": "ff++"})
                for method in ("Deepfakes", "FaceSwap"):
                    labels.append(1)
                    metas.append({"video_id": f"{method}/{x:03d}_{y:03d}", "original_id": f"youtube/{x:03d}",
                                  "dataset": "ff++"})
    return np.array(labels), metas


def people(metas, indices) -> set:
    """The three-digit ids a face's video name holds (written out here, not through the registry)."""
    return {p for i in indices for p in metas[i]["video_id"].split("/")[1].split("_")}


@pytest.mark.parametrize("seed", range(5))
def test_no_person_is_in_both_training_and_validation(seed):
    labels, metas = ff_faces()
    split = split_by_video(labels, metas, 0.2, seed)
    assert split.val.size and split.train.size
    # fb14211, seeds 0, 1, 4: {006, 007, 008, 009}, {004, 005, 008, 009}, {002, 003, 006, 007} on both sides
    assert people(metas, split.train).isdisjoint(people(metas, split.val))
    assert split.how.startswith("held-out people: the 10 originals' videos in 5 groups")


def test_people_linked_into_one_group_fall_back_to_originals_and_say_so():
    # Celeb-DF-like: every person's face swapped into every other's videos: one group of people
    labels, metas = [], []
    for a in range(4):
        labels.append(0)
        metas.append({"video_id": f"Celeb-real/id{a}_0000", "original_id": "", "dataset": "celeb-df"})
        for b in range(4):
            if a != b:
                labels.append(1)
                metas.append({"video_id": f"Celeb-synthesis/id{a}_id{b}_0000", "original_id": f"Celeb-real/id{a}_0000",
                              "dataset": "celeb-df"})
    split = split_by_video(np.array(labels), metas, 0.25, 0)
    assert split.val.size and split.train.size  # a validation set all the same
    assert "training and validation videos may show the same people" in split.how, split.how
    assert "4 of 4 originals in one group" in split.how


def test_a_given_val_split_says_how_many_people_it_shares_with_training():
    labels, metas = ff_faces(4)
    for m in metas:  # a hand-made split: 000's videos validate, 001's (and 001_000, 000's face) train
        m["split"] = "val" if m["video_id"].split("/")[1].startswith("000") else "train"
    split = split_by_video(labels, metas, 0.1, 0)
    assert split.how == "meta split (2 people in both training and validation videos)", split.how


def test_datasets_without_names_of_people_split_by_original_as_before():
    labels, metas = ff_faces()
    for m in metas:
        m["dataset"] = "dfdc"
    split = split_by_video(labels, metas, 0.2, 0)
    assert split.how == "held-out videos"


def test_shard_index_names_the_dataset_from_run_json(small_ff_root, tmp_path):
    from ffmask import ShardDataset
    from ffmask.annotate import annotate
    from ffmask.pipeline import JobSpec
    from ffmask.train.focus import shard_index

    out = tmp_path / "shards"
    annotate("ff++", small_ff_root, out, JobSpec(methods=("noise",), frames=1, size=32, detector="none"), jobs=1)
    assert json.loads((out / "run.json").read_text())["dataset"] == "ff++"
    labels, metas = shard_index(ShardDataset(out, maps=(), return_meta=False))
    assert {m["dataset"] for m in metas} == {"ff++"} and len(metas) == labels.size == 4
    split = split_by_video(labels, metas, 0.5, 0)
    # two originals 000 and 001 and the fakes 000_001, 001_000: one pair of people, nothing to hold out apart
    assert "may show the same people" in split.how
