"""Dataset names -> scanners, and what a scan returns."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from ffmask.datasets.base import DatasetProblem, VideoItem
from ffmask.errors import FFMaskError


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class DatasetError(FFMaskError, ValueError):
    """A bad dataset name or option: a user error (FFMaskError) and a bad value (ValueError)."""


@dataclass
class DatasetScan:
    """What a dataset scan found: the items to annotate, in a deterministic
    order, and the problems to report (each also skipped or degraded, never fatal)."""

    items: list[VideoItem] = field(default_factory=list)
    problems: list[DatasetProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(DatasetProblem(where=where, reason=reason))


def _scanners() -> dict[str, Callable[..., DatasetScan]]:
    from ffmask.datasets import celebdf, dfdc, ffpp, folder

    return {
        "ff++": ffpp.scan_ffpp,
        "folder": folder.scan_folder,
        "celeb-df": celebdf.scan_celebdf,
        "dfdc": dfdc.scan_dfdc,
    }


DATASETS: tuple[str, ...] = ("ff++", "folder", "celeb-df", "dfdc")
ALIASES = {"ffpp": "ff++", "faceforensics": "ff++", "faceforensics++": "ff++", "celebdf": "celeb-df",
           "celeb-df-v2": "celeb-df"}


def get_dataset(name: str, root: Union[str, Path], **options) -> DatasetScan:
    """Scan the dataset ``name`` (one of ``DATASETS``) at ``root``.

    ``options`` are the scanner's keyword options (see each scanner:
    :func:`ffmask.datasets.ffpp.scan_ffpp`, ``folder.scan_folder``,
    ``celebdf.scan_celebdf``, ``dfdc.scan_dfdc``). An unknown name or option
    raises :class:`DatasetError` (a ValueError and an FFMaskError) listing
    the valid ones; a missing root raises FFMaskError.
    """
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a str, got {name!r}")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    scanners = _scanners()
    if key not in scanners:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FFMaskError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise FFMaskError(f"dataset root is not a directory: {root}")
    scanner = scanners[key]
    params = inspect.signature(scanner).parameters
    accepted = [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"dataset {key!r} has no option(s) {unknown}; its options are: {', '.join(accepted)}")
    return scanner(root, **options)


def listdir_videos(directory: Path, extensions=VIDEO_EXTENSIONS) -> list[Path]:
    """Video files directly in ``directory`` (sorted by name; hidden files skipped)."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir()
        if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file()
    )
