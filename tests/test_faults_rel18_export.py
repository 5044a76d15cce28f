"""Session 16, third pass, M8: ``export deepfakebench`` of shards of two crop sizes without ``--size``.

At a694254 the export wrote each face at its own crop side: one dataset holding 32 px and 48 px frames, with
each face's landmarks in its own frame's pixels. DeepfakeBench's loaders take one resolution and resize frames,
not landmarks, so half of such a dataset gets landmarks in the wrong scale. Now the export refuses such shards
before writing anything, in one line naming the sizes and ``--size`` (as ``train`` refuses them); with ``--size``
every frame, mask and landmark set is written at that side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from _cli import ffmask_cli
from ffmask.annotate import annotate
from ffmask.errors import FFMaskError
from ffmask.export import export_deepfakebench
from ffmask.pipeline import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two annotate runs of the same FF++ videos (Deepfakes and their originals, frame 0, with landmarks), at 32
    and 48 px."""
    top = tmp_path_factory.mktemp("runs")
    options = {"manipulations": ["Deepfakes"], "compression": "c23", "split": "all", "include_originals": True}
    for side in (32, 48):
        annotate("ff++", SAMPLE, top / f"s{side}", JobSpec(methods=("mscc",), frames=1, size=side, landmarks=True),
                 dataset_options=options, videos_per_shard=8)
    return top / "s32", top / "s48"


def _exported(out: Path) -> dict[str, tuple[tuple, np.ndarray]]:
    """Frame path relative to the dataset top -> (the frame's shape, its landmarks), for every listed frame."""
    found = {}
    for frame in sorted(p for p in (out / "FaceForensics++").rglob("*.png") if p.parent.parent.name == "frames"):
        landmarks = np.load(Path(str(frame).replace("/frames/", "/landmarks/")).with_suffix(".npy"))
        found[frame.relative_to(out).as_posix()] = (cv2.imread(str(frame)).shape, landmarks)
    return found


def test_two_crop_sizes_are_refused_before_anything_is_written(runs, tmp_path):
    out = tmp_path / "dfb"
    with pytest.raises(FFMaskError, match=r"2 sizes \(32 px \(\d+ faces in \d+ shard\(s\)\), 48 px .*pass --size"):
        export_deepfakebench(list(runs), out)
    assert not out.exists() or not any(out.iterdir())
    # one size alone exports as before
    assert export_deepfakebench(runs[0], tmp_path / "one").faces > 0


def test_the_cli_says_it_in_one_line(runs, tmp_path):
    code, stdout, stderr = ffmask_cli("export", "deepfakebench", *runs, "--out", tmp_path / "dfb")
    assert code == 2, stdout + stderr  # an FFMaskError's exit status
    lines = (stdout + stderr).strip().splitlines()
    assert len(lines) == 1 and "32 px" in lines[0] and "48 px" in lines[0] and "--size" in lines[0], lines
    assert "Traceback" not in stderr


def test_with_size_every_face_is_written_at_that_side_with_landmarks_in_its_scale(runs, tmp_path):
    mixed = export_deepfakebench(list(runs), tmp_path / "mixed", size=48)
    alone = export_deepfakebench(runs[1], tmp_path / "alone")  # the 48 px run at its own side
    # the same frames at two sides: the 32 px run's faces (given first) are written, the 48 px run's are skips
    assert mixed.faces == alone.faces > 0
    assert sum(n for why, n in mixed.skipped.items() if why.startswith("frame already exported")) == alone.faces
    both, ref = _exported(tmp_path / "mixed"), _exported(tmp_path / "alone")
    assert {shape for shape, _ in both.values()} == {(48, 48, 3)}
    # a 32 px face has the 48 px face's box (same frame, same detector): written at 48 px, its landmarks are
    # the 48 px run's, not a 32 px crop's
    assert set(both) == set(ref)
    for name, (_, points) in both.items():
        assert points.shape == (81, 2) and points.any() and points.max() <= 47
        assert np.abs(points.astype(int) - ref[name][1].astype(int)).max() <= 1, name
    listed = json.loads((tmp_path / "mixed" / "dataset_json" / "FF-DF.json").read_text())
    assert "FF-DF" in listed


def test_an_out_path_that_is_not_utf8_is_refused_before_anything_is_written(runs, tmp_path):
    # M9: at a694254 the export wrote there, and its dataset JSON listed every frame as "/.../ex\udcff/...":
    # a lone surrogate no JSON reader but Python's maps back to the file, and on which cv2.imread, DeepfakeBench's
    # frame reader, crashed the process (a segmentation fault)
    out = tmp_path / os.fsdecode(b"ex\xff port")
    with pytest.raises(FFMaskError, match=r"--out .*ex\\xff port is not valid UTF-8: .*pick a UTF-8 path"):
        export_deepfakebench(runs[1], out)
    assert not out.exists()
    code, stdout, stderr = ffmask_cli("export", "deepfakebench", runs[1], "--out", out)
    assert code == 2 and "is not valid UTF-8" in stderr and "Traceback" not in stderr, stdout + stderr
    assert not out.exists()
