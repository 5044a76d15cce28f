"""DFDC (Deepfake Detection Challenge): the training parts and the test set.

Each training part folder holds videos and a ``metadata.json``::

    {"aaqaifqrwn.mp4": {"label": "FAKE", "split": "train", "original": "vpmyeepbep.mp4"},
     "vpmyeepbep.mp4": {"label": "REAL", "split": "train", "original": null}}

The test set is a folder of videos (beside its ``labels.csv`` or in a
``videos/`` folder under it) with ``labels.csv`` rows ``filename,label``
(label 1 = fake, 0 = real; REAL/FAKE also read). Test videos have no
original, so they are unpaired (single-image methods, or skipped with
"missing original" by comparison methods).

ROOT is a part folder, the test folder, or a folder of those
(``dfdc_train_part_0/`` ... and e.g. ``test/``). Many DFDC videos show
several people: the pipeline tracks one face per video
(:mod:`ffmask.faces.track`) and the manifest records how many it saw.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Union

from ffmask.datasets.base import RepeatedEntry, VideoItem, json_object_keeping_repeats, label_from
from ffmask.datasets.registry import (
    VIDEO_EXTENSIONS,
    DatasetScan,
    listdir_videos,
    listed_but_absent,
    relative_name,
)
from ffmask.errors import FFMaskError

METADATA = "metadata.json"
TEST_LABELS = "labels.csv"
TEST_SPLIT = "test"


def scan_dfdc(root: Union[str, Path], *, split: str = "all") -> DatasetScan:
    """Items of every ``metadata.json`` and ``labels.csv`` at ROOT or one level below.

    split : "all" or a split name: a value of the metadata's "split" field
        (e.g. "train"), or "test" for the test set's ``labels.csv``.

    video_id is "<folder>/<stem>" ("<stem>" for a file at ROOT). Reals:
    label 0, manipulation "original". Fakes: label 1, manipulation "DFDC",
    ``original`` the real item named by "original" (looked up in the same
    part first, then in any part); a missing original leaves
    ``original=None`` with a problem. Problems, each skipping what it names:
    an entry whose file is missing or whose label is not REAL/FAKE (0/1), an
    entry that is no plain file name (``../other_part/x.mp4``), a video no
    metadata.json lists, a part folder (``dfdc_train_part_*``)
    without metadata.json, an unreadable metadata.json, an "original" that
    is not a file name, a file a ``labels.csv`` or a ``metadata.json`` lists
    twice with different labels or entries (skipped; listed twice alike it
    is annotated once).
    Neither file anywhere raises FFMaskError.
    """
    root = Path(root)
    if not isinstance(split, str) or not split:
        raise FFMaskError(f"dfdc split must be 'all' or a split name, got {split!r}")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    metas = [f / METADATA for f in folders if (f / METADATA).is_file()]
    tests = [f / TEST_LABELS for f in folders if (f / TEST_LABELS).is_file()]
    if not metas and not tests:
        raise FFMaskError(f"no {METADATA} (training parts) or {TEST_LABELS} (test set) in {root} or its "
                          "sub-folders; is this a DFDC download?")
    scan = DatasetScan(paired=True)
    for folder in folders:
        if folder.name.startswith("dfdc_train_part") and not (folder / METADATA).is_file():
            n = len(listdir_videos(folder))
            scan.problem(relative_name(folder, root) + "/", f"no {METADATA}: its {n} videos are unlabelled; skipped")
    _scan_parts(root, metas, split, scan)
    if split in ("all", TEST_SPLIT):
        for labels in tests:
            _scan_test(root, labels, scan)
    return scan


def _prefix(folder: Path, root: Path) -> str:
    return "" if folder == root else folder.name + "/"


def _read_metadata(meta: Path, root: Path, scan: DatasetScan):
    try:
        # utf-8-sig: a BOM (a Windows editor) is no error; a repeated key is never silently its last entry
        data = json_object_keeping_repeats(meta.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        scan.problem(relative_name(meta, root), f"cannot be read ({exc}); its videos are skipped")
        return {}
    if not isinstance(data, dict):
        scan.problem(relative_name(meta, root), "must be a JSON object of file name -> info; its videos are skipped")
        return {}
    return data


def _scan_parts(root: Path, metas: list[Path], split: str, scan: DatasetScan) -> None:
    reals: dict[tuple[Path, str], VideoItem] = {}
    fakes = []
    for meta in metas:
        folder = meta.parent
        data = _read_metadata(meta, root, scan)
        for path in listdir_videos(folder, VIDEO_EXTENSIONS, scan, root):
            if path.name not in data and not (folder / TEST_LABELS).is_file():
                scan.problem(_prefix(folder, root) + path.stem, f"not listed in {METADATA}; skipped")
        for name in sorted(data):
            info = data[name]
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                # "../dfdc_train_part_1/x.mp4" would annotate another part's video a second time
                scan.problem(f"{relative_name(meta, root)}: {name}",
                             "not a file name in the metadata's own folder; skipped")
                continue
            video_id = _prefix(folder, root) + Path(name).stem
            path = folder / name
            if isinstance(info, RepeatedEntry):  # a merged or hand-edited file: which entry is right?
                scan.problem(video_id, f"{METADATA}: {name} {info}; skipped")
                continue
            label = label_from(info.get("label")) if isinstance(info, dict) else None
            if label is None:
                scan.problem(video_id, f"metadata label must be REAL or FAKE, got {info!r}; skipped")
                continue
            if not path.is_file():
                scan.problem(video_id, listed_but_absent(METADATA, path.name, path))
                continue
            item_split = str(info.get("split") or "")
            if label == 0:
                item = VideoItem(video_id=video_id, path=path, label=0, manipulation="original", split=item_split)
                reals[(folder, name)] = item
                if split in ("all", item_split):
                    scan.items.append(item)
            elif split in ("all", item_split):
                fakes.append((folder, info, video_id, path, item_split))

    by_name: dict[str, VideoItem] = {}
    for (folder, name), item in reals.items():
        by_name.setdefault(name, item)
    for folder, info, video_id, path, item_split in fakes:
        original_name = info.get("original")
        original = None
        if isinstance(original_name, str) and original_name:
            original = reals.get((folder, original_name)) or by_name.get(original_name)
        if original is None:
            scan.problem(video_id, f"original {original_name!r} not found; kept with original=None")
        scan.items.append(VideoItem(video_id=video_id, path=path, label=1, manipulation="DFDC",
                                    split=item_split, original=original))


def _scan_test(root: Path, labels: Path, scan: DatasetScan) -> None:
    folder = labels.parent
    where = relative_name(labels, root)
    try:
        rows = list(csv.reader(labels.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        scan.problem(where, f"cannot be read ({exc}); the test set is skipped")
        return
    rows = [r for r in rows if r and r[0].strip()]
    if rows and rows[0][0].strip().lower() == "filename":
        rows = rows[1:]
    video_dir = folder / "videos" if (folder / "videos").is_dir() else folder
    listed = set()
    # A file listed twice with two labels cannot be trusted either way.
    labels_of: dict[str, set] = {}
    for row in rows:
        labels_of.setdefault(row[0].strip(), set()).add(label_from(row[1]) if len(row) > 1 else None)
    for i, row in enumerate(rows):
        name = row[0].strip()
        video_id = _prefix(folder, root) + Path(name).stem
        if name in listed:
            if len(labels_of[name]) == 1:
                continue  # the same row again: nothing to annotate twice
            scan.problem(video_id, f"{where} row {i + 1}: {name} is listed again with another label; skipped")
            continue
        listed.add(name)
        if len(labels_of[name]) > 1:
            continue  # reported at its repeated row
        label = label_from(row[1]) if len(row) > 1 else None
        if label is None:
            scan.problem(video_id, f"{where} row {i + 1}: unknown label {row[1:]!r} (0 real, 1 fake); skipped")
            continue
        path = video_dir / name
        if not path.is_file():
            scan.problem(video_id, listed_but_absent(where, relative_name(path, root), path))
            continue
        scan.items.append(VideoItem(video_id=video_id, path=path, label=label,
                                    manipulation="original" if label == 0 else "DFDC", split=TEST_SPLIT))
    # A folder that also has a metadata.json had its odd directories reported there.
    reporting = None if (video_dir / METADATA).is_file() else scan
    for path in listdir_videos(video_dir, VIDEO_EXTENSIONS, reporting, root):
        if path.name not in listed:
            scan.problem(_prefix(folder, root) + path.stem, f"not listed in {where}; skipped")
