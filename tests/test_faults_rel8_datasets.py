"""Session 10 (rel8): dataset scans of odd downloads (item 8 and part B).

Real files: tar archives and image folders written here, video trees from the synth
generator. Each test fails at 589437d unless it says otherwise.
"""

from __future__ import annotations


import cv2
import numpy as np

from ffmask.datasets import get_dataset
from tests._dataset_trees import write_tar


def _png(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_wdf_member_climbing_out_of_its_archive_is_a_problem_not_an_odd_video_id(tmp_path):
    root = tmp_path / "wdf"
    (root / "fake_test").mkdir(parents=True)
    write_tar(root / "fake_test" / "4.tar.gz", {"4/7/0.png": _png(0), "4/7/1.png": _png(1),
                                           "../x.png": _png(2), "4/../../y.png": _png(3)})
    scan = get_dataset("wdf", root)
    assert [i.video_id for i in scan.items] == ["fake_test/4/7"]  # 589437d also had fake_test/4/.. and 4/../..
    climbing = [p for p in scan.problems if "climbs out of the archive" in p.reason]
    assert sorted(p.where for p in climbing) == ["fake_test/4.tar.gz::../", "fake_test/4.tar.gz::4/../../"]


def test_dfdc_metadata_naming_a_file_of_another_part_does_not_annotate_it_twice(tmp_path, small_ff_root):
    import json
    import shutil

    video = next((small_ff_root / "original_sequences/youtube/c23/videos").glob("*.mp4"))
    root = tmp_path / "dfdc"
    for part in ("dfdc_train_part_0", "dfdc_train_part_1"):
        (root / part).mkdir(parents=True)
    shutil.copy(video, root / "dfdc_train_part_0/aaa.mp4")
    shutil.copy(video, root / "dfdc_train_part_1/bbb.mp4")
    real = {"label": "REAL", "split": "train", "original": None}
    (root / "dfdc_train_part_0/metadata.json").write_text(
        json.dumps({"aaa.mp4": real, "../dfdc_train_part_1/bbb.mp4": real}))
    (root / "dfdc_train_part_1/metadata.json").write_text(json.dumps({"bbb.mp4": real}))
    scan = get_dataset("dfdc", root)
    # 589437d: bbb.mp4 twice, as dfdc_train_part_0/bbb and dfdc_train_part_1/bbb
    assert sorted(i.video_id for i in scan.items) == ["dfdc_train_part_0/aaa", "dfdc_train_part_1/bbb"]
    (problem,) = [p for p in scan.problems if "not a file name" in p.reason]
    assert problem.where == "dfdc_train_part_0/metadata.json: ../dfdc_train_part_1/bbb.mp4"
