"""WildDeepfake (deepfake in the wild): face sequences packed in tar archives.

Layout under ROOT::

    real_train/1.tar.gz  real_train/2.tar.gz ...
    real_test/ ...   fake_train/ ...   fake_test/ ...

Each archive holds folders of face crops, one folder per face sequence,
frames named by number (``.../7/0.png``, ``.../7/1.png`` ...). Sequence
folder names repeat across archives, so a video id is
``<split folder>/<archive>/<sequence>``, e.g. ``fake_train/3/7``
(the sequence's path inside the archive, without a leading folder named
like the archive itself). Frames are read straight from the archives
(:mod:`ffmask.sequences`); an already extracted archive (a folder instead of
``N.tar.gz``) is read the same way.

The frames are already face crops: annotate them with ``--detector none``
(the whole frame is the face, resized to ``--size``). There are no
originals, so only single-image methods apply (noise, focus, fam).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ffmask.datasets.base import VideoItem
from ffmask.datasets.registry import DatasetError, DatasetScan, relative_name
from ffmask.errors import FFMaskError, VideoError
from ffmask.sequences import (ARCHIVE_SUFFIXES, archive_sequences, folder_sequence, frame_order,
                              numbering_clash_reason)

SPLITS = ("train", "test", "all")
FOLDERS = {"real_train": (0, "train"), "real_test": (0, "test"), "fake_train": (1, "train"), "fake_test": (1, "test")}
MANIPULATION = {0: "original", 1: "WildDeepfake"}


def scan_wdf(root: Union[str, Path], *, split: str = "all") -> DatasetScan:
    """Items (one per face sequence) of a WildDeepfake download.

    split : "train", "test" or "all".

    Each item's ``path`` is a :class:`ffmask.sequences.FrameSequence`;
    label 0 (``real_*``) or 1 (``fake_*``), manipulation "original" or
    "WildDeepfake". Problems: a missing split folder, an unreadable archive
    or one without image folders (skipped), any other file or folder in a
    split folder (skipped), images under a folder path holding ``..`` inside
    an archive (``../x.png``: skipped, the archive's other folders kept), a sequence whose frame names
    number a frame twice (``a_0.png`` beside ``b_0.png``, ``0.png`` beside ``0.jpg``:
    :func:`ffmask.sequences.numbering_clash`; skipped). No split folder at ROOT (nor in its one
    sub-folder that has them, e.g. ``deepfake_in_the_wild/``) raises FFMaskError.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"wdf split must be one of {SPLITS}, got {split!r}")
    if not _has_split_folders(root):
        # The download unpacks to one wrapper folder (deepfake_in_the_wild/): look inside it.
        inside = [p for p in sorted(root.iterdir()) if p.is_dir() and _has_split_folders(p)]
        if len(inside) != 1:
            raise FFMaskError(f"{root} does not look like WildDeepfake: none of {', '.join(FOLDERS)} is there")
        root = inside[0]
    scan = DatasetScan()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # a misspelt "fake-train/" holding archives must not vanish behind "fake_train: folder missing"
        if folder.name not in FOLDERS and any(archive_stem(p.name) for p in folder.iterdir() if p.is_file()):
            scan.problem(folder.name + "/", f"not a WildDeepfake folder (names are case-sensitive: "
                         f"{', '.join(FOLDERS)}); its archives are not read")
    seen: dict[str, str] = {}  # video_id -> where it came from
    for name, (label, item_split) in FOLDERS.items():
        if split not in ("all", item_split):
            continue
        folder = root / name
        if not folder.is_dir():
            scan.problem(name, "folder missing")
            continue
        entries = {p.name: p for p in folder.iterdir() if not p.name.startswith(".")}
        for entry in frame_order(list(entries)):
            path = entries[entry]
            stem = archive_stem(entry)
            if path.is_file() and stem is not None:
                sequences = _archive(path, root, scan)
            elif path.is_dir():
                sequences = _extracted(path)
                stem = stem or entry  # "3.tar.gz/" extracted under the archive's name is archive 3
            else:
                scan.problem(relative_name(path, root), "not a tar archive of face sequences; skipped")
                continue
            if sequences == {}:
                scan.problem(relative_name(path, root), "holds no folder of images; skipped")
            for inner, seq in (sequences or {}).items():
                if ".." in inner.split("/"):  # a crafted or broken archive: "../x.png" names no sequence
                    scan.problem(f"{relative_name(path, root)}::{inner}/",
                                 "a folder path that climbs out of the archive ('..'); skipped")
                    continue
                video_id = "/".join(p for p in (name, stem, _sequence_name(inner, stem)) if p)
                if video_id in seen:  # e.g. 3.tar.gz beside its extracted copy 3/
                    scan.problem(video_id, f"also in {seen[video_id]}; the copy in {relative_name(path, root)} "
                                 "is skipped")
                    continue
                seen[video_id] = relative_name(path, root)
                reason = numbering_clash_reason(seq.frames)
                if reason is not None:
                    # read in name order, two videos' frames in one folder would be one video of both
                    scan.problem(video_id, reason)
                    continue
                scan.items.append(VideoItem(video_id=video_id, path=seq, label=label,
                                            manipulation=MANIPULATION[label], split=item_split))
    return scan


def _has_split_folders(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in FOLDERS)


def archive_stem(name: str):
    """``"3"`` for ``"3.tar.gz"`` (any of ARCHIVE_SUFFIXES, any case); None when not an archive name."""
    lower = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _archive(path: Path, root: Path, scan: DatasetScan) -> Optional[dict]:
    """The archive's sequences; None (and a problem) when it cannot be read."""
    try:
        return archive_sequences(path)
    except VideoError as exc:
        scan.problem(relative_name(path, root), f"{exc}; skipped")
        return None


def _extracted(folder: Path) -> dict:
    """Folders of images under ``folder`` by their path relative to it ("" for itself)."""
    out = {}
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        seq = folder_sequence(dirpath)
        if seq is not None:
            rel = Path(dirpath).relative_to(folder).as_posix()
            out["" if rel == "." else rel] = seq
    return dict(sorted(out.items()))


def _sequence_name(inner: str, stem: str) -> str:
    # "3/7" inside 3.tar.gz is sequence "7": the archive's own folder adds nothing.
    parts = [p for p in inner.split("/") if p and p != "."]
    if len(parts) > 1 and parts[0] == stem:
        parts = parts[1:]
    return "/".join(parts)
