"""Real H.264 files written with PyAV for the video fault tests: any pictures, and a talking head stored
anamorphic (squashed, with the sample aspect ratio a player stretches it back with)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ffmask import video

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "sample_data/ff++/original_sequences/youtube/c23/videos/000.mp4"


def write_h264(path: Path, pictures, sar=None) -> Path:
    """``pictures`` (RGB uint8 (H, W, 3) arrays) as an H.264 MP4 at 25 fps; ``sar``: its sample aspect ratio."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "yuv420p"
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for f in pictures:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def squashed_copies(tmp_path: Path, n: int = 12) -> tuple[Path, Path, Path]:
    """The first ``n`` frames of ``REAL`` (320x240) as three files: square pixels, stored 240x240 with 4:3
    pixels, and stored 320x180 with 3:4 pixels (all three shown 320x240)."""
    frames = [f for _, f in video.iter_frames(REAL, range(n))]
    h, w = frames[0].shape[:2]  # 240 x 320
    square = write_h264(tmp_path / "square.mp4", frames)
    wide = write_h264(tmp_path / "wide_pixels.mp4", [cv2.resize(f, (w * 3 // 4, h), interpolation=cv2.INTER_AREA)
                                                     for f in frames], Fraction(4, 3))
    tall = write_h264(tmp_path / "tall_pixels.mp4", [cv2.resize(f, (w, h * 3 // 4), interpolation=cv2.INTER_AREA)
                                                     for f in frames], Fraction(3, 4))
    return square, wide, tall
