"""What a dataset item is: a description of one video, never its pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class VideoItem:
    """One video to annotate.

    video_id: unique within the run, e.g. ``"Deepfakes/000_003"`` or ``"youtube/000"``.
    label: 0 real, 1 fake, -1 unknown (unlabelled ``folder`` videos).
    original: the real video this fake was made from (paired datasets), or None.
    mask_path: FF++-style mask video (white = manipulated), or None.
    """

    video_id: str
    path: Path
    label: int
    manipulation: str = ""
    compression: str = ""
    split: str = ""
    original: Optional["VideoItem"] = None
    mask_path: Optional[Path] = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

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
