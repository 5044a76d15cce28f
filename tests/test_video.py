"""ffmask.video: probing, frame sampling, decoding and encoding real H.264 files."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ffmask.errors import FFMaskError, VideoError
from ffmask.video import VideoInfo, probe, read_frames, sample_indices, write_video

from tests._video_decode import count_decoded_frames

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


def test_sample_indices_over_many_lengths_is_the_documented_unique_rint_linspace():
    # duplicates appear whenever n_frames < frames; every (n, k) here, the docstring's formula
    for n in list(range(0, 130)) + [499, 500, 509, 1000, 4097]:
        for k in (1, 2, 3, 7, 19, 20, 21, 32, 60, 129):
            got = sample_indices(n, frames=k)
            want = np.unique(np.rint(np.linspace(0, n - 1, k)).astype(np.int64)) if n else np.zeros(0, np.int64)
            assert got.dtype == np.int64 and got.tolist() == want.tolist(), (n, k)


def test_sample_indices_does_not_import_numpy_ma():
    """np.unique imports numpy.ma on first use (~10 ms in every worker process); sampling must not."""
    code = ("import sys; from ffmask.video import sample_indices; sample_indices(10, frames=20); "
            "sample_indices(300, frames=20); print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


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


# --- truncated files: every frame whose packet is whole --------------------------

def _packet_table(path: Path):
    """(file offset, size, presentation index) of every video packet, by plain PyAV demuxing."""
    with av.open(str(path)) as c:
        rows = [(p.pos, p.size, p.pts) for p in c.demux(video=0) if p.size]
    order = sorted(pts for _, _, pts in rows)
    return [(pos, size, order.index(pts)) for pos, size, pts in rows]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """48 noisy frames (x264 with B-frames, index at the front), like a real fake."""
    rng = np.random.default_rng(5)
    frames = [np.clip(f.astype(int) + rng.integers(-25, 25, f.shape), 0, 255).astype(np.uint8)
              for f in _frames(48)]
    path = tmp_path_factory.mktemp("video") / "long.mp4"
    write_video(path, frames, crf=23)
    return path


@pytest.mark.parametrize("cut", ["two_thirds", "one_third", "one_packet", "mid_b_frame"])
def test_truncated_video_keeps_every_frame_whose_packet_is_whole(tmp_path, long_video, cut):
    """The frames read from a cut file are exactly those whose packet lies whole
    before the cut (their references come earlier in the file), each under its
    own index and equal to the full file's frame."""
    table = _packet_table(long_video)
    with av.open(str(long_video)) as c:
        assert c.streams.video[0].codec_context.has_b_frames  # reordering is exercised
    data = long_video.read_bytes()
    in_file_order = sorted(table)
    if cut == "one_packet":  # the first frame whole, the second packet cut in half
        pos1, size1, _ = in_file_order[1]
        n = pos1 + size1 // 2
    elif cut == "mid_b_frame":  # half of a B-frame shown before frames already in the file
        pos, size, _ = next(row for k, row in enumerate(in_file_order[10:], 10)
                            if row[2] < max(r[2] for r in in_file_order[:k]))
        n = pos + size // 2
    else:
        n = int(len(data) * (2 / 3 if cut == "two_thirds" else 1 / 3))
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[:n])
    expected = sorted(index for pos, size, index in table if pos + size <= n)
    assert 0 < len(expected) < 48
    if cut == "mid_b_frame":  # frames shown after the lost one keep their own index
        assert expected != list(range(len(expected)))

    full = _decode_all_with_av(long_video)
    got = read_frames(path, range(48))
    assert sorted(got) == expected
    for i, img in got.items():
        np.testing.assert_array_equal(img, full[i])
    # sampled indices (as annotate asks) get the same frames
    wanted = sample_indices(48, frames=20)
    got = read_frames(path, wanted)
    assert sorted(got) == [i for i in wanted if i in expected]


# --- display matrix (rotation metadata) --------------------------------------------

def _ffmpeg_display_matrix(degrees: float, hflip=False, vflip=False) -> list[int]:
    """FFmpeg's av_display_rotation_set + av_display_matrix_flip, written out (16.16 fixed point)."""
    rad = np.deg2rad(degrees)
    c, s = np.cos(rad), np.sin(rad)
    m = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
    m = [int(round(v * (1 << 16))) for v in m[:8]] + [1 << 30]
    flip = (-1 if hflip else 1, -1 if vflip else 1, 1)
    return [v * flip[i % 3] for i, v in enumerate(m)]


