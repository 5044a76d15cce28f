"""DFDC Preview (DFDCP): the 2019 preview release of the DFDC.

Layout under ROOT::

    dataset.json
    original_videos/<id>/<name>.mp4
    method_A/<id>/<...>/<name>.mp4
    method_B/<id>/<...>/<name>.mp4

``dataset.json`` maps each video's path relative to ROOT to
``{"label": "real"|"fake", "set": "train"|"test", ...}``. It names no
original for a fake, so items are unpaired: use single-image methods
(noise, focus, fam), or comparison methods skip the fakes with "missing original".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ffmask.datasets.base import RepeatedEntry, VideoItem, json_object_keeping_repeats, label_from
from ffmask.datasets.registry import VIDEO_EXTENSIONS, DatasetError, DatasetScan, listed_but_absent
from ffmask.errors import FFMaskError

DATASET_JSON = "dataset.json"
SPLITS = ("train", "test", "all")
FOLDERS = {"original_videos": "original", "method_A": "method_A", "method_B": "method_B"}


def scan_dfdcp(root: Union[str, Path], *, split: str = "all") -> DatasetScan:
    """Items of ROOT/dataset.json, in the file's key order sorted by path.

    split : "train", "test" or "all" (the entries' "set").

    video_id is the path relative to ROOT without extension; manipulation is
    "original" for ``original_videos/`` and the method folder's name
    otherwise. Problems, each skipping its entry: a label other than
    real/fake, a "set" other than train/test, a file that is missing, a path
    outside the three folders or climbing out of its folder (``..``), keys
    naming one file (``original_videos//1/a.mp4`` beside
    ``original_videos/1/a.mp4``) with different entries (each skipped; with
    the same entry it is read once), a key the file repeats with different
    entries, a label contradicting its folder; and a
    video under the three folders that the file does not name. Empty and
    ``.`` path parts are dropped (``./original_videos/...`` is read). A missing
    or unreadable dataset.json raises FFMaskError (nothing says what the
    videos are).
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"dfdcp split must be one of {SPLITS}, got {split!r}")
    meta = root / DATASET_JSON
    if not meta.is_file():
        raise FFMaskError(f"{meta} not found; is {root} the DFDC preview (it holds dataset.json, "
                          "original_videos/, method_A/, method_B/)?")
    try:
        # utf-8-sig: a BOM (a Windows editor) is no error; a repeated key is never silently its last entry
        data = json_object_keeping_repeats(meta.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise FFMaskError(f"cannot read {meta}: {exc}") from None
    if not isinstance(data, dict):
        raise FFMaskError(f"{meta} must be a JSON object of relative path -> {{label, set}}")
    scan = DatasetScan()
    for folder in FOLDERS:
        if not (root / folder).is_dir():
            scan.problem(folder, "folder missing")
    spellings: dict[str, list[str]] = {}  # canonical key -> the keys of dataset.json naming that file
    for rel in data:
        spellings.setdefault(_normal(rel), []).append(rel)
    for rel in sorted(data):
        info = data[rel]
        if isinstance(info, RepeatedEntry):  # a merged or hand-edited file: which entry is right?
            scan.problem(rel, f"{DATASET_JSON}: {info}; skipped")
            continue
        if ".." in rel.replace("\\", "/").split("/"):
            # "original_videos/../method_A/x.mp4" labelled real would annotate a fake as real
            scan.problem(rel, f"{DATASET_JSON}: a path that climbs out of its folder ('..'); skipped")
            continue
        key = _normal(rel)  # "original_videos//1/./a.mp4" is the file "original_videos/1/a.mp4"
        # Spellings of one file with different entries: the registry's same-file guard sees only the items
        # of the asked split, so a key in train and its other spelling in test is caught here, on the
        # entries; spellings alike give identical items, which the guard reads once.
        others = [r for r in spellings[key] if r != rel and data[r] != info]
        if others:
            scan.problem(rel, f"{DATASET_JSON}: names the same file as {others[0]!r} with another entry "
                         f"({info!r}, there {data[others[0]]!r}); skipped")
            continue
        video_id = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
        top = key.split("/", 1)[0]
        label = label_from(info.get("label")) if isinstance(info, dict) else None
        item_split = info.get("set") if isinstance(info, dict) else None
        if label is None:
            got = f"label {info.get('label')!r}" if isinstance(info, dict) else f"{info!r} instead of an object"
            scan.problem(video_id, f"{DATASET_JSON}: needs {{\"label\": \"real\" or \"fake\"}}, got {got}; skipped")
        elif item_split not in ("train", "test"):
            scan.problem(video_id, f"{DATASET_JSON}: set must be train or test, got {item_split!r}; skipped")
        elif top not in FOLDERS:
            scan.problem(video_id, f"not under {', '.join(FOLDERS)}; skipped")
        elif (label == 0) != (top == "original_videos"):
            scan.problem(video_id, f"label {info['label']!r} contradicts its folder {top}/; skipped")
        elif not (root / key).is_file():
            scan.problem(video_id, listed_but_absent(DATASET_JSON, key, root / key))
        elif split in ("all", item_split):
            scan.items.append(VideoItem(video_id=video_id, path=root / key, label=label,
                                        manipulation=FOLDERS[top], split=item_split))
    _report_unlisted(root, {_normal(rel) for rel in data}, scan)
    return scan


def _normal(rel: str) -> str:
    return "/".join(q for q in rel.replace("\\", "/").split("/") if q not in ("", "."))


def _report_unlisted(root: Path, listed: set, scan: DatasetScan) -> None:
    """A video under the three folders that dataset.json does not name has no label: a problem, like DFDC's
    "not listed in metadata.json", never a silent omission."""
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                    continue
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                if rel not in listed:
                    scan.problem(rel.rsplit(".", 1)[0], f"not listed in {DATASET_JSON}; skipped")
