"""What a dataset item is: a description of one video, never its pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ffmask.sequences import FrameSequence


@dataclass(frozen=True)
class VideoItem:
    """One video to annotate.

    video_id: unique within the run, e.g. ``"Deepfakes/000_003"`` or ``"youtube/000"``.
    label: 0 real, 1 fake, -1 unknown (unlabelled ``folder`` videos).
    original: the real video this fake was made from (paired datasets), or None.
    mask_path: FF++-style mask video (white = manipulated), or None.
    path: a video file, or a :class:`ffmask.sequences.FrameSequence` (frames
    stored as images, in a folder or a tar archive); ``ffmask.video`` reads both.
    may_cut: the video may be edited, cutting between shots and so possibly
    to another person framed where the last one was (downloaded internet
    videos). Its scanner says so; annotate then checks that the face track
    stays one person (:mod:`ffmask.faces.identity`) and records where it
    does not. Single-shot clips (FF++ originals, DFDC) leave it False and
    pay nothing.
    """

    video_id: str
    path: Union[Path, FrameSequence]
    label: int
    manipulation: str = ""
    compression: str = ""
    split: str = ""
    original: Optional["VideoItem"] = None
    mask_path: Optional[Path] = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    may_cut: bool = False

    @property
    def original_id(self) -> str:
        return self.original.video_id if self.original is not None else ""

    @property
    def is_paired(self) -> bool:
        return self.original is not None


@dataclass(frozen=True)
class DatasetProblem:
    """Something about the dataset tree that the run must report (and skip), not die on."""

    where: str
    reason: str


_LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "fake": 1}


def label_from(value) -> Optional[int]:
    """0 (real) or 1 (fake) from 0/1, "0"/"1", "real"/"fake" (any case, spaces
    ignored); None for anything else, which callers record as a problem."""
    if isinstance(value, bool):
        return None
    return _LABEL_WORDS.get(str(value).strip().lower())


@dataclass(frozen=True)
class RepeatedEntry:
    """The value of a JSON key a list file gives more than once, with different values."""

    values: tuple

    def __str__(self) -> str:
        return f"given {len(self.values)} times with different entries ({', '.join(map(repr, self.values))})"


def json_object_keeping_repeats(text: str):
    """``json.loads(text)``, but a key an object repeats is never silently the last one.

    A key repeated with one value is read once; with different values, its
    value is a :class:`RepeatedEntry` holding all of them (the scanner skips
    it with a problem: which label is right cannot be told). Raises
    ValueError for text that is not JSON, like ``json.loads``.
    """
    import json

    def pairs(items):
        out: dict = {}
        for key, value in items:
            if key not in out:
                out[key] = value
            elif isinstance(out[key], RepeatedEntry):
                if value not in out[key].values:
                    out[key] = RepeatedEntry((*out[key].values, value))
            elif out[key] != value:
                out[key] = RepeatedEntry((out[key], value))
        return out

    return json.loads(text, object_pairs_hook=pairs)
