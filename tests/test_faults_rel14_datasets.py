"""Session 15, second pass (rel14), L1: WildDeepfake sequences get K6's numbering check.

A WildDeepfake sequence is a folder of frames (in a tar archive, or extracted). K6 (session 15) skipped a
folder dataset's folder whose frames number a frame twice (``a_0000.png`` beside ``b_0000.png``: two videos'
frames in one folder; ``0.png`` beside ``0.jpg``: each frame twice); a WildDeepfake sequence was still read in
name order as one video of both (at c3b6353: status ok, the two videos' faces under one id).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ffmask.datasets import get_dataset
from ffmask.sequences import read_frames
from tests._dataset_trees import write_tar


def _png(value: int) -> bytes:
    ok, data = cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def test_a_wdf_sequence_of_two_videos_numbered_alike_is_skipped(tmp_path):
    root = tmp_path / "wdf"
    # sequence 7: frames of two videos extracted into one folder (a_*, then b_*); sequence 8: a good one
    write_tar(root / "fake_train/3.tar.gz", {"3/7/a_0000.png": _png(10), "3/7/a_0001.png": _png(10),
                                           "3/7/b_0000.png": _png(200), "3/7/b_0001.png": _png(200),
                                           "3/8/0.png": _png(50), "3/8/1.png": _png(50)})
    # an extracted sequence holding each frame twice
    for name in ("0.png", "0.jpg", "1.png", "1.jpg"):
        (root / "real_train/1/4").mkdir(parents=True, exist_ok=True)
        (root / "real_train/1/4" / name).write_bytes(_png(90))
    scan = get_dataset("wdf", root, split="train")
    ids = [item.video_id for item in scan.items]
    # c3b6353: fake_train/3/7 and real_train/1/4 were items, 7 read as one video of both people
    assert ids == ["fake_train/3/8"]
    assert sorted(read_frames(scan.items[0].path, [0, 1])) == [0, 1]
    problems = {p.where: p.reason for p in scan.problems}
    assert "numbered alike" in problems["fake_train/3/7"] and "a_0000.png" in problems["fake_train/3/7"]
    assert "numbered alike" in problems["real_train/1/4"]


def test_a_cover_picture_above_frame_folders_is_not_a_video(tmp_path):
    # the lead, after rel14's note: a folder dataset of frame folders with a picture at its top (a cover, a
    # preview sheet); at c3b6353 the picture was a one-frame video named after ROOT
    import shutil

    portraits = Path(__file__).resolve().parents[1] / "ffmask" / "synth" / "portraits"
    root = tmp_path / "frames_tree"
    for name, face in (("a", "biden.jpg"), ("b", "obama.jpg")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            shutil.copy(portraits / face, root / name / f"{i:04d}.jpg")
    shutil.copy(portraits / "biden.jpg", root / "cover.jpg")
    scan = get_dataset("folder", root)
    assert sorted(i.video_id for i in scan.items) == ["a", "b"]
    assert {p.where: p.reason for p in scan.problems} == {
        "frames_tree/": "1 image(s) beside 2 folder(s): not read as a folder of frames (a folder of frames holds "
                        "images only, no folders); skipped"}
