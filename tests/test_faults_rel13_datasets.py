"""Session 15 (rel13): dataset trees whose lists or names do not fit them.

K3. A Celeb-DF ``List_of_testing_videos.txt`` naming its videos from above ROOT
(``1 Celeb-DF-v2/YouTube-real/00000.mp4``) or from another tree: at 9368f92 no line matched a video, so
**every test video was split "train"** (``--split train`` trained on them), each line only a "listed but
missing" problem. Now a line is read from its Celeb-DF folder on, and a list naming none of the videos is no
list (``--split train/test`` refused, ``all`` leaves the split empty).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ffmask.datasets import get_dataset
from ffmask.errors import FFMaskError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _celebdf(root: Path, list_text: str) -> Path:
    _touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0000.mp4", "YouTube-real/00000.mp4",
           "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4")
    (root / "List_of_testing_videos.txt").write_text(list_text)
    return root


def test_celebdf_list_written_from_above_root_still_keeps_test_videos_out_of_train(tmp_path):
    root = _celebdf(tmp_path / "Celeb-DF-v2", "1 Celeb-DF-v2/YouTube-real/00000.mp4\n"
                                              "0 Celeb-DF-v2/Celeb-synthesis/id1_id0_0000.mp4\n")
    train = get_dataset("celeb-df", root, split="train")
    # 9368f92: all five, the two test videos among them
    assert sorted(i.video_id for i in train.items) == ["Celeb-real/id0_0000", "Celeb-real/id1_0000",
                                                        "Celeb-synthesis/id0_id1_0000"]
    test = get_dataset("celeb-df", root, split="test")
    assert sorted(i.video_id for i in test.items) == ["Celeb-synthesis/id1_id0_0000", "YouTube-real/00000"]
    assert not [p for p in test.problems if "listed" in str(p)]


def test_celebdf_list_naming_none_of_the_videos_is_no_list(tmp_path):
    root = _celebdf(tmp_path / "cdf", "1 YouTube-real/09999.mp4\n0 Celeb-synthesis/id8_id9_0000.mp4\n")
    for split in ("train", "test"):
        with pytest.raises(FFMaskError, match="names none of the videos under .* does not fit this tree"):
            get_dataset("celeb-df", root, split=split)  # 9368f92: train gave all five videos, test none
    scan = get_dataset("celeb-df", root)
    assert len(scan.items) == 5 and all(i.split == "" for i in scan.items)  # 9368f92: all "train"
    assert any("names none of the videos" in str(p) for p in scan.problems)


# K6. A folder of frames holding two videos' frames (``a_0000.png`` ... and ``b_0000.png`` ..., as
# ``ffmpeg -i a.mp4 a_%04d.png`` leaves them when run for two videos into one folder) or each frame twice
# (``0001.png`` beside ``0001.jpg``): at 9368f92 read in name order as one video, all a's then all b's:
# **faces of two videos (two people) under one id**, status ok. Now a problem, skipped.


@pytest.mark.parametrize("frames, clash", [
    ([f"a_{i:04d}.png" for i in range(6)] + [f"b_{i:04d}.png" for i in range(6)], ("a_0000.png", "b_0000.png")),
    ([f"{i:04d}.png" for i in range(6)] + [f"{i:04d}.jpg" for i in range(6)], ("0000.jpg", "0000.png")),
])
def test_a_folder_of_frames_numbering_a_frame_twice_is_not_one_video(tmp_path, frames, clash):
    root = tmp_path / "clips"
    _touch(root, "talk.mp4", *(f"two/{name}" for name in frames), *(f"one/frame_{i}.png" for i in range(12)),
           "plain/cover.png", "plain/back.png")
    scan = get_dataset("folder", root)
    assert sorted(i.video_id for i in scan.items) == ["one", "plain", "talk"]  # 9368f92: "two" as well
    (problem,) = [p for p in scan.problems if p.where == "two/"]
    assert f"frames {clash[0]} and {clash[1]} are numbered alike" in problem.reason and "skipped" in problem.reason


def test_no_other_video_says_why_the_folder_of_frames_was_refused(tmp_path):
    root = tmp_path / "clips"
    _touch(root, *(f"two/{p}_{i:04d}.png" for p in "ab" for i in range(3)))
    with pytest.raises(FFMaskError, match=r"no videos .* under .*clips \(two/: frames a_0000.png and b_0000.png"):
        get_dataset("folder", root)


# K8. A misspelt split folder of Celeb-DF (``Celeb-Synthesis/``) or WildDeepfake (``fake-train/``): at 9368f92
# only "Celeb-synthesis: folder missing" was said; the folder holding the videos was passed over without its
# name. Now it is named.


def test_a_misspelt_celebdf_or_wdf_folder_is_named(tmp_path):
    root = tmp_path / "cdf"
    _touch(root, "Celeb-real/id0_0000.mp4", "Celeb-Synthesis/id0_id1_0000.mp4", "notes/readme.txt")
    (root / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n")
    scan = get_dataset("celeb-df", root)
    problems = {str(p.where): str(p.reason) for p in scan.problems}
    assert problems["Celeb-synthesis"] == "folder missing"
    assert problems["Celeb-Synthesis/"].startswith("not a Celeb-DF folder (names are case-sensitive")
    assert "notes/" not in problems  # no videos in it: nothing to say

    root = tmp_path / "wdf"
    _touch(root, "real_train/1/0/0.png", "fake-train/2.tar.gz", "shards/run.json")
    scan = get_dataset("wdf", root)
    problems = {str(p.where): str(p.reason) for p in scan.problems}
    assert problems["fake-train/"].startswith("not a WildDeepfake folder") and "fake_train" in problems
    assert "shards/" not in problems


# K9. A folder dataset copied from macOS (file names decomposed: ``vide\u0301o.mp4``) labelled by a labels.csv typed
# elsewhere (composed: ``vidéo.mp4``): at 9368f92 the two spellings of one name never met: the video unlabelled
# (-1, dropped by train and evaluate) and "listed in labels.csv but no such video" for a name that looks the same.


def test_a_label_reaches_a_video_whose_name_is_spelt_in_another_unicode_form(tmp_path):
    import unicodedata

    root = tmp_path / "clips"
    _touch(root, unicodedata.normalize("NFD", "vidéo.mp4"), unicodedata.normalize("NFC", "sub/café/x.mp4"))
    (root / "labels.csv").write_text(unicodedata.normalize("NFC", "vidéo.mp4") + ",1\n"
                                     + unicodedata.normalize("NFD", "sub/café/x") + ",0\n", encoding="utf-8")
    scan = get_dataset("folder", root)
    labels = {unicodedata.normalize("NFC", i.video_id): i.label for i in scan.items}
    assert labels == {"vidéo": 1, "sub/café/x": 0}  # 9368f92: both -1
    assert scan.problems == []
