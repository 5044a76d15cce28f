"""Frames that are neither sampled nor referenced are not decoded (``video.SKIP_UNWANTED``, FFmpeg's
``skip_frame=NONREF`` packet by packet), and the sampled frames come out bit for bit as a plain PyAV decode
of every frame gives them: on H.264 with non-reference B-frames, with referenced B-frames (x264's default
B-pyramid, as in the sample data and the benchmark tree), without B-frames (x264 then still marks a few
P-frames as unreferenced, which may be dropped too), and on the sample data's videos at ``--frames 20``."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from ffmask import video

from tests._video_decode import count_decoded_frames

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "ff++"
N, W, H = 48, 128, 96


def _scene(n=N):
    """A textured background with a square moving right and down (P- and B-frames carry motion)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (H, W, 3), np.uint8)
    out = []
    for t in range(n):
        img = np.roll(base, t, axis=1).copy()
        img[20 + t // 2:50 + t // 2, 10 + 2 * t:40 + 2 * t] = (250, 240, 30)
        out.append(img)
    return out


def _encode(path: Path, frames, **options) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "23", **options}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


def _every_frame(path: Path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


ENCODINGS = {
    "B-frames, none referenced": {"bframes": "3", "x264-params": "b-pyramid=none"},
    "B-pyramid (referenced B-frames)": {"bframes": "3", "x264-params": "b-pyramid=normal"},
    "no B-frames": {"bframes": "0"},
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_sampled_frames_as_a_full_decode_gives_them(tmp_path, monkeypatch, name):
    path = _encode(tmp_path / "v.mp4", _scene(), **ENCODINGS[name])
    every = _every_frame(path)
    assert len(every) == N
    decoded = count_decoded_frames(monkeypatch)
    for wanted in (video.sample_indices(N, 20), video.sample_indices(N, 7), [N - 1], [0, 1, 2, 3]):
        decoded.clear()
        got = video.read_frames(path, wanted)
        assert sorted(got) == sorted(int(i) for i in wanted)
        for i in got:
            np.testing.assert_array_equal(got[i], every[i])
        assert len(decoded) <= max(wanted) + 1  # nothing decoded past the last sampled frame
        if name != "no B-frames" and len(wanted) >= 7:
            assert len(decoded) < max(wanted) + 1  # some unreferenced, unsampled B-frames were dropped


@pytest.mark.parametrize("rel", ["original_sequences/youtube/c23/videos/000.mp4",
                                 "original_sequences/youtube/c40/videos/001.mp4",
                                 "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"])
def test_sample_data_frames_unchanged(monkeypatch, rel):
    path = SAMPLE / rel
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    every = _every_frame(path)
    wanted = video.sample_indices(len(every), 20)
    decoded = count_decoded_frames(monkeypatch)
    got = video.read_frames(path, wanted)
    assert sorted(got) == [int(i) for i in wanted]
    for i in got:
        np.testing.assert_array_equal(got[i], every[i])
    assert len(decoded) < len(every)  # the sample data's x264 B-frames: the unreferenced ones are skipped
