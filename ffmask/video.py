"""Frame sampling, decoding and encoding of videos (PyAV / FFmpeg).

Frames are always ``uint8`` RGB arrays of shape ``(H, W, 3)``. Frame indices
count frames in the order the decoder returns them, starting at 0, which is
how FaceForensics++ tools number frames.

Every failure that comes from the file (missing, empty, not a video,
truncated before any frame) is raised as :class:`ffmask.errors.VideoError`
with a one-line message naming the file; PyAV exceptions never escape.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ffmask.errors import VideoError

__all__ = ["VideoInfo", "probe", "sample_indices", "read_frames", "iter_frames", "write_video"]

# libx264 picks its thread count from the number of cores, and frame threading
# changes the encoded bytes. One thread makes a file a function of its frames
# alone, on any machine; callers that write many videos (ffmask synth) run
# them in parallel processes instead.
X264_THREADS = 1
# x264's macroblock-tree rate control, combined with B-frames, makes the
# PyAV-bundled x264 (core 165) nondeterministic even on one thread: twelve
# encodes of the same frames gave five different files. Without it the
# output is a pure function of the frames; CRF keeps its meaning.
X264_PARAMS = "mbtree=0"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video's first video stream."""

    n_frames: int
    fps: float
    width: int
    height: int


def _av():
    import av  # local: keeps ``import ffmask.video`` cheap for the CLI

    return av


def _av_errors() -> tuple[type[BaseException], ...]:
    av = _av()
    # FFmpegError covers demux/decode failures; some PyAV paths raise plain
    # ValueError/OSError/EOFError on broken input instead.
    return (av.FFmpegError, ValueError, OSError, EOFError)


def _open_input(path):
    """Open ``path`` for reading and return ``(container, video_stream)``."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file")
    if p.is_dir():
        raise VideoError(f"{p}: is a directory, not a video")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    av = _av()
    try:
        container = av.open(str(p), mode="r")
    except _av_errors() as exc:
        raise VideoError(f"{p}: cannot be opened as a video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: has no video stream")
    return container, container.streams.video[0]


def _sequences():
    from ffmask import sequences  # local: sequences imports VideoInfo from here

    return sequences


def _is_frame_sequence(path) -> bool:
    return isinstance(path, _sequences().FrameSequence)


def _reason(exc: BaseException) -> str:
    # PyAV's str() repeats the errno and file name; the caller names the file.
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).splitlines()[0]


def probe(path) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream of ``path``.

    ``n_frames`` comes from the stream header; when the header does not say
    (0), the video packets are counted instead (no decoding). Raises
    :class:`VideoError` for a missing, empty or unreadable file, or one
    without a video stream. A :class:`ffmask.sequences.FrameSequence`
    (frames stored as images) is probed by :mod:`ffmask.sequences`.
    """
    if _is_frame_sequence(path):
        return _sequences().probe(path)
    container, stream = _open_input(path)
    try:
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        n_frames = int(stream.frames or 0)
        if n_frames <= 0:
            n_frames = _count_packets(container, stream)
        if n_frames <= 0:
            n_frames = _count_decoded(container, stream)
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: video stream has no frame size")
        return VideoInfo(n_frames=n_frames, fps=fps, width=width, height=height)
    except _av_errors() as exc:
        raise VideoError(f"{path}: cannot read the video stream ({_reason(exc)})") from None
    finally:
        container.close()


def _count_packets(container, stream) -> int:
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
    except _av_errors():
        pass  # a truncated tail: what was read so far is the count
    return count


def _count_decoded(container, stream) -> int:
    container.seek(0)
    count = 0
    try:
        for _ in container.decode(stream):
            count += 1
    except _av_errors():
        pass
    return count


