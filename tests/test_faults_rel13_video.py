"""Session 15 (rel13), K1: video of non-square pixels (anamorphic: DV, HDV, DVD, broadcast files);
K5: a cut to another person at the same place of the frame, recorded in the manifest (person_changes).

A 320x240 talking-head video stored squashed into 240x240 with 4:3 pixels (the sample aspect ratio a
player stretches back with). At 9368f92 ffmask read the stored pixels, so every face crop was squashed
to three quarters of its width (and the detector's boxes moved): the crops were 27-30 grey levels from
the square-pixel video's. Now frames come in square pixels, as displayed.
"""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from ffmask import video
from tests._cli import ffmask_cli
from tests._video_files import REAL, ROOT, squashed_copies as _squashed_copies, write_h264 as _write


def test_frames_of_non_square_pixels_come_in_square_pixels(tmp_path):
    square, wide, tall = _squashed_copies(tmp_path)
    ref = dict(video.iter_frames(square))
    for path in (wide, tall):
        with av.open(str(path)) as c:
            assert c.streams.video[0].sample_aspect_ratio != 1  # the file does carry its pixel shape
        frames = dict(video.iter_frames(path))
        assert frames[0].shape == ref[0].shape == (240, 320, 3)  # 9368f92: (240, 240, 3) / (180, 320, 3)
        assert all(np.abs(frames[i].astype(int) - ref[i]).mean() < 4 for i in ref)
        grey = video.read_frames(path, [0, 5], gray=True)
        assert grey[5].shape == (240, 320)
        assert np.array_equal(grey[5], cv2.cvtColor(frames[5], cv2.COLOR_RGB2GRAY))
        planes = {i: (cv2.LUT(p, t) if t is not None else p) for i, p, t in video.stream_gray_planes(path, [0, 5])}
        assert np.array_equal(planes[5], grey[5])


def test_faces_of_an_anamorphic_video_are_not_squashed(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    square, wide, _ = _squashed_copies(data)
    (data / "tall_pixels.mp4").unlink()
    code, out, err = ffmask_cli("annotate", "folder", data, "--out", tmp_path / "out", "-m", "noise",
                                "--frames", "3", "--size", "96")
    assert code == 0, out + err
    from ffmask.shards import ShardIndex

    index = ShardIndex([tmp_path / "out"])
    faces = {}
    for i in range(len(index)):
        face = index.read(i, geometry=True)
        faces[(face["video_id"], face["frame_index"])] = face
    pairs = [(faces[("wide_pixels", f)], faces[("square", f)]) for v, f in faces if v == "square"]
    assert len(pairs) == 3
    for a, b in pairs:
        # the same box in the same frame, the same face (9368f92: other boxes, crops 27-30 levels apart)
        assert np.abs(a["box"].astype(int) - b["box"]).max() <= 4
        assert np.abs(a["image"].astype(int) - b["image"]).mean() < 5


def _cut_video(path: Path) -> Path:
    """An edited internet video: 24 frames of sample 000, then a cut to sample 002 framed alike (48 frames)."""
    src = ROOT / "sample_data/ff++/original_sequences/youtube/c23/videos"
    first = [f for _, f in video.iter_frames(src / "000.mp4", range(24))]
    second = [f for _, f in video.iter_frames(src / "002.mp4", range(24, 48))]
    return _write(path, first + second)


def test_a_cut_to_another_person_at_the_same_place_is_recorded(tmp_path):
    (tmp_path / "clips").mkdir()
    _cut_video(tmp_path / "clips" / "cut.mp4")
    (tmp_path / "clips" / "one.mp4").write_bytes(REAL.read_bytes())  # one person throughout
    # two tasks in workers forked after the identity model was loaded in this process (prepare_worker)
    code, out, err = ffmask_cli("annotate", "folder", tmp_path / "clips", "--out", tmp_path / "out", "-m", "noise",
                                "--frames", "6", "--size", "64", "--backend", "fork", "-j", "2",
                                "--videos-per-shard", "1")
    assert code == 0, out + err
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    entries = {e["video_id"]: e for e in map(json.loads, lines)}
    cut, one = entries["cut"], entries["one"]
    # 9368f92: status ok, 6 faces, 3 of each person, no word. Now the faces are still written (they are
    # fine) and the entry names the sampled frame where the second person first appears
    assert cut["status"] == "ok" and cut["faces"] == 6
    sampled = [int(i) for i in video.sample_indices(48, frames=6)]  # 0, 9, 19, 28, 38, 47
    (change,) = cut["person_changes"]
    assert change in sampled and sampled[sampled.index(change) - 1] < 24 <= change  # the cut is at frame 24
    assert one["status"] == "ok" and "person_changes" not in one
    # the end-of-run table and a line say so
    assert "changing person" in out and "1 video(s) cut from one person to another (cut)" in " ".join(err.split())
    # and `ffmask info` on the shards names it, with the frame
    code, out, err = ffmask_cli("info", tmp_path / "out")
    assert code == 0, out + err
    assert f"1 video(s) cut from one person to another: cut (frame {change})" in " ".join((out + err).split())
    from ffmask.shards.summary import summarize_shards

    assert summarize_shards(tmp_path / "out")["manifest"]["person_changes"] == {"cut": [change]}

    # --no-person-check: not looked at (and said nowhere)
    code, out, err = ffmask_cli("annotate", "folder", tmp_path / "clips", "--out", tmp_path / "off", "-m", "noise",
                                "--frames", "6", "--size", "64", "--no-person-check", "-j", "1")
    assert code == 0, out + err
    assert "person_changes" not in (tmp_path / "off" / "manifest.jsonl").read_text()
    assert json.loads((tmp_path / "off" / "run.json").read_text())["job"]["person_check"] is False
