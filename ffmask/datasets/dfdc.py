"""DFDC (Deepfake Detection Challenge) training parts.

Each part folder holds videos and a ``metadata.json``::

    {"aaqaifqrwn.mp4": {"label": "FAKE", "split": "train", "original": "vpmyeepbep.mp4"},
     "vpmyeepbep.mp4": {"label": "REAL", "split": "train", "original": null}}

ROOT is a part folder or a folder of parts (``dfdc_train_part_0/`` ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from ffmask.datasets.base import VideoItem
from ffmask.datasets.registry import DatasetScan
from ffmask.errors import FFMaskError

METADATA = "metadata.json"


def scan_dfdc(root: Union[str, Path], *, split: str = "all") -> DatasetScan:
    """Items of every ``metadata.json`` at ROOT or one level below.

    split : "all" or a value of the metadata's "split" field (e.g. "train").
    video_id is "<part>/<stem>" ("<stem>" for a metadata.json at ROOT).
    Reals: label 0, manipulation "original". Fakes: label 1, manipulation
    "DFDC", ``original`` the real item named by "original" (looked up in the
    same part first, then in any part); a missing original leaves
    ``original=None`` with a problem. Entries whose file is missing or whose
    label is not REAL/FAKE are problems and skipped.
    """
    root = Path(root)
    if not isinstance(split, str) or not split:
        raise FFMaskError(f"dfdc split must be 'all' or a split name, got {split!r}")
    files = [root / METADATA] if (root / METADATA).is_file() else []
    files += sorted(p / METADATA for p in root.iterdir() if p.is_dir() and (p / METADATA).is_file())
    if not files:
        raise FFMaskError(f"no {METADATA} in {root} or its sub-folders; is this a DFDC part folder?")
    scan = DatasetScan()
    entries = []  # (part folder, file name, info)
    for meta in files:
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FFMaskError(f"cannot read {meta}: {exc}") from exc
        if not isinstance(data, dict):
            raise FFMaskError(f"{meta} must be a JSON object of file name -> info")
        for name in sorted(data):
            entries.append((meta.parent, name, data[name]))

    reals: dict[tuple[Path, str], VideoItem] = {}
    fakes = []
    for folder, name, info in entries:
        prefix = "" if folder == root else folder.name + "/"
        video_id = prefix + Path(name).stem
        path = folder / name
        if not isinstance(info, dict) or str(info.get("label", "")).upper() not in ("REAL", "FAKE"):
            scan.problem(video_id, f"metadata label must be REAL or FAKE, got {info!r}; skipped")
            continue
        if not path.is_file():
            scan.problem(video_id, f"listed in {METADATA} but {path.name} is missing; skipped")
            continue
        item_split = str(info.get("split") or "")
        if str(info["label"]).upper() == "REAL":
            item = VideoItem(video_id=video_id, path=path, label=0, manipulation="original", split=item_split)
            reals[(folder, name)] = item
            if split in ("all", item_split):
                scan.items.append(item)
        elif split in ("all", item_split):
            fakes.append((folder, name, info, video_id, path, item_split))

    by_name: dict[str, VideoItem] = {}
    for (folder, name), item in reals.items():
        by_name.setdefault(name, item)
    for folder, name, info, video_id, path, item_split in fakes:
        original_name = info.get("original")
        original = None
        if original_name:
            original = reals.get((folder, original_name)) or by_name.get(original_name)
        if original is None:
            scan.problem(video_id, f"original {original_name!r} not found; kept with original=None")
        scan.items.append(VideoItem(video_id=video_id, path=path, label=1, manipulation="DFDC",
                                    split=item_split, original=original))
    return scan
