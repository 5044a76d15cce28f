"""ffmask.video: probing, frame sampling, decoding and encoding real H.264 files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ffmask.errors import FFMaskError, VideoError
from ffmask.video import VideoInfo, probe, read_frames, sample_indices, write_video

W, H, N = 160, 120, 30


def _frames(n=N, w=W, h=H):
    """A moving scene: a gradient background with a bright square sliding right."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 60 + 4 * t)], axis=-1).astype(np.uint8)
        x0 = 10 + 3 * t
        img[40:70, x0:x0 + 30] = (250, 240, 30)
        out.append(img)
    return out


def _encode_with_av(path: Path, frames, rate=25, **options) -> None:
    """Reference encoder, independent of write_video: plain PyAV, default MP4 muxing."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "18", **options}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


def _decode_all_with_av(path: Path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def source_frames():
    return _frames()


@pytest.fixture(scope="module")
def ref_video(tmp_path_factory, source_frames):
    path = tmp_path_factory.mktemp("video") / "ref.mp4"
    _encode_with_av(path, source_frames)
    return path


@pytest.fixture(scope="module")
def written_video(tmp_path_factory, source_frames):
    path = tmp_path_factory.mktemp("video") / "written.mp4"
    write_video(path, source_frames, fps=25, crf=18)
    return path


# --- probe -------------------------------------------------------------------

def test_probe_reads_the_stream_header(ref_video):
    assert probe(ref_video) == VideoInfo(n_frames=N, fps=25.0, width=W, height=H)


def test_probe_fractional_frame_rate(tmp_path):
    path = tmp_path / "ntsc.mp4"
    _encode_with_av(path, _frames(5), rate=Fraction(30000, 1001))
    info = probe(path)
    assert info.n_frames == 5
    assert info.fps == pytest.approx(29.97, abs=0.01)


def test_probe_counts_frames_when_the_header_does_not(tmp_path, source_frames):
    # a raw H.264 elementary stream has no frame count in any header
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for f in source_frames[:17]:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the premise of this test
    info = probe(path)
    assert info.n_frames == 17
    assert (info.width, info.height) == (W, H)


@pytest.mark.parametrize("make", ["missing", "empty", "garbage", "directory"])
def test_probe_and_read_reject_non_videos(tmp_path, make):
    path = tmp_path / "clip.mp4"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif make == "directory":
        path.mkdir()
    for call in (lambda: probe(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoError) as info:
            call()
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, FFMaskError)
        assert not isinstance(info.value, av.FFmpegError)


def test_probe_rejects_a_file_without_video(tmp_path):
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(800) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        probe(path)


# --- sample_indices ------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(300, 20), (48, 20), (21, 20), (100, 1), (7, 3), (1, 5)])
def test_sample_indices_is_rounded_linspace(n, k):
    got = sample_indices(n, frames=k)
    expected = np.unique(np.rint(np.linspace(0, n - 1, k)).astype(np.int64))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert got[0] == 0 and got[-1] == (n - 1 if k > 1 else 0)
    assert np.all(np.diff(got) > 0)


def test_sample_indices_short_video_gives_fewer():
    np.testing.assert_array_equal(sample_indices(5, frames=20), [0, 1, 2, 3, 4])
    assert sample_indices(0, frames=20).size == 0
    np.testing.assert_array_equal(sample_indices(300, frames=20)[:3], [0, 16, 31])


def test_sample_indices_every():
    np.testing.assert_array_equal(sample_indices(10, frames=None, every=3), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_indices(9, frames=None, every=3), [0, 3, 6])
    np.testing.assert_array_equal(sample_indices(2, frames=None, every=5), [0])
    assert sample_indices(10, frames=None, every=1).tolist() == list(range(10))


@pytest.mark.parametrize("kwargs", [
    dict(n_frames=10, frames=0),
    dict(n_frames=10, frames=-2),
    dict(n_frames=10, frames=None, every=0),
    dict(n_frames=10, frames=5, every=2),
    dict(n_frames=10, frames=None, every=None),
    dict(n_frames=-1, frames=5),
    dict(n_frames=10, frames=2.5),
    dict(n_frames=10.0, frames=5),
    dict(n_frames=10, frames=True),
])
def test_sample_indices_bad_values(kwargs):
    with pytest.raises(ValueError):
        sample_indices(**kwargs)


# --- read_frames ---------------------------------------------------------------

def test_read_frames_returns_exactly_the_requested_frames(ref_video, source_frames):
    want = [0, 7, 8, 29]
    got = read_frames(ref_video, want)
    assert sorted(got) == want
    reference = _decode_all_with_av(ref_video)
    for i in want:
        assert got[i].dtype == np.uint8 and got[i].shape == (H, W, 3)
        np.testing.assert_array_equal(got[i], reference[i])  # same decoder, same frame
        assert np.abs(got[i].astype(int) - source_frames[i]).mean() < 3.0  # and close to the source


def test_read_frames_identifies_frames_by_position(ref_video, source_frames):
    # the sliding square tells frames apart: frame i must match source i best
    got = read_frames(ref_video, range(0, N, 4))
    for i, img in got.items():
        errors = [np.abs(img.astype(int) - s).mean() for s in source_frames]
        assert int(np.argmin(errors)) == i


def test_read_frames_past_the_end_are_absent(ref_video):
    got = read_frames(ref_video, np.array([3, N - 1, N, N + 50]))
    assert sorted(got) == [3, N - 1]
    assert read_frames(ref_video, [N + 5]) == {}
    assert read_frames(ref_video, []) == {}


def test_read_frames_rejects_bad_indices(ref_video):
    with pytest.raises(ValueError):
        read_frames(ref_video, [-1, 2])
    with pytest.raises(ValueError):
        read_frames(ref_video, [0.5])
    with pytest.raises(ValueError):
        read_frames(ref_video, [[0, 1]])


def test_truncated_video_gives_a_subset_or_a_clear_error(tmp_path, written_video):
    data = written_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    full = read_frames(written_video, range(N))
    got = read_frames(cut, range(N))  # write_video puts the index first, so the head decodes
    assert 0 < len(got) < N
    assert sorted(got) == list(range(len(got)))  # a prefix: decoding stopped at the cut
    for i, img in got.items():
        np.testing.assert_array_equal(img, full[i])
    # asking only for frames before the cut is not disturbed by the broken tail
    early = read_frames(cut, [0, 1])
    assert sorted(early) == [0, 1]


def test_truncated_without_index_is_a_video_error(tmp_path, ref_video):
    # the reference file has its index (moov) at the end: cut it off
    data = ref_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError):
        read_frames(cut, range(N))
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:200])
    with pytest.raises(VideoError):
        read_frames(head, [0])


# --- write_video -----------------------------------------------------------------

def test_write_video_encodes_h264_yuv420p(written_video, source_frames):
    with av.open(str(written_video)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert s.frames == N
        assert float(s.average_rate) == 25.0
    decoded = _decode_all_with_av(written_video)
    assert len(decoded) == N
    err = np.mean([np.abs(d.astype(int) - s).mean() for d, s in zip(decoded, source_frames)])
    assert err < 3.0


def test_write_video_crf_controls_quality(tmp_path, source_frames):
    errs, sizes = {}, {}
    for crf in (23, 40):
        path = tmp_path / f"c{crf}.mp4"
        write_video(path, source_frames, crf=crf)
        decoded = _decode_all_with_av(path)
        errs[crf] = np.mean([np.abs(d.astype(int) - s).mean() for d, s in zip(decoded, source_frames)])
        sizes[crf] = path.stat().st_size
    assert sizes[40] < sizes[23]
    assert errs[40] > errs[23]


def test_lossless_mask_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    masks = []
    for t in range(8):
        cx, cy, r = rng.uniform(30, 130), rng.uniform(30, 90), rng.uniform(10, 40)
        m = (xx - cx) ** 2 + ((yy - cy) * 1.3) ** 2 < r ** 2
        m ^= rng.random((H, W)) < 0.01  # isolated pixels too
        masks.append(m)
    for kind, frames in {
        "bool": masks,
        "gray": [m.astype(np.uint8) * 255 for m in masks],
        "rgb": [np.repeat(m[..., None].astype(np.uint8) * 255, 3, axis=2) for m in masks],
    }.items():
        path = tmp_path / f"mask_{kind}.mp4"
        write_video(path, frames, lossless=True)
        decoded = _decode_all_with_av(path)
        assert len(decoded) == len(masks)
        for d, m in zip(decoded, masks):
            assert set(np.unique(d)) <= {0, 255}, kind  # black and white survive exactly
            np.testing.assert_array_equal(d[..., 0] > 1, m)


def test_write_video_is_deterministic(tmp_path, source_frames):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_video(a, source_frames, crf=23)
    write_video(b, source_frames, crf=23)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("bad, match", [
    ([np.zeros((121, 160, 3), np.uint8)], "even"),
    ([np.zeros((120, 161, 3), np.uint8)], "even"),
    ([np.zeros((120, 160, 3), np.float32)], "uint8"),
    ([np.zeros((120, 160, 4), np.uint8)], "shape"),
    ([np.zeros((120, 160, 3), np.uint8), np.zeros((60, 80, 3), np.uint8)], "one shape"),
    ([], "at least one frame"),
])
def test_write_video_rejects_bad_frames_and_leaves_nothing(tmp_path, bad, match):
    path = tmp_path / "out" / "bad.mp4"
    with pytest.raises(ValueError, match=match):
        write_video(path, bad)
    assert not path.exists()
    assert not list(path.parent.glob("*")) if path.parent.exists() else True


def test_write_video_rejects_bad_options(tmp_path, source_frames):
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", source_frames, fps=0)
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", source_frames, crf=60)


def test_write_video_is_atomic(tmp_path, source_frames):
    path = tmp_path / "clip.mp4"
    write_video(path, source_frames[:5])
    before = path.read_bytes()

    def failing():
        yield from source_frames[:3]
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(path, failing())
    assert path.read_bytes() == before  # the old video is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left
    write_video(path, source_frames[:7])
    assert probe(path).n_frames == 7
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, like any new file
