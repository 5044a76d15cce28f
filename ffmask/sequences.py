"""Videos stored as numbered image files: in a folder, or inside a tar archive.

Some datasets ship face sequences instead of videos (WildDeepfake: one
folder of face crops per sequence, packed in ``.tar.gz`` archives; users'
own folders of extracted frames). A :class:`FrameSequence` *describes* one
such sequence (where its frames are, in frame order); dataset scanners build
them with :func:`folder_sequence` and :func:`archive_sequences`, which list
files and tar headers but decode no image. :func:`probe` and
:func:`read_frames` decode, with the same contract as
:func:`ffmask.video.probe` / :func:`ffmask.video.read_frames` (which
dispatch here for a FrameSequence), so the pipeline never knows the
difference.

Frames are read straight from the archive: a member's data offset, taken
from its tar header when the archive is listed, is enough to read it again
without extracting anything. A compressed archive is decompressed from its
start up to the member each time a sequence is read (frames are read in
offset order, so that is one forward pass per sequence): cheap for
WildDeepfake's archives of a few sequences each; for one huge archive of
many sequences, an uncompressed ``.tar`` (or an extracted folder) avoids
the repeated decompression.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ffmask.errors import VideoError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ARCHIVE_SUFFIXES",
    "FrameSequence",
    "frame_order",
    "is_image_name",
    "folder_sequence",
    "archive_sequences",
    "probe",
    "read_frames",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Errors a damaged archive or image raises from the standard library.
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


@dataclass(frozen=True)
class FrameSequence:
    """One video stored as image files, frame ``i`` being ``frames[i]``.

    Attributes
    ----------
    source : Path
        The folder holding the images, or the tar archive holding them.
    frames : tuple of str
        File names (folder) or member names (archive), in frame order.
    offsets : tuple of (int, int), or None
        For an archive: ``(data offset, size)`` of each frame's member in
        the uncompressed tar stream, from its header. None for a folder.

    Picklable and hashable; it holds no open file.
    """

    source: Path
    frames: tuple[str, ...]
    offsets: Optional[tuple[tuple[int, int], ...]] = None

    def __post_init__(self):
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "frames", tuple(self.frames))
        if self.offsets is not None:
            offsets = tuple((int(a), int(b)) for a, b in self.offsets)
            if len(offsets) != len(self.frames):
                raise ValueError(f"{len(self.frames)} frames but {len(offsets)} offsets")
            object.__setattr__(self, "offsets", offsets)

    @property
    def in_archive(self) -> bool:
        return self.offsets is not None

    def __str__(self) -> str:
        # What messages name: "archive.tar.gz::folder/" or the folder itself.
        if self.in_archive:
            inner = os.path.dirname(self.frames[0]) if self.frames else ""
            return f"{self.source}::{inner}/"
        return f"{self.source}/"


_NUMBER = re.compile(r"(\d+)")


def frame_order(names: Sequence[str]) -> list[str]:
    """``names`` sorted as frame numbers: ``2.png`` before ``10.png``.

    Digit runs compare as numbers and the rest as text (a natural sort), so
    ``frame_9.jpg`` < ``frame_10.jpg`` and purely numeric names sort by value.
    """

    def key(name: str):
        stem = os.path.splitext(os.path.basename(name))[0]
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in _NUMBER.split(stem) if part], name

    return sorted(names, key=key)


def numbering_clash(names: Sequence[str]) -> Optional[tuple[str, str]]:
    """Two frame names that number one frame alike, or None.

    Names clash when their digit runs are the same numbers (``0001.png`` and
    ``0001.jpg``; ``a_0001.png`` and ``b_1.png``): a folder holding each
    frame twice (a conversion that kept the originals), or the frames of two
    videos extracted into one folder (``ffmpeg -i a.mp4 a_%04d.png``, then
    ``b.mp4``), which :func:`frame_order` would read as one video of both.
    Names without digits number nothing and never clash.
    """
    first: dict[tuple[int, ...], str] = {}
    for name in frame_order(list(names)):
        stem = os.path.splitext(os.path.basename(name))[0]
        numbers = tuple(int(part) for part in _NUMBER.findall(stem))
        if not numbers:
            continue
        if numbers in first:
            return first[numbers], name
        first[numbers] = name
    return None


def numbering_clash_reason(names: Sequence[str]) -> Optional[str]:
    """The problem a dataset records for a sequence of frames ``names`` that :func:`numbering_clash` finds
    numbering one frame twice (the clashing frames by their file names), or None when none does."""
    clash = numbering_clash(names)
    if clash is None:
        return None
    first, second = (os.path.basename(name) for name in clash)
    return (f"frames {first} and {second} are numbered alike: each frame twice, or the frames of several videos "
            "in one folder? skipped (one video's frames per folder, numbered once each)")


def is_image_name(name: str) -> bool:
    """True for a visible file name with an image extension (case-insensitive)."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def folder_sequence(folder: Union[str, Path]) -> Optional[FrameSequence]:
    """The images directly in ``folder`` as a sequence; None when there is none."""
    folder = Path(folder)
    names = [p.name for p in folder.iterdir() if is_image_name(p.name) and p.is_file()]
    if not names:
        return None
    return FrameSequence(folder, tuple(frame_order(names)))


