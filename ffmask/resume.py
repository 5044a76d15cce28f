"""Check, on resume, that the shards the manifest names are really there.

A manifest line says a video is done; the shard holding its faces may since
have been deleted, truncated (a copy cut short, a full disk) or replaced.
Before a rerun skips any task, every shard named by an ``ok`` line is opened
and checked cheaply: it opens, it has this schema version, every per-face
dataset holds exactly the number of faces the manifest counted for it, and
its last face reads back. A shard that fails is deleted and the videos that
pointed to it are planned again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


@dataclass(frozen=True)
class BadShard:
    """A shard the manifest relies on that is missing or damaged."""

    name: str
    reason: str
    video_ids: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.reason}: its {len(self.video_ids)} videos are redone"


def check_shard(path: Path, faces: int, maps: Sequence[str]) -> str:
    """Why the shard at ``path`` cannot hold the ``faces`` records of ``maps``
    a manifest counted for it; ``""`` when it can. Never raises for a bad file."""
    import h5py

    from ffmask.shards.schema import FIXED_DATASETS, SCHEMA_VERSION, STRING_FIELDS

    if not path.is_file():
        return "is missing"
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("schema_version")
            if version is None or int(version) != SCHEMA_VERSION:
                return f"has schema_version {version}, expected {SCHEMA_VERSION}"
            names = [*FIXED_DATASETS, *STRING_FIELDS, *(f"maps/{m}" for m in maps)]
            for name in names:
                if name not in f:
                    return f"lacks /{name}"
                if f[name].shape[:1] != (faces,):
                    return f"holds {f[name].shape[0]} records in /{name}, the manifest counts {faces}"
            if faces:
                for name in ("images", *(f"maps/{m}" for m in maps)):
                    f[name][faces - 1]  # the end of the data must read back
    except (OSError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"is unreadable ({first[:160]})"
    return ""


def find_bad_shards(out: Path, done: Mapping[str, dict], maps: Sequence[str]) -> list[BadShard]:
    """The shards named by ``ok`` entries of ``done`` (video_id -> last manifest
    entry) under ``out`` that are missing or do not hold what the entries say."""
    faces: dict[str, int] = defaultdict(int)
    videos: dict[str, list[str]] = defaultdict(list)
    for video_id, entry in done.items():
        shard = entry.get("shard")
        if entry.get("status") == "ok" and isinstance(shard, str) and shard:
            faces[shard] += int(entry.get("faces", 0))
            videos[shard].append(video_id)
    bad = []
    for shard in sorted(faces):
        reason = check_shard(Path(out) / shard, faces[shard], maps)
        if reason:
            bad.append(BadShard(shard, reason, tuple(videos[shard])))
    return bad


def forget_bad_shards(out: Path, done: dict, bad: Sequence[BadShard]) -> None:
    """Delete the damaged shard files and drop their videos from ``done`` so
    the tasks that made them run again."""
    for b in bad:
        if Path(b.name).name == b.name:  # a name from the manifest never leads out of ``out``
            (Path(out) / b.name).unlink(missing_ok=True)
        for video_id in b.video_ids:
            done.pop(video_id, None)
