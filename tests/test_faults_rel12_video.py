"""Session 14 (rel12), B: a video file whose first video stream is a cover picture.

Downloaders embed a thumbnail as a second video stream; in a Matroska file remuxed from
one, the cover can come first as an ordinary one-frame track. At 06d4739 ffmask read the
first video stream, so the cover's one frame (another picture, here another person) was
annotated as the video. Now the stream FFmpeg itself would pick (``av_find_best_stream``)
is read, and a file holding only an attached cover picture is an unreadable video.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from ffmask import video

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "sample_data/ff++/original_sequences/youtube/c23/videos/000.mp4"


def test_a_cover_picture_before_the_video_is_not_read_as_the_video(tmp_path):
    frames = [f for _, f in video.iter_frames(REAL)]
    cover = cv2.resize(cv2.imread(str(ROOT / "ffmask/synth/portraits/obama.jpg"))[..., ::-1], frames[0].shape[1::-1])
    path = tmp_path / "talk.mkv"
    with av.open(str(path), "w") as c:
        pic = c.add_stream("mjpeg", rate=1)
        pic.width, pic.height, pic.pix_fmt = cover.shape[1], cover.shape[0], "yuvj420p"
        main = c.add_stream("libx264", rate=25)
        main.width, main.height, main.pix_fmt = cover.shape[1], cover.shape[0], "yuv420p"
        for stream, pictures in ((pic, [cover]), (main, frames)):
            for f in pictures:
                for p in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    c.mux(p)
            for p in stream.encode():
                c.mux(p)
    read = [f for _, f in video.iter_frames(path)]
    # 06d4739: one frame, the cover
    assert len(read) == len(frames) == 48
    assert np.abs(read[10].astype(int) - frames[10]).mean() < 3
