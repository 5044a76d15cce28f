"""Session 10 (rel8): dataset scans of odd downloads (item 8 and part B).

Real files: tar archives and image folders written here, video trees from the synth
generator. Each test fails at 589437d unless it says otherwise.
"""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np

from ffmask.datasets import get_dataset


def _png(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_wdf_member_climbing_out_of_its_archive_is_a_problem_not_an_odd_video_id(tmp_path):
    root = tmp_path / "wdf"
    (root / "fake_test").mkdir(parents=True)
    _tar(root / "fake_test" / "4.tar.gz", {"4/7/0.png": _png(0), "4/7/1.png": _png(1),
                                           "../x.png": _png(2), "4/../../y.png": _png(3)})
    scan = get_dataset("wdf", root)
    assert [i.video_id for i in scan.items] == ["fake_test/4/7"]  # 589437d also had fake_test/4/.. and 4/../..
    climbing = [p for p in scan.problems if "climbs out of the archive" in p.reason]
    assert sorted(p.where for p in climbing) == ["fake_test/4.tar.gz::../", "fake_test/4.tar.gz::4/../../"]
