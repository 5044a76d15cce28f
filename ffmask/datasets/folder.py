"""Any directory of videos: unpaired, optionally labelled.

Every video under ROOT (recursively; mp4, avi, mov, mkv, webm; hidden files
and folders skipped) is one item with ``video_id`` its path relative to ROOT
without the extension (``"clips/a"`` for ``ROOT/clips/a.mp4``) and no
original. Labels come from an optional file:

- JSON: ``{"clips/a.mp4": "fake", "b": 0, ...}``
- CSV: rows ``path,label`` (an optional header row is recognised).

Keys are paths relative to ROOT, with or without the extension. Labels are
0/1 or "real"/"fake" (any case). Unlabelled videos get label -1.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Optional, Union

from ffmask.datasets.base import VideoItem
from ffmask.datasets.registry import VIDEO_EXTENSIONS, DatasetError, DatasetScan
from ffmask.errors import FFMaskError

_LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "fake": 1}
_HEADER_WORDS = {"label", "labels", "class", "target", "is_fake"}


def scan_folder(
    root: Union[str, Path],
    *,
    labels: Optional[Union[str, Path]] = None,
    compression: str = "",
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> DatasetScan:
    """Items for the videos under ``root``.

    labels : optional CSV or JSON labels file (a relative path that does not
        exist from the working directory is also tried under ``root``).
    compression : recorded on every item ("c23", "c40", ...); it picks the
        noise σ. "" means unknown.
    extensions : file suffixes counted as videos (case-insensitive).

    Problems: a labels entry naming no video; a video the labels file does
    not cover (label -1); two videos with the same id (``a.mp4`` and
    ``a.avi``; the second is skipped). No video at all raises FFMaskError.
    """
    root = Path(root)
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not isinstance(compression, str):
        raise DatasetError(f"compression must be a str, got {compression!r}")
    scan = DatasetScan()
    videos = _walk_videos(root, extensions)
    if not videos:
        raise FFMaskError(f"no videos ({', '.join(extensions)}) under {root}")

    label_map, labels_path = ({}, None)
    if labels is not None:
        labels_path = _resolve_labels_path(Path(labels), root)
        label_map = read_labels(labels_path)
    used_keys: set[str] = set()
    seen: dict[str, Path] = {}
    for path in videos:
        rel = path.relative_to(root).as_posix()
        video_id = rel[: -len(path.suffix)] if path.suffix else rel
        if video_id in seen:
            scan.problem(rel, f"same video id as {seen[video_id].relative_to(root).as_posix()}; skipped")
            continue
        seen[video_id] = path
        label = -1
        for key in (rel, video_id):
            if key in label_map:
                label = label_map[key]
                used_keys.add(key)
                break
        if labels_path is not None and label == -1:
            scan.problem(rel, f"no label in {labels_path.name}; label -1 (unknown)")
        scan.items.append(VideoItem(video_id=video_id, path=path, label=label, compression=compression))
    for key in sorted(set(label_map) - used_keys):
        scan.problem(key, f"listed in {labels_path.name} but no such video under {root}")
    return scan


def _walk_videos(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    found = []
    visited = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _resolve_labels_path(path: Path, root: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    raise FFMaskError(f"labels file not found: {path}")


def parse_label(value, where: str) -> int:
    """0 or 1 from 0/1, "0"/"1", "real"/"fake" (any case); FFMaskError naming ``where`` otherwise."""
    if isinstance(value, bool):
        raise FFMaskError(f"{where}: label must be 0/1 or real/fake, got {value!r}")
    key = str(value).strip().lower()
    if key not in _LABEL_WORDS:
        raise FFMaskError(f"{where}: label must be 0/1 or real/fake, got {value!r}")
    return _LABEL_WORDS[key]


def read_labels(path: Path) -> dict[str, int]:
    """relative path (as written, normalised to '/' and no leading './') -> 0/1."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FFMaskError(f"cannot read labels file {path}: {exc}") from exc
    out: dict[str, int] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FFMaskError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise FFMaskError(f"labels file {path} must be a JSON object of path -> label")
        for key, value in data.items():
            out[_norm_key(key)] = parse_label(value, f"{path} [{key!r}]")
        return out
    rows = [r for r in csv.reader(text.splitlines()) if r and r[0].strip() and not r[0].lstrip().startswith("#")]
    for i, row in enumerate(rows):
        if len(row) < 2:
            raise FFMaskError(f"labels file {path}: row {i + 1} needs 'path,label', got {row!r}")
        if i == 0 and row[1].strip().lower() in _HEADER_WORDS:
            continue
        out[_norm_key(row[0])] = parse_label(row[1], f"{path} row {i + 1}")
    return out


def _norm_key(key: str) -> str:
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key
