"""Any directory of videos and folders of images: unpaired, optionally labelled.

Every video under ROOT (recursively; mp4, avi, mov, mkv, webm, m4v, mpg,
ts, flv, wmv, 3gp, ...: ``registry.VIDEO_EXTENSIONS``; hidden files and
folders skipped) is one item with ``video_id`` its path relative to ROOT
without the extension (``"clips/a"`` for ``ROOT/clips/a.mp4``) and no
original. Every folder holding images (png, jpg, ...; frames in the order of
the numbers in their names) and no video file is one item too (images beside
videos, such as downloaded thumbnails, or beside folders, such as a cover picture at
the top of a tree, are a problem, not frames), read as a
:class:`ffmask.sequences.FrameSequence`, with ``video_id`` the folder's
path relative to ROOT (ROOT's own name when the images lie directly in it).
Labels come from an optional file (``ROOT/labels.csv`` when none is given):

- JSON: ``{"clips/a.mp4": "fake", "b": 0, ...}``
- CSV: rows ``path,label`` (an optional header row is recognised).

Keys are paths relative to ROOT, with or without the extension. Labels are
0/1 or "real"/"fake" (any case). Unlabelled videos get label -1.

Every item is ``may_cut``: videos of unknown origin may be edited, so
annotate checks that each one's face track stays one person.
"""

from __future__ import annotations

import csv
import json
import os
import unicodedata
from pathlib import Path
from typing import Optional, Union

from ffmask.datasets.base import VideoItem, label_from
from ffmask.datasets.registry import VIDEO_EXTENSIONS, VIDEO_LIKE_DIRECTORY, DatasetError, DatasetScan
from ffmask.errors import FFMaskError
from ffmask.sequences import folder_sequence, is_image_name, numbering_clash_reason

