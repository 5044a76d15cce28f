"""Frame sampling, decoding and encoding of videos (PyAV / FFmpeg).

Frames are always ``uint8`` RGB arrays of shape ``(H, W, 3)``, as displayed:
a display matrix in the file (a phone video stored sideways) is applied. Frame
indices count frames in presentation order (the order the decoder returns
them), starting at 0, which is how FaceForensics++ tools number frames; a
frame whose packet is in the file but does not decode still takes its index.

Every failure that comes from the file (missing, empty, not a video,
truncated before any frame) is raised as :class:`ffmask.errors.VideoError`
with a one-line message naming the file; PyAV exceptions never escape.
"""

from __future__ import annotations

import bisect
import functools
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ffmask.errors import VideoError

__all__ = [
    "VideoInfo",
    "probe",
    "sample_indices",
    "read_frames",
    "iter_frames",
    "VideoReader",
    "stream_frames",
    "stream_gray_planes",
    "FrameConverter",
    "set_decode_threads",
    "apply_display_matrix",
    "display_turn",
    "write_video",
]

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


# Decoder threads per video: None lets FFmpeg pick (frame + slice threads,
# one per core); an int fixes the count (1: no threading). Set per worker
# process with :func:`set_decode_threads`.
_DECODE_THREADS: Optional[int] = None


def set_decode_threads(threads: Optional[int]) -> None:
    """Choose how many threads FFmpeg decodes each video with, in this process.

    threads : int >= 1 or None
        None (the default): FFmpeg's automatic choice, frame and slice
        threads over every core. An int: that many (1 decodes on the calling
        thread only, which is what a worker gets when there are as many
        workers as cores).
    """
    global _DECODE_THREADS
    if threads is not None:
        threads = _as_int(threads, "threads")
        if threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
    _DECODE_THREADS = threads


