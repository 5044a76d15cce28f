"""stream_gray_planes: grey frames with the luma-to-grey table left to the caller.

Mask videos are grey pictures in 4:2:0 YUV; their grey level is a table
lookup of the luma plane. The annotation pipeline applies that table to each
224 px nearest-neighbour crop instead of the whole frame; these tests check
that the frames and the crops are exactly those of ``stream_frames(gray=True)``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask import video
from ffmask.errors import VideoError
from ffmask.pipeline import _read_crops

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
MASK = SAMPLE / "manipulated_sequences" / "Deepfakes" / "masks" / "videos" / "000_001.mp4"
COLOUR = SAMPLE / "manipulated_sequences" / "Deepfakes" / "c23" / "videos" / "000_001.mp4"

pytestmark = pytest.mark.skipif(not MASK.is_file(), reason="sample_data is not in this checkout")


def test_planes_and_tables_give_the_grey_frames():
    indices = video.sample_indices(video.probe(MASK).n_frames, frames=12)
    want = dict(video.stream_frames(MASK, indices, gray=True))
    got = list(video.stream_gray_planes(MASK, indices))
    assert [i for i, _, _ in got] == sorted(want)
    tables = 0
    for index, plane, table in got:
        if table is not None:
            tables += 1
            assert table.dtype == np.uint8 and table.shape == (256,)
            frame = cv2.LUT(plane, table)
        else:
            frame = plane
        np.testing.assert_array_equal(frame, want[index])
    assert tables == len(got)  # a mask video has neutral chroma: every frame takes the table path
    assert any(not np.array_equal(p, cv2.LUT(p, t)) for _, p, t in got)  # and the table is no identity


def test_colour_video_comes_converted():
    indices = [0, 5]
    want = dict(video.stream_frames(COLOUR, indices, gray=True))
    for index, plane, table in video.stream_gray_planes(COLOUR, indices):
        assert table is None
        np.testing.assert_array_equal(plane, want[index])


def test_missing_file_raises_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        list(video.stream_gray_planes(tmp_path / "nope.mp4", [0]))


def test_crops_with_the_table_after_cropping_are_the_same():
    indices = video.sample_indices(video.probe(MASK).n_frames, frames=6)
    shape = video.read_frames(MASK, [0], gray=True)[0].shape
    h, w = shape
    boxes = {int(i): (np.array([w // 4, h // 5, w // 4 + h // 2, h // 5 + h // 2], np.int32), None)
             for i in indices}
    shapes = {int(i): shape for i in indices}
    seconds = defaultdict(float)
    want = _read_crops(video.stream_frames(MASK, indices, gray=True), boxes, shapes, 64, seconds,
                       interpolation="nearest", landmarks=False)
    got = _read_crops(video.stream_gray_planes(MASK, indices), boxes, shapes, 64, seconds,
                      interpolation="nearest", landmarks=False)
    assert sorted(got.crops) == sorted(want.crops) == sorted(boxes)
    assert got.shapes == want.shapes
    for index in want.crops:
        np.testing.assert_array_equal(got.crops[index][0], want.crops[index][0])
    assert any(want.crops[i][0].any() for i in want.crops)  # the crops hold some mask