DEFAULT_LABELS = "labels.csv"
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
        exist from the working directory is also tried under ``root``);
        None uses ``ROOT/labels.csv`` when it exists.
    compression : recorded on every item ("c23", "c40", ...); it picks the
        noise σ. "" means unknown.
    extensions : file suffixes counted as videos (case-insensitive).

    Problems: a labels entry naming no video; a video the labels file does
    not cover (label -1); a label that is not 0/1 or real/fake (that video
    is skipped); two videos with the same id (``a.mp4`` and ``a.avi``; the
    second is skipped); a directory named like a video (``017.mp4/``,
    skipped with what it holds). No video at all raises FFMaskError; a
    labels file that is not CSV rows or a JSON object too.
    """
    root = Path(root)
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not isinstance(compression, str):
        raise DatasetError(f"compression must be a str, got {compression!r}")
    scan = DatasetScan()
    videos = _walk(root, extensions, scan)
    if not videos:
        # what was refused says why (a folder of frames numbered twice, thumbnails beside videos)
        why = "; ".join(f"{p.where}: {p.reason}" for p in scan.problems[:3])
        raise FFMaskError(f"no videos ({', '.join(extensions)}) or folders of images under {root}"
                          + (f" ({why})" if why else ""))

    label_map, labels_path = ({}, None)
    if labels is None and (root / DEFAULT_LABELS).is_file():
        labels = root / DEFAULT_LABELS
    if labels is not None:
        labels_path = _resolve_labels_path(Path(labels), root)
        label_map = read_labels(labels_path)
    used_keys: set[str] = set()
    seen: dict[str, str] = {}
    for rel, video_id, source in videos:
        if video_id in seen:
            scan.problem(rel, f"same video id as {seen[video_id]}; skipped")
            continue
        seen[video_id] = rel
        label = -1
        # NFC both sides: a name copied from macOS is decomposed (e + U+0301), as typed it is composed (é)
        keys = [key for key in dict.fromkeys(_nfc(k) for k in (rel, video_id)) if key in label_map]
        used_keys.update(keys)
        given = [label_map[key] for key in keys]
        if any(isinstance(g, ConflictingLabels) for g in given) or len({label_from(g) for g in given}) > 1:
            written = [w for g in given for w in (g.labels if isinstance(g, ConflictingLabels) else (g,))]
            scan.problem(rel, f"{labels_path.name} gives it more than one label ({', '.join(map(repr, written))}); "
                         "skipped")
            continue
        if keys:
            label = label_from(given[0])
        if label is None:
            scan.problem(rel, f"{labels_path.name}: label must be 0/1 or real/fake, got {given[0]!r}; skipped")
            continue
        if labels_path is not None and label == -1:
            scan.problem(rel, f"no label in {labels_path.name}; label -1 (unknown)")
        # any video: downloaded ones are often edited, cutting to another person framed alike
        scan.items.append(VideoItem(video_id=video_id, path=source, label=label, compression=compression,
                                    may_cut=True))
    for key in sorted(set(label_map) - used_keys):
        scan.problem(key, f"listed in {labels_path.name} but no such video under {root}")
    return scan


def _walk(root: Path, extensions: tuple[str, ...], scan: DatasetScan) -> list[tuple]:
    """``(relative path, video_id, path or FrameSequence)`` of every video file
    and every folder of images under ``root``, sorted by relative path."""
    found = []
    visited = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        output = _ffmask_output(filenames, dirnames)
        if output is not None and rel_dir != ".":
            # e.g. --out inside ROOT holding a preview.png, or an export's frame folders:
            # faces ffmask wrote must not come back as videos
            scan.problem(rel_dir + "/", f"an ffmask output directory ({output}); not scanned")
            dirnames[:] = []
            continue
        kept = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            if os.path.splitext(name)[1].lower() in extensions:
                scan.problem((here / name).relative_to(root).as_posix() + "/", VIDEO_LIKE_DIRECTORY)
            else:
                kept.append(name)
        dirnames[:] = kept
        videos_here = 0
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                rel = (here / name).relative_to(root).as_posix()
                found.append((rel, os.path.splitext(rel)[0], here / name))
                videos_here += 1
        images = sum(1 for name in filenames if is_image_name(name))
        folder_id = root.name if rel_dir == "." else rel_dir  # the id a folder of frames here would have
        if images and videos_here:
            # a.mp4 + a.jpg (yt-dlp --write-thumbnail), a cover picture: the pictures of other videos
            # are no video's frames (they were annotated as one video named after the folder)
            scan.problem(folder_id + "/", f"{images} image(s) beside {videos_here} video file(s) (thumbnails?): not read as "
                         "a folder of frames (a folder of frames holds images only); skipped")
            continue
        if images and kept:
            # a cover picture, a preview sheet or a README figure at the top of a tree of videos or frame
            # folders: read as frames, it was a one-frame video named after the folder
            scan.problem(folder_id + "/", f"{images} image(s) beside {len(kept)} folder(s): not read as a folder of frames "
                         "(a folder of frames holds images only, no folders); skipped")
            continue
        sequence = folder_sequence(here) if images else None
        if sequence is not None:
            reason = numbering_clash_reason(sequence.frames)
            if reason is not None:
                # read in name order, two extracted videos would be one (two people, under one id)
                scan.problem(folder_id + "/", reason)
                continue
            found.append((folder_id + "/", folder_id, sequence))
    return sorted(found, key=lambda entry: entry[0])


def _ffmask_output(filenames, dirnames):
    """What marks a directory as written by ffmask (annotate --out, evaluate or bench report, export), or None."""
    names = set(filenames)
    if {"run.json", "manifest.jsonl"} <= names:
        return "run.json and manifest.jsonl of `ffmask annotate`"
    if {"metrics.json", "metrics.md"} <= names:
        return "metrics.json of `ffmask evaluate`"
    if {"masks.json", "masks.md"} <= names:
        return "masks.json of `ffmask bench masks`"
    if "dataset_json" in dirnames:
        return "dataset_json/ of `ffmask export deepfakebench`"
    return None


def _resolve_labels_path(path: Path, root: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    raise FFMaskError(f"labels file not found: {path}")


class ConflictingLabels:
    """The value :func:`read_labels` gives a path listed more than once with
    labels that differ (``labels``: each as written); the scan skips it."""

    def __init__(self, labels):
        self.labels = tuple(labels)

    def __repr__(self) -> str:
        return f"ConflictingLabels({self.labels!r})"


def read_labels(path: Path) -> dict[str, object]:
    """relative path (as written, normalised to '/', no leading './' or
    trailing '/') -> the label as written (parse it with
    :func:`ffmask.datasets.base.label_from`), or a :class:`ConflictingLabels`
    when the file lists the path again with another label. A file that is
    not UTF-8 text, not CSV rows or not a JSON object raises FFMaskError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FFMaskError(f"cannot read labels file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise FFMaskError(f"labels file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "save it as UTF-8") from None
    pairs: list[tuple[str, object]] = []
    if path.suffix.lower() == ".json":
        try:
            # pairs, not a dict: a dict would keep the last of two entries for one path silently
            data = json.loads(text, object_pairs_hook=_JSONPairs)
        except ValueError as exc:
            raise FFMaskError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, _JSONPairs):
            raise FFMaskError(f"labels file {path} must be a JSON object of path -> label")
        pairs = [(key, dict(value) if isinstance(value, _JSONPairs) else value) for key, value in data]
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and r[0].strip() and not r[0].lstrip().startswith("#")]
        for i, row in enumerate(rows):
            if len(row) < 2:
                raise FFMaskError(f"labels file {path}: row {i + 1} needs 'path,label', got {row!r}")
            if i == 0 and row[1].strip().lower() in _HEADER_WORDS:
                continue
            pairs.append((row[0], row[1].strip()))
    out: dict[str, object] = {}
    for key, value in pairs:
        key = _norm_key(key)
        if key not in out:
            out[key] = value
            continue
        before = out[key]
        written = before.labels if isinstance(before, ConflictingLabels) else (before,)
        if label_from(value) != label_from(written[0]) or (label_from(value) is None and value != written[0]):
            out[key] = ConflictingLabels((*written, value))
    return out


class _JSONPairs(list):
    """A JSON object as the list of its (key, value) pairs, repeated keys kept."""


def _nfc(text: str) -> str:
    """``text`` in Unicode normal form C: one spelling of ``é`` whether a disk or an editor decomposed it."""
    return unicodedata.normalize("NFC", text)


def _norm_key(key: str) -> str:
    key = _nfc(key.strip().replace("\\", "/"))
    while key.startswith("./"):
        key = key[2:]
    return key.rstrip("/")