@pytest.mark.parametrize("degrees, hflip, expected", [
    (0, False, lambda a: a),
    (90, False, lambda a: np.rot90(a, 1)),      # counter-clockwise, as FFmpeg's "cclock"
    (-90, False, lambda a: np.rot90(a, -1)),
    (270, False, lambda a: np.rot90(a, -1)),
    (180, False, lambda a: np.rot90(a, 2)),
    (0, True, lambda a: a[:, ::-1]),
    (90, True, lambda a: np.rot90(a, 1)[:, ::-1]),  # the mirror comes after the rotation
])
def test_apply_display_matrix_rotates_like_numpy(degrees, hflip, expected):
    from ffmask.video import apply_display_matrix

    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out = apply_display_matrix(image, _ffmpeg_display_matrix(degrees, hflip=hflip))
    np.testing.assert_array_equal(out, expected(image))
    assert out.flags["C_CONTIGUOUS"]
    assert apply_display_matrix(image, None) is image


def _encode_rotated(path: Path, frames, degrees: int, hflip: bool = False) -> None:
    """An MP4 whose track carries a display matrix, as phones write them."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.set_display_rotation(degrees, hflip=hflip)
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


@pytest.mark.parametrize("degrees, hflip, k", [(90, False, 1), (-90, False, -1), (180, False, 2), (90, True, 1)])
def test_rotated_video_is_read_as_displayed(tmp_path, source_frames, degrees, hflip, k):
    path = tmp_path / "rotated.mp4"
    _encode_rotated(path, source_frames[:6], degrees, hflip)
    with av.open(str(path)) as c:  # the premise: the file really carries the rotation
        first = next(c.decode(video=0))
        assert first.rotation % 360 == degrees % 360
    stored = _decode_all_with_av(path)
    got = read_frames(path, [0, 5])
    for i in (0, 5):
        want = np.rot90(stored[i], k)
        if hflip:
            want = want[:, ::-1]
        np.testing.assert_array_equal(got[i], want)
    if degrees % 180:
        assert got[0].shape == (W, H, 3)


# --- one converter per video, grey decoding, decoder threads, VideoReader -----

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
SAMPLE_MASKS = sorted((SAMPLE / "manipulated_sequences").glob("*/masks/videos/*.mp4"))


def test_converter_gives_pyav_own_rgb_frames(ref_video):
    """One swscale context for a whole video gives what PyAV's per-frame conversion gives."""
    from ffmask.video import FrameConverter

    convert = FrameConverter()
    with av.open(str(ref_video)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == N
    for frame in frames:
        np.testing.assert_array_equal(convert.rgb(frame), frame.to_ndarray(format="rgb24"))


def test_converter_threads_change_no_pixel(ref_video):
    """swscale on one thread (a worker's), FFmpeg's count (0) or the decoder's gives PyAV's own frames."""
    from ffmask import video
    from ffmask.video import FrameConverter

    with av.open(str(ref_video)) as c:
        frames = list(c.decode(video=0))
    converters = [FrameConverter(threads=1), FrameConverter(threads=0), FrameConverter(threads=3)]
    for frame in frames:
        want = frame.to_ndarray(format="rgb24")
        for convert in converters:
            np.testing.assert_array_equal(convert.rgb(frame), want)
    old = video._DECODE_THREADS
    try:
        video.set_decode_threads(1)
        assert FrameConverter()._threads == 1  # a worker's one thread
        video.set_decode_threads(None)
        assert FrameConverter()._threads == 0  # FFmpeg's choice
    finally:
        video._DECODE_THREADS = old
    with pytest.raises(ValueError, match="threads must be >= 0"):
        FrameConverter(threads=-1)


@pytest.mark.parametrize("mask_video", SAMPLE_MASKS[::6], ids=lambda p: p.parent.parent.parent.name)
def test_grey_mask_decode_equals_thresholded_rgb_decode(mask_video):
    """A real (sample) mask video read straight to grey from its luma plane gives
    OpenCV's grey of the RGB decode, hence the same binary mask."""
    import cv2

    from ffmask.video import _neutral_luma

    with av.open(str(mask_video)) as c:
        first = next(c.decode(video=0))
    assert _neutral_luma(first) is not None  # the luma path is the one under test
    rgb = read_frames(mask_video, range(48))
    grey = read_frames(mask_video, range(48), gray=True)
    assert grey.keys() == rgb.keys() and len(grey) == 48
    marked = 0
    for i in rgb:
        assert grey[i].shape == rgb[i].shape[:2] and grey[i].dtype == np.uint8
        np.testing.assert_array_equal(grey[i], cv2.cvtColor(rgb[i], cv2.COLOR_RGB2GRAY))
        np.testing.assert_array_equal(grey[i] > 1, (rgb[i].astype(int) @ [299, 587, 114] + 500) // 1000 > 1)
        marked += int((grey[i] > 1).sum())
    assert marked > 0


def test_grey_decode_of_a_colour_video_goes_through_rgb(ref_video):
    import cv2

    from ffmask.video import _neutral_luma

    with av.open(str(ref_video)) as c:
        assert _neutral_luma(next(c.decode(video=0))) is None  # coloured chroma: no luma shortcut
    rgb = read_frames(ref_video, [0, 7, 29])
    grey = read_frames(ref_video, [0, 7, 29], gray=True)
    for i in rgb:
        np.testing.assert_array_equal(grey[i], cv2.cvtColor(rgb[i], cv2.COLOR_RGB2GRAY))


def test_grey_decode_applies_the_display_matrix(tmp_path):
    """A sideways mask video reads grey as displayed, like its RGB frames."""
    import cv2

    frames = []
    for k in range(4):
        f = np.zeros((48, 64, 3), np.uint8)
        f[5:20, 10 + k:40] = 255
        frames.append(f)
    path = tmp_path / "rotated.mp4"
    _encode_rotated(path, frames, 90)
    with av.open(str(path)) as c:  # the premise: the file really carries the rotation
        assert next(c.decode(video=0)).rotation % 360 == 90
    rgb = read_frames(path, range(4))
    grey = read_frames(path, range(4), gray=True)
    assert grey.keys() == rgb.keys() == set(range(4))
    for i in rgb:
        assert rgb[i].shape == (64, 48, 3)  # displayed: height and width swapped
        np.testing.assert_array_equal(grey[i], cv2.cvtColor(rgb[i], cv2.COLOR_RGB2GRAY))


def test_decoder_threads_do_not_change_frames(ref_video):
    from ffmask import video

    try:
        video.set_decode_threads(1)
        one = read_frames(ref_video, range(N))
        video.set_decode_threads(3)
        three = read_frames(ref_video, range(N))
    finally:
        video.set_decode_threads(None)
    auto = read_frames(ref_video, range(N))
    assert one.keys() == three.keys() == auto.keys() == set(range(N))
    for i in one:
        np.testing.assert_array_equal(one[i], auto[i])
        np.testing.assert_array_equal(three[i], auto[i])
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            video.set_decode_threads(bad)


def test_video_reader_probes_and_decodes_on_one_open(ref_video, source_frames, monkeypatch):
    from ffmask import video

    opens = []
    real_open = video._open_input
    monkeypatch.setattr(video, "_open_input", lambda p: opens.append(p) or real_open(p))
    with video.VideoReader(ref_video) as reader:
        assert reader.info == probe(ref_video)
        opens.clear()
        got = dict(reader.frames([2, 9, N + 3]))
    assert opens == []  # the header gave the count: the probing open is reused
    assert sorted(got) == [2, 9]
    direct = _decode_all_with_av(ref_video)
    for i in got:
        np.testing.assert_array_equal(got[i], direct[i])
    with pytest.raises(VideoError, match="no such file"):
        video.VideoReader(ref_video.with_name("missing.mp4"))


# --- frames nobody needs are not decoded ----------------------------------------

def _b_frame_video(path: Path, frames) -> Path:
    """x264 with B-frames (its default): non-reference frames the decoder can drop."""
    _encode_with_av(path, frames, bframes="3", **{"x264-params": "b-pyramid=none"})
    return path


def test_unwanted_frames_are_skipped_and_wanted_ones_unchanged(tmp_path, source_frames, monkeypatch):
    from ffmask import video

    path = _b_frame_video(tmp_path / "b.mp4", source_frames)
    direct = _decode_all_with_av(path)
    decoded = count_decoded_frames(monkeypatch)
    for wanted in ([0, 7, 15, 29], list(range(0, N, 5)), [N - 1], [3]):
        decoded.clear()
        got = read_frames(path, wanted)
        assert sorted(got) == wanted
        for i in wanted:
            np.testing.assert_array_equal(got[i], direct[i])
        if len(wanted) > 1:  # B-frames that nothing refers to and nobody wants: not decoded
            assert len(decoded) < max(wanted) + 1
    monkeypatch.setattr(video, "SKIP_UNWANTED", False)
    decoded.clear()
    read_frames(path, [0, 29])
    assert len(decoded) == N


def test_skipping_falls_back_to_a_full_decode_when_timestamps_leave_the_grid(tmp_path, source_frames,
                                                                             monkeypatch):
    """Skip decisions come from the timestamp grid; when the grid cannot be
    trusted after the fact, the wanted frames that did not come are decoded
    again without skipping."""
    from ffmask import video

    path = _b_frame_video(tmp_path / "b.mp4", source_frames)
    direct = _decode_all_with_av(path)
    real_grid = video._FramePositions.grid_position
    # wrong decisions: every packet is taken for the frame after it
    monkeypatch.setattr(video._FramePositions, "grid_position",
                        lambda self, packet: None if real_grid(self, packet) is None else real_grid(self, packet) + 1)
    wanted = list(range(1, N, 2))
    lost = read_frames(path, wanted)
    assert set(lost) < set(wanted)  # the premise: wrong decisions lose wanted frames
    monkeypatch.setattr(video._FramePositions, "on_grid_up_to", lambda self, last: False)
    got = read_frames(path, wanted)
    assert sorted(got) == wanted
    for i in wanted:
        np.testing.assert_array_equal(got[i], direct[i])