def archive_sequences(archive: Union[str, Path]) -> dict[str, FrameSequence]:
    """Every folder of images inside a tar archive, by its path in the archive.

    Reads tar headers only (a compressed archive is decompressed once, in a
    stream; nothing is written to disk). Folders are returned in name order;
    images directly at the archive's top level form the folder ``""``.

    Raises
    ------
    VideoError
        The archive is missing or cannot be read as a tar archive.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise VideoError(f"{archive}: no such archive")
    members: dict[str, list[tuple[str, int, int]]] = {}
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for info in tar:
                if info.isfile() and is_image_name(info.name):
                    folder = os.path.dirname(info.name.rstrip("/"))
                    members.setdefault(folder, []).append((info.name, info.offset_data, info.size))
    except _ARCHIVE_ERRORS as exc:
        raise VideoError(f"{archive}: cannot be read as a tar archive ({_reason(exc)})") from None
    out = {}
    for folder in sorted(members):
        by_name = {name: (offset, size) for name, offset, size in members[folder]}
        names = frame_order(list(by_name))
        out[folder] = FrameSequence(archive, tuple(names), tuple(by_name[n] for n in names))
    return out


def _reason(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _open_stream(archive: Path):
    """A binary file object over the *uncompressed* tar stream of ``archive``."""
    name = archive.name.lower()
    if name.endswith((".gz", ".tgz")):
        return gzip.open(archive, "rb")
    if name.endswith((".bz2", ".tbz2")):
        return bz2.open(archive, "rb")
    if name.endswith((".xz", ".txz")):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def may_have_alpha(data: bytes) -> bool:
    """Whether the image file ``data`` may hold transparency: a PNG of colour type 4 or 6 (grey or
    colour with alpha) or with a ``tRNS`` chunk before its pixels, or a lossless / extended WebP. Read
    from the header only; other formats (JPEG, BMP) have none."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        color_type = data[25] if len(data) > 25 else 0
        head = data[:data.find(b"IDAT")] if b"IDAT" in data else data
        return color_type in (4, 6) or b"tRNS" in head
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] in (b"VP8L", b"VP8X")


def _decode_image(data: bytes) -> Optional[np.ndarray]:
    """uint8 RGB ``(H, W, 3)`` of an image file's bytes (16 bits per channel: the high byte, as OpenCV
    reads it), an image with transparency composited on black (:func:`ffmask.video.on_black`); None
    when it does not decode."""
    import cv2

    if not data:  # an empty file (an interrupted copy): cv2.imdecode asserts on it
        return None
    buf = np.frombuffer(data, np.uint8)
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        whole = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if arr is not None and may_have_alpha(data) else None
    except cv2.error:
        return None
    if arr is None or arr.size == 0:
        return None
    rgb = np.ascontiguousarray(cv2.cvtColor(arr, cv2.COLOR_BGR2RGB))
    if whole is None or whole.ndim != 3 or whole.shape[2] != 4:
        return rgb
    if whole.shape[:2] != rgb.shape[:2]:
        return None  # the two reads disagree (an orientation tag?): not guessed, an undecodable frame
    from ffmask.video import on_black

    alpha = whole[..., 3] if whole.dtype == np.uint8 else (whole[..., 3] >> 8).astype(np.uint8)
    return on_black(np.dstack([rgb, alpha]))


def _read_bytes(seq: FrameSequence, indices: Sequence[int]) -> dict[int, bytes]:
    """Raw bytes of the wanted frames (absent when unreadable); VideoError if the source is gone."""
    out: dict[int, bytes] = {}
    if not seq.in_archive:
        if not seq.source.is_dir():
            raise VideoError(f"{seq}: no such folder")
        for i in indices:
            try:
                out[i] = (seq.source / seq.frames[i]).read_bytes()
            except OSError:
                continue  # a vanished or unreadable frame is just not decoded
        return out
    if not seq.source.is_file():
        raise VideoError(f"{seq.source}: no such archive")
    try:
        with _open_stream(seq.source) as stream:
            for i in sorted(indices, key=lambda k: seq.offsets[k][0]):  # one forward pass
                offset, size = seq.offsets[i]
                stream.seek(offset)
                data = stream.read(size)
                if len(data) == size:
                    out[i] = data
    except _ARCHIVE_ERRORS:
        pass  # a damaged tail: keep the frames read before it
    return out


def probe(seq: FrameSequence):
    """:class:`ffmask.video.VideoInfo` of a sequence: its frame count and the
    size of its first decodable frame (fps 0: image sequences carry none).

    Raises :class:`VideoError` when the sequence is empty or no frame decodes.
    """
    from ffmask.video import VideoInfo

    if not seq.frames:
        raise VideoError(f"{seq}: holds no image")
    first = _first_frame(seq)
    return VideoInfo(n_frames=len(seq.frames), fps=0.0, width=int(first.shape[1]), height=int(first.shape[0]))


def _first_frame(seq: FrameSequence) -> np.ndarray:
    # Try a few frames: one corrupt file must not make the whole sequence unreadable.
    for start in range(0, len(seq.frames), 8):
        got = _decode_frames(seq, range(start, min(start + 8, len(seq.frames))))
        if got:
            return got[min(got)]
    raise VideoError(f"{seq}: no image could be decoded")


def read_frames(seq: FrameSequence, indices) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` of ``seq``: ``{index: uint8 RGB (H, W, 3)}``.

    Indices past the end, and images that do not decode, are absent. Raises
    :class:`VideoError` when the source is gone or not a single wanted frame
    decodes; ValueError for negative or non-integer indices.
    """
    arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D sequence of integers, got {indices!r}")
    if arr.size and arr.min() < 0:
        raise ValueError("indices must be >= 0")
    wanted = sorted({int(i) for i in arr if i < len(seq.frames)})
    out = _decode_frames(seq, wanted)
    if wanted and not out:
        raise VideoError(f"{seq}: no image could be decoded")
    return out


def _decode_frames(seq: FrameSequence, wanted) -> dict[int, np.ndarray]:
    out = {}
    for i, data in _read_bytes(seq, list(wanted)).items():
        image = _decode_image(data)
        if image is not None:
            out[i] = image
    return dict(sorted(out.items()))