def _set_threads(stream) -> None:
    if _DECODE_THREADS is None:
        stream.codec_context.thread_type = "AUTO"
    elif _DECODE_THREADS > 1:
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = _DECODE_THREADS
    else:
        stream.codec_context.thread_count = 1


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video's first video stream.

    ``width`` and ``height`` are the size of the frames :func:`read_frames`
    gives, in square pixels (an anamorphic video, stored squashed with a
    non-square ``sample_aspect``, is widened or heightened as a player shows
    it: :func:`square_size`), before the display matrix it applies (a
    90-degree video reads as ``(width, height, 3)`` frames: the matrix is
    only known from a decoded frame). ``stored_size`` is the ``(width,
    height)`` the file stores when that differs (non-square pixels), else None.
    """

    n_frames: int
    fps: float
    width: int
    height: int
    sample_aspect: Fraction = Fraction(1)
    stored_size: Optional[tuple[int, int]] = None


def _av():
    import av  # local: keeps ``import ffmask.video`` cheap for the CLI

    return av


def _av_errors() -> tuple[type[BaseException], ...]:
    av = _av()
    # FFmpegError covers demux/decode failures; some PyAV paths raise plain
    # ValueError/OSError/EOFError on broken input instead.
    return (av.FFmpegError, ValueError, OSError, EOFError)


#: codec -> the decoder that reads the alpha layer of its streams that carry one. FFmpeg's own VP8 and VP9
#: decoders (the ones a stream opens with) decode only the colour layer; the alpha layer of a WebM
#: (Matroska) stream travels as BlockAdditional side data, which only libvpx's decoders read.
ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


def carries_alpha_layer(stream) -> bool:
    """Whether ``stream`` (a PyAV video stream) says it carries a separate alpha layer: Matroska's
    ``AlphaMode`` 1, the tag ``alpha_mode=1`` FFmpeg reads and writes."""
    return str(stream.metadata.get("alpha_mode", "")).strip() == "1"


class VideoStream:
    """A demuxed video stream (``.stream``, PyAV's) and the codec context that decodes it
    (``.codec_context``); any other attribute is the stream's.

    Every open of a video goes through :func:`_open_input`, which picks the decoder
    (:func:`_decoder_for`): PyAV's own context of the stream, or the one of :data:`ALPHA_DECODERS`
    for a stream carrying an alpha layer.
    """

    __slots__ = ("stream", "codec_context")

    def __init__(self, stream, codec_context):
        self.stream, self.codec_context = stream, codec_context

    def decode(self, packet=None):
        """The frames ``packet`` completes (None: drain the decoder), as ``av.VideoStream.decode``."""
        return self.codec_context.decode(packet)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _decoder_for(stream):
    """The codec context to decode ``stream`` with: its own, or for a VP8/VP9 stream carrying an alpha
    layer the libvpx decoder of :data:`ALPHA_DECODERS` (a new context of the stream's size; frames take
    their packets' timestamps),
    so that its frames come with their alpha (``yuva420p``). Its own when that decoder is not in FFmpeg."""
    own = stream.codec_context
    name = ALPHA_DECODERS.get(own.name) if own is not None else None
    if name is None or not carries_alpha_layer(stream):
        return own
    av = _av()
    try:
        ctx = av.CodecContext.create(name, "r")
    except (av.FFmpegError, ValueError):  # an FFmpeg built without libvpx: the colour layer, as before
        return own
    ctx.width, ctx.height = own.width, own.height
    if own.sample_aspect_ratio:
        ctx.sample_aspect_ratio = own.sample_aspect_ratio
    if own.extradata:
        ctx.extradata = own.extradata
    return ctx


def _open_input(path):
    """Open ``path`` for reading and return ``(container, VideoStream)``: FFmpeg's pick of its video
    streams, with the decoder that reads it whole (:func:`_decoder_for`)."""
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
    # FFmpeg's pick (av_find_best_stream), not the first video stream: a cover picture embedded by a
    # downloader can come first (its one frame was annotated as the video)
    stream = container.streams.best("video") or container.streams.video[0]
    if stream.disposition & av.stream.Disposition.attached_pic:
        container.close()
        raise VideoError(f"{p}: holds only a cover picture, no video stream")
    return container, VideoStream(stream, _decoder_for(stream))


def _packets(container, stream: VideoStream):
    """``container``'s packets of ``stream``, demuxed."""
    return container.demux(stream.stream)


def _decode_all(container, stream: VideoStream):
    """Every frame of ``stream`` decoded by its decoder, as ``container.decode(stream)`` does with PyAV's."""
    for packet in _packets(container, stream):
        yield from stream.decode(packet if packet.size else None)


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
        return _probe_open(path, container, stream)[0]
    finally:
        container.close()


def _probe_open(path, container, stream) -> tuple[VideoInfo, bool]:
    """(:func:`probe`'s answer, whether ``container`` is still at its start)."""
    try:
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        n_frames = int(stream.frames or 0)
        untouched = n_frames > 0
        if n_frames <= 0:
            n_frames = _count_packets(container, stream)
        if n_frames <= 0:
            n_frames = _count_decoded(container, stream)
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: video stream has no frame size")
        aspect = sample_aspect(stream)
        shown = square_size(width, height, aspect)
        info = VideoInfo(n_frames=n_frames, fps=fps, width=shown[0], height=shown[1], sample_aspect=aspect,
                         stored_size=(width, height) if shown != (width, height) else None)
        return info, untouched
    except _av_errors() as exc:
        raise VideoError(f"{path}: cannot read the video stream ({_reason(exc)})") from None


class VideoReader:
    """One video opened once: probe it, then decode the frames it should give.

    ``VideoReader(path).info`` is :func:`probe`'s answer and
    ``reader.frames(indices)`` iterates like :func:`iter_frames`, on the same
    open file when probing did not have to read the stream (the header gave
    the frame count), else on a fresh one; ``reader.gray_planes(indices)``
    likewise iterates like :func:`stream_gray_planes`. One of the two can be
    called, once.
    Raises :class:`VideoError` as :func:`probe` does. A
    :class:`ffmask.sequences.FrameSequence` is read by :mod:`ffmask.sequences`.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path):
        self.path = path
        self._open = None
        # the converter of frames(): it keeps the display matrix of the last frame it turned
        self._convert = FrameConverter()
        if _is_frame_sequence(path):
            self.info = _sequences().probe(path)
            return
        container, stream = _open_input(path)
        try:
            self.info, untouched = _probe_open(path, container, stream)
        except BaseException:
            container.close()
            raise
        if untouched:
            self._open = (container, stream)
        else:
            container.close()

    @property
    def n_frames(self) -> int:
        return self.info.n_frames

    @property
    def display_turn(self) -> Optional[str]:
        """What the display matrix of the frames :meth:`frames` decoded does (as
        :func:`display_turn` names it); None before a frame was decoded. Read
        from the decoded frames themselves: no second decode."""
        if _is_frame_sequence(self.path):
            return "as stored"
        return None if not self._convert.seen else _turn_name(self._convert.matrix)

    def frames(self, indices, *, gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for ``indices`` as :func:`iter_frames` does.

        When no requested frame decoded, raises :class:`VideoError` at the
        end unless some frame of the video decodes, as :func:`read_frames`.
        """
        yield from self._frames(indices, gray, planes=False)

    def gray_planes(self, indices) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray]]]:
        """Yield ``(index, plane, table)`` for ``indices`` as :func:`stream_gray_planes` does.

        The alternative to :meth:`frames` (either can be called, once): a
        mask video's frame count and its grey planes from one open file.
        """
        yield from self._frames(indices, True, planes=True)

    def _frames(self, indices, gray: bool, *, planes: bool):
        wanted = _wanted(indices)
        opened, self._open = self._open, None
        if opened is None:
            yield from _stream(self.path, sorted(wanted), gray, planes=planes, convert=self._convert)
            return
        if not wanted:
            opened[0].close()
            return
        yield from _checked(self.path, _frames_of(*opened, wanted, gray, table=planes, convert=self._convert))

    def close(self) -> None:
        if self._open is not None:
            self._open[0].close()
            self._open = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stream_frames(path, indices, *, gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`read_frames` one frame at a time: yield ``(index, frame)`` in order.

    Same frames, same errors: :class:`VideoError` before anything is yielded
    when the file cannot be opened, and at the end when no requested frame
    decoded and no frame of the video decodes. Only one decoded frame is held
    at a time, so a caller that keeps crops holds no full frames.
    """
    yield from _stream(path, indices, gray, planes=False)


def stream_gray_planes(path, indices) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray]]]:
    """:func:`stream_frames` with ``gray=True``, its last table lookup left to the caller.

    Yields ``(index, plane, table)``: the grey frame :func:`stream_frames`
    gives is ``cv2.LUT(plane, table)`` when ``table`` (uint8 (256,)) is not
    None, else ``plane`` itself. ``plane`` is uint8 ``(H, W)`` as displayed
    (for a 4:2:0 video with neutral chroma, such as a mask video, the luma
    plane; see :class:`FrameConverter`). A caller that only picks pixels (a
    crop resized with nearest neighbour) can apply the table to the picked
    pixels alone: the same values, fewer lookups. Errors as
    :func:`stream_frames`.
    """
    yield from _stream(path, indices, True, planes=True)


def _stream(path, indices, gray: bool, *, planes: bool, convert: Optional["FrameConverter"] = None):
    """:func:`stream_frames` (``planes`` False) or :func:`stream_gray_planes` (``planes`` True, ``gray`` True)."""
    if _is_frame_sequence(path):
        for index, frame in sorted(read_frames(path, indices, gray=gray).items()):
            yield (index, frame, None) if planes else (index, frame)
        return
    wanted = _wanted(indices)
    container, stream = _open_input(path)
    if not wanted:
        container.close()  # still report a bad file
        return
    yield from _checked(path, _frames_of(container, stream, wanted, gray, table=planes, convert=convert))


def _checked(path, frames):
    some = False
    for item in frames:
        some = True
        yield item
    if not some and not _any_frame_decodes(path):
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _count_packets(container, stream) -> int:
    count = 0
    try:
        for packet in _packets(container, stream):
            if packet.size:
                count += 1
    except _av_errors():
        pass  # a truncated tail: what was read so far is the count
    return count


def _count_decoded(container, stream) -> int:
    container.seek(0)
    count = 0
    try:
        for _ in _decode_all(container, stream):
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
        # Rising, so a duplicate is next to its twin: np.unique's result without
        # np.unique, whose first call imports numpy.ma (~10 ms in every worker).
        return idx[np.concatenate(([True], idx[1:] != idx[:-1]))]
    every = _as_int(every, "every")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return np.arange(0, n_frames, every, dtype=np.int64)


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def iter_frames(path, indices: Sequence[int] | np.ndarray | None = None, *,
                gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the wanted frames of ``path``, in order.

    ``indices=None`` yields every frame. Decoding stops after the last wanted
    index, only wanted frames are converted to RGB, and frames nothing refers
    to that are not wanted are not decoded at all (see :func:`_decoded_frames`).
    Frames come as displayed: non-square pixels (a sample aspect ratio other
    than 1, anamorphic video) are resized to square ones
    (:func:`square_pixels`: a 1440x1080 frame of 4:3 pixels comes 1920x1080),
    and a display matrix (rotation by a multiple of 90 degrees, flips) is
    applied, see :func:`apply_display_matrix`.

    ``gray=False`` yields uint8 RGB ``(H, W, 3)``; ``gray=True`` yields uint8
    ``(H, W)`` equal to OpenCV's RGB->GRAY of that RGB frame (what a binary
    mask is thresholded from), read straight from the luma plane when the
    chroma planes are neutral (see :class:`FrameConverter`).

    A truncated or corrupt tail ends the iteration quietly, after every frame
    that decodes has been yielded: packets cut short by the end of the file
    are not decoded, the first demux or decode error stops the feeding, and
    the decoder is then drained. ``index`` is the frame's position in the
    video (presentation order, counting frames whose packets are present but
    do not decode), so a frame that follows an undecodable one keeps its own
    index. A file that cannot be opened raises :class:`VideoError` before
    anything is yielded.
    """
    wanted = None if indices is None else _wanted(indices)
    if wanted is not None and not wanted:
        return
    container, stream = _open_input(path)
    yield from _frames_of(container, stream, wanted, gray)


def _frames_of(container, stream, wanted: Optional[set], gray: bool, table: bool = False,
               convert: Optional["FrameConverter"] = None):
    """:func:`iter_frames` on an open container, which it closes; with ``table`` (and
    ``gray``), ``(index, plane, table)`` as :func:`stream_gray_planes` yields.
    ``convert``: the :class:`FrameConverter` to use (a fresh one by default)."""
    try:
        _set_threads(stream)
        convert = convert if convert is not None else FrameConverter()
        convert.sample_aspect = sample_aspect(stream)
        for index, frame in _decoded_frames(container, stream, wanted):
            if table:
                yield (index, *convert.gray_parts(frame))
            else:
                yield index, convert(frame, gray=gray)
    finally:
        container.close()


#: Do not decode frames that are neither wanted nor referenced by any other
#: frame (H.264 non-reference B-frames): FFmpeg's ``skip_frame`` set to
#: NONREF packet by packet. The frames that are decoded come out bit for bit
#: the same (nothing refers to a skipped frame).
SKIP_UNWANTED = True


def _decoded_frames(container, stream, wanted: Optional[set] = None):
    """Yield ``(index, av.VideoFrame)`` for the frames that decode, in presentation order.

    ``wanted``: the indices to yield (None: every frame); feeding stops once
    the last wanted index is out.

    Packets are fed one by one. A packet the demuxer flags corrupt (a read cut
    short by the end of the file) is never decoded: a frame decoded from half
    a packet is concealed garbage. The first such packet, demux error or
    decode error stops the feeding; the decoder is then drained, because it
    still holds frames already sent (held for reordering, or by frame
    threads). Those frames reference only earlier packets, so they decode
    exactly, but frames shown before them may never have been demuxed: they
    get their index from the stream's constant frame duration, and are
    dropped when the stream has none (see :class:`_FramePositions`).

    With :data:`SKIP_UNWANTED`, a packet whose frame is not wanted is fed
    with ``skip_frame=NONREF``, so the decoder drops it when no other frame
    refers to it. Which frame a packet holds is known before decoding from
    its timestamp on the stream's constant-rate grid; a frame's index is
    still its timestamp's rank as above. When the two could disagree (a
    stream whose timestamps leave the grid, have gaps or start below the
    first packet's), a wanted frame may have been skipped: the video is then
    decoded again without skipping and the wanted frames not yet yielded
    follow (the only case where frames come out of order).
    """
    last = None if wanted is None else max(wanted)
    positions = _FramePositions()
    skip = _Skipper(stream, positions, wanted) if wanted is not None and SKIP_UNWANTED else None
    yielded = set()
    for index, frame in _all_decoded_frames(container, stream, positions, skip):
        if wanted is None or index in wanted:
            yielded.add(index)
            yield index, frame
        if last is not None and index >= last:
            break
    if skip is None or not skip.skipped or positions.on_grid_up_to(last):
        return
    container, stream = _open_input(container.name)  # rare: decode again, skipping nothing
    try:
        _set_threads(stream)
        for index, frame in _all_decoded_frames(container, stream, _FramePositions(), None):
            if index in wanted and index not in yielded:
                yielded.add(index)
                yield index, frame
            if index >= last:
                break
    finally:
        container.close()


class _Skipper:
    """Decides, packet by packet, whether the decoder may drop the packet's frame."""

    def __init__(self, stream, positions, wanted: set):
        self.context = stream.codec_context
        self.positions, self.wanted = positions, wanted
        self.skipping = False
        self.skipped = False

    def __call__(self, packet) -> None:
        grid = self.positions.grid_position(packet)
        skip = grid is not None and grid not in self.wanted
        if skip != self.skipping:
            self.context.skip_frame = "NONREF" if skip else "DEFAULT"
            self.skipping = skip
        self.skipped |= skip


def _all_decoded_frames(container, stream, positions, skip):
    errors = _av_errors()
    packets = _packets(container, stream)
    broken = False
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except errors:
            broken = True  # the demuxer cannot go on (truncated container)
            break
        if packet.size == 0:
            continue  # PyAV's end-of-stream packet; the drain below flushes
        positions.add_packet(packet)
        if packet.is_corrupt:
            broken = True
            break
        if skip is not None:
            skip(packet)
        try:
            frames = stream.decode(packet)
        except errors:
            broken = True
            break
        for frame in frames:
            yield positions.index(frame), frame
    try:
        frames = stream.decode(None)
    except errors:
        return
    for frame in frames:
        index = positions.grid_index(frame) if broken else positions.index(frame)
        if index is not None:
            yield index, frame


class _FramePositions:
    """Presentation index of decoded frames, counting frames that never decode.

    A frame's index is the rank of its timestamp among the timestamps of all
    packets demuxed so far (one packet per frame): a decoder outputs frames in
    presentation order, so every packet of an earlier frame has been demuxed
    by then. Packets the demuxer marks ``discard`` (edit-list trimming) yield
    no frame and are not counted. Streams without timestamps, or frames whose
    timestamp is no packet's, fall back to counting decoded frames, never
    going back or repeating an index.

    After the feeding stopped early, that rank is no proof (the packets of
    earlier frames may lie beyond the cut): :meth:`grid_index` then places a
    frame on the stream's constant-frame-rate grid, or gives None.
    """

    def __init__(self):
        self.pts: list[int] = []
        self.by_pts = True
        self.next = 0
        self.first_pts = None
        self.duration = None  # the one packet duration, while every packet has it
        self.on_grid = True

    def add_packet(self, packet) -> None:
        if packet.pts is None:
            self.by_pts = self.on_grid = False
            return
        if packet.is_discard:
            return
        bisect.insort(self.pts, packet.pts)
        duration = packet.duration or 0
        if self.first_pts is None:
            self.first_pts, self.duration = packet.pts, duration
        if duration <= 0 or duration != self.duration or (packet.pts - self.first_pts) % duration:
            self.on_grid = False

    def index(self, frame) -> int:
        index = self.next
        if self.by_pts and frame.pts is not None:
            rank = bisect.bisect_left(self.pts, frame.pts)
            if rank < len(self.pts) and self.pts[rank] == frame.pts and rank >= self.next:
                index = rank
            else:
                self.by_pts = False
        else:
            self.by_pts = False
        self.next = index + 1
        return index

    def grid_position(self, packet) -> Optional[int]:
        """The index of ``packet``'s frame on the constant-rate grid of the packets so far, or None."""
        if not (self.by_pts and self.on_grid) or packet.pts is None or packet.is_discard or not self.duration:
            return None
        offset = packet.pts - self.first_pts
        return offset // self.duration if offset >= 0 else None

    def on_grid_up_to(self, last: int) -> bool:
        """Whether the packets' timestamps are exactly the grid ``first + k * duration`` for
        ranks ``k <= last`` (those demuxed), so that rank and grid position agree there."""
        if not (self.by_pts and self.on_grid and self.pts and self.duration):
            return False
        n = min(len(self.pts), last + 1)
        return self.pts[0] == self.first_pts and all(
            self.pts[k] == self.first_pts + k * self.duration for k in range(n))

    def grid_index(self, frame):
        if not (self.by_pts and self.on_grid and self.pts and frame.pts is not None):
            return None
        if frame.pts < self.pts[0] or (frame.pts - self.pts[0]) % self.duration:
            return None
        index = (frame.pts - self.pts[0]) // self.duration
        if index < self.next:
            return None
        self.next = index + 1
        return int(index)


# Planar 8-bit YUV formats whose chroma planes are half size both ways.
_YUV420 = ("yuv420p", "yuvj420p")
# (pixel format, width, colorspace, colour range) -> luma -> grey LUT, or None
_GRAY_LUTS: dict = {}


class FrameConverter:
    """Decoded PyAV frames to numpy arrays, one converter per video.

    ``rgb`` gives exactly ``frame.to_ndarray(format="rgb24")`` (an alpha frame: composited on black) but through one
    swscale context kept for the whole video (PyAV otherwise builds a new
    context for every frame, which costs more than converting it), on
    ``threads`` swscale threads (None: the decoder's count, see
    :func:`set_decode_threads`; 0: FFmpeg's automatic choice, one per core).

    ``gray`` gives exactly OpenCV's RGB->GRAY of that RGB frame, uint8
    ``(H, W)``. For 4:2:0 YUV frames whose chroma planes are all neutral
    (128: a grey picture, such as a mask video) the grey value is a function
    of the luma alone; it is then read from the luma plane through a table
    made by converting a ramp of every luma value with this same swscale
    path (checked to be the same in every column, else not used). Any other
    frame is converted to RGB first. Both ways give the same array.
    """

    def __init__(self, threads: Optional[int] = None):
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        # swscale's own slice threads: as many as the decoder's (one per
        # worker when every core has a worker), else FFmpeg's choice (0).
        # Rows are converted independently, so the count changes no pixel.
        if threads is None:
            threads = _DECODE_THREADS or 0
        threads = _as_int(threads, "threads")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 or None, got {threads}")
        self._threads = threads
        # the display matrix of the last frame turned (None: none), and whether one was
        self.matrix, self.seen = None, False
        #: the stream's sample aspect ratio (a pixel's width / its height; set by the reader from the
        #: stream): frames of non-square pixels are resized to square ones, as a player shows them
        self.sample_aspect: Fraction = Fraction(1)

    def _matrix(self, frame):
        self.matrix, self.seen = _display_matrix(frame), True
        return self.matrix

    def __call__(self, frame, gray: bool = False) -> np.ndarray:
        """The frame as displayed: ``rgb(frame)`` or ``gray(frame)``, in square pixels
        (:func:`square_pixels` of :attr:`sample_aspect`), turned by its display matrix."""
        if self.sample_aspect != 1:
            import cv2

            # grey from the resized RGB frame, so that it stays OpenCV's RGB->GRAY of the RGB frame given
            array = square_pixels(self.rgb(frame), self.sample_aspect)
            array = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY) if gray else array
        else:
            array = self.gray(frame) if gray else self.rgb(frame)
        return apply_display_matrix(array, self._matrix(frame))

    def gray_parts(self, frame) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """``(plane, table)`` as displayed: ``self(frame, gray=True)`` is
        ``cv2.LUT(plane, table)``, or ``plane`` when ``table`` is None."""
        if self.sample_aspect != 1:  # resized after the table, as __call__ does
            return self(frame, gray=True), None
        luma = _neutral_luma(frame)
        table = _gray_lut(frame) if luma is not None else None
        if table is None:
            return self(frame, gray=True), None
        return apply_display_matrix(luma, self._matrix(frame)), table

    def rgb(self, frame) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` as stored (no display matrix); a frame with an alpha channel (PNG or
        QuickTime RLE in MOV, ProRes 4444, FFV1 ``yuva``, a palette) composited on black
        (:func:`on_black`)."""
        if has_alpha(frame.format.name):
            return on_black(self._reformatter.reformat(frame, format="rgba", threads=self._threads).to_ndarray())
        return self._reformatter.reformat(frame, format="rgb24", threads=self._threads).to_ndarray()

    def gray(self, frame) -> np.ndarray:
        """uint8 grey ``(H, W)`` as stored, equal to ``cv2.cvtColor(rgb(frame), COLOR_RGB2GRAY)``."""
        import cv2

        luma = _neutral_luma(frame)
        if luma is not None:
            lut = _gray_lut(frame)
            if lut is not None:
                return cv2.LUT(luma, lut)  # lut[luma], several times faster
        return cv2.cvtColor(self.rgb(frame), cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=None)
def has_alpha(pixel_format: str) -> bool:
    """Whether frames of FFmpeg ``pixel_format`` (``"rgba"``, ``"yuva444p12le"``, ``"pal8"``...) can hold
    transparency: an alpha component, or a palette (whose entries carry alpha)."""
    fmt = _av().VideoFormat(pixel_format)
    return fmt.has_palette or any(getattr(c, "is_alpha", False) for c in fmt.components)


def on_black(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA ``(H, W, 4)`` (straight alpha) composited on black: uint8 RGB ``(H, W, 3)``, each
    colour times ``alpha / 255`` rounded. What a transparent part shows is the background's, not the
    colour an encoder left under it (any colour with straight alpha); opaque pixels are kept exactly."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def sample_aspect(stream) -> Fraction:
    """The sample (pixel) aspect ratio of a PyAV video ``stream``: 1 when square or unknown.

    Anamorphic video (DV, HDV, DVD and broadcast files: 1440x1080 shown as
    1920x1080 is 4:3) stores faces squashed; a player stretches them back.
    """
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    try:
        sar = Fraction(sar) if sar else Fraction(1)
    except (TypeError, ValueError, ZeroDivisionError):
        return Fraction(1)
    # 0/1 (unknown) or beyond what any format uses (2:1 is the widest in use; a broken header could ask
    # for frames 100 times wider): read as stored
    return sar if Fraction(1, 4) <= sar <= 4 else Fraction(1)


def square_size(width: int, height: int, aspect) -> tuple[int, int]:
    """``(width, height)`` of a frame stored ``width`` x ``height`` with pixels ``aspect`` (width /
    height) wide, once in square pixels as displayed: ``round(width * aspect)`` columns when ``aspect``
    > 1, ``round(height / aspect)`` rows when < 1 (no detail dropped); as stored when 1."""
    if aspect > 1:
        return max(1, round(width * aspect)), height
    if aspect < 1:
        return width, max(1, round(height / aspect))
    return width, height


def square_pixels(image: np.ndarray, aspect) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) stored with pixels ``aspect`` (width / height) wide, resized
    to square pixels as displayed (:func:`square_size`); as is when ``aspect`` is 1."""
    import cv2

    if aspect == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, square_size(w, h, aspect), interpolation=cv2.INTER_LINEAR)


def _plane(frame, i: int, height: int, width: int) -> np.ndarray:
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def _neutral_luma(frame) -> Optional[np.ndarray]:
    """The luma plane (a view) of a 4:2:0 frame whose chroma is all 128, else None."""
    if frame.format.name not in _YUV420 or frame.width % 2 or frame.height % 2:
        return None
    h, w = frame.height, frame.width
    for i in (1, 2):
        chroma = _plane(frame, i, h // 2, w // 2)
        if chroma.min() != 128 or chroma.max() != 128:
            return None
    return _plane(frame, 0, h, w)


def _gray_lut(frame) -> Optional[np.ndarray]:
    """uint8 (256,) grey level of each luma value with neutral chroma, or None."""
    key = (frame.format.name, frame.width, int(frame.colorspace), int(frame.color_range))
    if key not in _GRAY_LUTS:
        _GRAY_LUTS[key] = _make_gray_lut(frame)
    return _GRAY_LUTS[key]


def _make_gray_lut(frame) -> Optional[np.ndarray]:
    import cv2
    from av.video.reformatter import VideoReformatter

    av = _av()
    width = frame.width
    luma = np.repeat(np.arange(256, dtype=np.uint8), 2)[:, None].repeat(width, axis=1)  # (512, W)
    chroma = np.full((256, width // 2), 128, np.uint8)
    ramp = av.VideoFrame.from_ndarray(
        np.concatenate([luma.ravel(), chroma.ravel(), chroma.ravel()]).reshape(-1, width),
        format=frame.format.name)
    ramp.colorspace, ramp.color_range = frame.colorspace, frame.color_range
    grey = cv2.cvtColor(VideoReformatter().reformat(ramp, format="rgb24").to_ndarray(), cv2.COLOR_RGB2GRAY)
    if not (grey == grey[:, :1]).all() or not (grey[0::2] == grey[1::2]).all():
        return None  # the conversion depends on the position: no table can stand for it
    return np.ascontiguousarray(grey[0::2, 0])


def _display_matrix(frame):
    """The frame's 3x3 display matrix as 9 ints (FFmpeg's layout), or None."""
    side = frame.side_data.get(_av().sidedata.sidedata.Type.DISPLAYMATRIX)
    if side is None:
        return None
    return np.frombuffer(bytes(side), dtype="<i4").tolist()


def apply_display_matrix(image: np.ndarray, matrix) -> np.ndarray:
    """Turn a decoded frame into the frame as displayed, given its display matrix.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        A decoded frame as stored in the file.
    matrix : sequence of 9 ints or None
        FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX`` (``a b u c d v x y w``,
        16.16 fixed point): a stored pixel ``(p, q)`` is displayed at
        ``(a p + c q, b p + d q)`` (plus a translation), image axes pointing
        right and down. PyAV's ``VideoFrame.rotation`` is the
        counter-clockwise angle of this matrix. None: no transform.

    Returns
    -------
    ndarray
        ``image`` rotated by a multiple of 90 degrees and/or mirrored, as a
        C-contiguous array (``image`` itself when nothing changes); a 90 or
        270 degree rotation swaps height and width. Angles
        that are not multiples of 90 degrees are snapped to the nearest one
        (phones and editors only write right angles).
    """
    if matrix is None:
        return image
    values = np.asarray(matrix, dtype=np.float64).reshape(-1)
    if values.size != 9:
        raise ValueError(f"a display matrix has 9 entries, got {values.size}")
    a, b, c, d = values[0], values[1], values[3], values[4]
    if not np.all(np.isfinite([a, b, c, d])) or (a == b == 0) or (c == d == 0):
        return image  # degenerate matrix: nothing sensible to show, keep the stored frame
    if abs(a) >= abs(b):  # axes stay: x' = sign(a) x, y' = sign(d) y
        out = image
        flip_cols, flip_rows = a < 0, d < 0
    else:  # axes swap: x' = sign(c) y, y' = sign(b) x
        out = np.swapaxes(image, 0, 1)
        flip_cols, flip_rows = c < 0, b < 0
    if flip_rows:
        out = out[::-1]
    if flip_cols:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# How a display matrix turns a picture, named by what it does to a 2x2 array
# (np.rot90 turns counter-clockwise): the key is the turned array's values.
_TURN_NAMES = {
    (0, 1, 2, 3): "as stored",
    (1, 3, 0, 2): "turned 90 degrees counter-clockwise",
    (3, 2, 1, 0): "turned 180 degrees",
    (2, 0, 3, 1): "turned 90 degrees clockwise",
    (1, 0, 3, 2): "mirrored left to right",
    (2, 3, 0, 1): "mirrored top to bottom",
    (0, 2, 1, 3): "mirrored across its diagonal",
    (3, 1, 2, 0): "mirrored across its anti-diagonal",
}


def display_turn(path) -> Optional[str]:
    """How ``path``'s display matrix turns its frames for display.

    Parameters
    ----------
    path : str or Path or FrameSequence
        A video file (or a folder of frames, which has no display matrix).

    Returns
    -------
    str or None
        ``"as stored"`` (no display matrix, or one that changes nothing),
        else what the matrix does, e.g. ``"turned 180 degrees"`` or
        ``"mirrored left to right"`` (one of 8 names, see
        :func:`apply_display_matrix`); None when no frame decodes (the
        reader of the frames says why). Read from the first decoded frame:
        FFmpeg hands the matrix to frames, not to the stream.
    """
    if _is_frame_sequence(path):
        return "as stored"
    container, stream = _open_input(path)
    try:
        frame = next(_decode_all(container, stream), None)
    except _av_errors():
        frame = None
    finally:
        container.close()
    if frame is None:
        return None
    return _turn_name(_display_matrix(frame))


def _turn_name(matrix) -> str:
    """:data:`_TURN_NAMES`' name of what ``matrix`` (9 ints or None) does to a picture."""
    turned = apply_display_matrix(np.arange(4).reshape(2, 2), matrix)
    return _TURN_NAMES[tuple(int(v) for v in turned.ravel())]


def _wanted(indices) -> set[int]:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("indices must be >= 0")
    return {int(i) for i in arr}


def read_frames(path, indices: Sequence[int] | np.ndarray, *, gray: bool = False) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (decode order, 0-based) of ``path``.

    Returns ``{index: uint8 RGB (H, W, 3)}`` for every requested index that
    could be decoded (``gray=True``: uint8 ``(H, W)``, OpenCV's RGB->GRAY of
    that frame, see :func:`iter_frames`); indices past the end of the video,
    or in a corrupt or truncated tail, are simply absent. Raises
    :class:`VideoError` if the file cannot be opened or not a single frame
    decodes (when any index was requested). Raises ValueError for negative
    or non-integer indices. A :class:`ffmask.sequences.FrameSequence` is
    read by :mod:`ffmask.sequences`.
    """
    if _is_frame_sequence(path):
        frames = _sequences().read_frames(path, indices)
        return {i: _rgb_to_gray(f) for i, f in frames.items()} if gray else frames
    wanted = _wanted(indices)
    if not wanted:
        _open_input(path)[0].close()  # still report a bad file
        return {}
    out = dict(iter_frames(path, sorted(wanted), gray=gray))
    if not out and not _any_frame_decodes(path):
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    return out


def _any_frame_decodes(path) -> bool:
    # any frame, not frame 0: the first frame of a damaged file may be the one lost
    for _ in iter_frames(path):
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
