"""Session 16, M2: ``video.probe`` of an anamorphic video said the stored size, not the frames' size.

Session 15 (K1) made ``read_frames`` give square-pixel frames (a 240x240 file of 4:3 pixels reads as
320x240); ``probe`` (and ``VideoReader.info``) still said 240x240. Now they say the frames' size, with
the stored size and the sample aspect beside it.
"""

from __future__ import annotations

from fractions import Fraction

from ffmask import video
from tests._video_files import squashed_copies


def test_probe_says_the_size_of_the_frames_of_an_anamorphic_video(tmp_path):
    square, wide, tall = squashed_copies(tmp_path, n=3)
    assert video.probe(square) == video.VideoInfo(n_frames=3, fps=25.0, width=320, height=240)
    for path, stored, aspect in ((wide, (240, 240), Fraction(4, 3)), (tall, (320, 180), Fraction(3, 4))):
        info = video.probe(path)
        frame = video.read_frames(path, [0])[0]
        # at 8fb4ccb: 240x240 and 320x180, the stored size, while the frames are 320x240
        assert (info.height, info.width) == frame.shape[:2] == (240, 320)
        assert info.stored_size == stored and info.sample_aspect == aspect and info.n_frames == 3
        with video.VideoReader(path) as reader:
            assert reader.info == info
            assert next(iter(reader.frames([1])))[1].shape[:2] == (info.height, info.width)


def test_square_size_is_the_size_square_pixels_gives():
    import numpy as np

    for w, h, aspect in ((240, 240, Fraction(4, 3)), (320, 180, Fraction(3, 4)), (719, 575, Fraction(59, 54)),
                         (7, 5, Fraction(1, 4)), (64, 48, Fraction(1))):
        image = np.zeros((h, w, 3), np.uint8)
        assert video.square_size(w, h, aspect) == video.square_pixels(image, aspect).shape[1::-1]