def sample_indices(n_frames: int, frames: int | None = 20, every: int | None = None) -> np.ndarray:
    """Frame indices to sample from a video of ``n_frames`` frames.

    Exactly one of ``frames`` and ``every`` is given:

    - ``frames=N``: ``N`` evenly spaced indices,
      ``np.rint(np.linspace(0, n_frames - 1, N))``; duplicates (when
      ``n_frames < N``) are dropped, so fewer indices come back.
    - ``every=K``: ``0, K, 2K, ...`` below ``n_frames``.

    Returns a sorted, unique ``int64`` array (empty when ``n_frames == 0``).
    Raises ValueError for negative counts, non-positive ``frames``/``every``
    or when both or neither are given.
    """
    n_frames = _as_int(n_frames, "n_frames")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if (frames is None) == (every is None):
        raise ValueError("give exactly one of frames= and every=")
    if frames is not None:
        frames = _as_int(frames, "frames")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if n_frames == 0:
            return np.zeros(0, dtype=np.int64)
        idx = np.rint(np.linspace(0, n_frames - 1, frames)).astype(np.int64)
        return np.unique(idx)
    every = _as_int(every, "every")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return np.arange(0, n_frames, every, dtype=np.int64)


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def iter_frames(path, indices: Sequence[int] | np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb)`` for the wanted frames of ``path``, in order.

    ``indices=None`` yields every frame. Decoding stops after the last wanted
    index, and only wanted frames are converted to RGB. A corrupt or
    truncated tail ends the iteration quietly; a file that cannot be opened
    raises :class:`VideoError` before anything is yielded.
    """
    wanted = None if indices is None else _wanted(indices)
    if wanted is not None and not wanted:
        return
    last = None if wanted is None else max(wanted)
    container, stream = _open_input(path)
    stream.thread_type = "AUTO"  # frame + slice threads: decoding is the hot loop
    try:
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if wanted is None or index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
                if last is not None and index >= last:
                    break
        except _av_errors():
            return  # truncated / corrupt tail: keep what decoded
    finally:
        container.close()


def _wanted(indices) -> set[int]:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("indices must be >= 0")
    return {int(i) for i in arr}


def read_frames(path, indices: Sequence[int] | np.ndarray) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (decode order, 0-based) of ``path``.

    Returns ``{index: uint8 RGB (H, W, 3)}`` for every requested index that
    could be decoded; indices past the end of the video, or in a corrupt or
    truncated tail, are simply absent. Raises :class:`VideoError` if the
    file cannot be opened or not a single frame decodes (when any index was
    requested). Raises ValueError for negative or non-integer indices.
    A :class:`ffmask.sequences.FrameSequence` is read by :mod:`ffmask.sequences`.
    """
    if _is_frame_sequence(path):
        return _sequences().read_frames(path, indices)
    wanted = _wanted(indices)
    if not wanted:
        _open_input(path)[0].close()  # still report a bad file
        return {}
    out = dict(iter_frames(path, sorted(wanted)))
    if not out and not _any_frame_decodes(path):
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    return out


def _any_frame_decodes(path) -> bool:
    for _ in iter_frames(path, [0]):
        return True
    return False


def write_video(
    path,
    frames: Iterable[np.ndarray],
    fps: float = 25,
    crf: int = 23,
    *,
    lossless: bool = False,
) -> None:
    """Encode ``frames`` as H.264 (libx264, yuv420p) into an MP4 at ``path``.

    frames: uint8 RGB ``(H, W, 3)`` arrays, or uint8/bool gray ``(H, W)``
    masks (bool becomes 0/255), all of one even size (yuv420p halves the
    chroma planes). ``crf`` is x264's constant rate factor (23 = FF++ c23,
    40 = c40). ``lossless=True`` encodes with qp 0: gray values (masks) come
    back exactly after decoding. The file is written under a temporary name
    in the same folder and renamed when complete, so ``path`` is never a
    partial video. Raises ValueError for bad frames or options (nothing is
    written then).
    """
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if not lossless and not (0 <= int(crf) <= 51):
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    first, fmt = _check_frame(first, None)
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")

    av = _av()
    tmp = _temp_name(path)
    try:
        # faststart puts the index first, so a truncated copy still decodes
        # up to the cut (as streamed downloads do).
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            options = {"threads": str(X264_THREADS), "x264-params": X264_PARAMS}
            if lossless:
                options["qp"] = "0"
            else:
                options["crf"] = str(int(crf))
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.options = options
            for arr in _chain(first, frames):
                arr, _ = _check_frame(arr, (height, width, fmt))
                frame = av.VideoFrame.from_ndarray(arr, format=fmt)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _temp_name(path: Path) -> str:
    """A fresh hidden name beside ``path`` (same file system, so the rename is atomic).

    Not ``tempfile.mkstemp``: its files are mode 0600, and the renamed video
    must get the usual permissions.
    """
    return str(path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"))


def _chain(first, rest):
    yield first
    yield from rest


def _check_frame(arr, expect):
    """Validate one frame; returns (uint8 array, PyAV pixel format)."""
    arr = np.asarray(arr)
    if arr.dtype == bool and arr.ndim == 2:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (or bool masks), got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        fmt = "rgb24"
    elif arr.ndim == 2:
        fmt = "gray"
    else:
        raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) gray, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty frame of shape {arr.shape}")
    if expect is not None:
        h, w, efmt = expect
        if arr.shape[:2] != (h, w) or fmt != efmt:
            raise ValueError(
                f"all frames must have one shape: expected {(h, w)} {efmt}, got {arr.shape[:2]} {fmt}"
            )
    return np.ascontiguousarray(arr), fmt
