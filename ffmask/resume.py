"""Resume: check what a previous run left, then plan only what is not done.

A manifest line says a video is done; the shard holding its faces may since
have been deleted, truncated (a copy cut short, a full disk) or replaced.
Before a rerun skips any video, every shard named by an ``ok`` line is opened
and checked cheaply: it opens, it has this schema version, every per-face
dataset holds exactly the number of faces the manifest counted for it, it
holds exactly those videos' faces, and its last face reads back. A shard
that fails is deleted and the videos that pointed to it are planned again.

A shard file no ``ok`` line names (a run stopped between renaming a shard
and recording it) is deleted too, so no face is read twice
(:func:`remove_unrecorded_shards`). Then only the videos not yet done are
planned (:func:`pending_groups`), into shards numbered after every shard
name the manifest or the folder has ever used (:func:`next_shard_number`):
a video added since, or a group grown by a later download, never replaces
a finished shard.

A video is known by its id, so each manifest entry also records what its
files were (:func:`input_fingerprints`: size, modification time and a hash
of both ends of the video, its original and its mask video) and what the
dataset said of it (label, manipulation, split, original). A done video
whose file was replaced since (a wrong download fixed under the same name, a
truncated one downloaded again), or whose label was fixed, is not done
(:func:`changed_inputs`): a skipped one is planned again, and the shard
holding an ok one is deleted and its videos redone
(:func:`forget_changed_inputs`), never its old faces kept under the new
file's id.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ffmask.sequences import FrameSequence
from ffmask.shards.manifest import ok_shard

# a finished shard, or the tmp file of an attempt at one (``shard-00001.h5.tmp``, or
# ``shard-00001.<pid>-<hex>.h5.tmp``: :func:`ffmask.shards.writer.attempt_tmp_path`)
SHARD_FILE = re.compile(r"shard-(\d+)(?:\.\d+-[0-9a-f]{8})?\.h5(\.tmp)?")


@dataclass(frozen=True)
class BadShard:
    """A shard the manifest relies on that is missing or damaged."""

    name: str
    reason: str
    video_ids: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.reason}: its {len(self.video_ids)} videos are redone"


def check_shard(path: Path, faces: int, maps: Sequence[str], videos: Optional[Mapping[str, int]] = None) -> str:
    """Why the shard at ``path`` cannot hold the ``faces`` records of ``maps``
    a manifest counted for it; ``""`` when it can. Never raises for a bad file.

    ``videos`` (video_id -> faces), when given, must be exactly the faces per
    video that ``/video_id`` holds: a shard replaced by another with as many
    faces (an older ffmask reused a finished shard's name) fails too.
    """
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
            if videos is not None:
                held = Counter(v.decode() if isinstance(v, bytes) else str(v) for v in f["video_id"][:])
                if held != Counter({k: n for k, n in videos.items() if n}):
                    other = sorted(set(held) - set(videos))
                    short = sorted(k for k, n in videos.items() if held.get(k, 0) != n)
                    what = (f"holds video(s) the manifest does not put there ({', '.join(other[:3])})" if other
                            else f"does not hold the faces the manifest counts for {', '.join(short[:3])}")
                    return what
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
    per_video: dict[str, dict[str, int]] = defaultdict(dict)
    for video_id, entry in done.items():
        shard = ok_shard(entry)
        if shard:
            faces[shard] += int(entry.get("faces", 0))
            videos[shard].append(video_id)
            per_video[shard][video_id] = int(entry.get("faces", 0))
    bad = []
    for shard in sorted(faces):
        reason = check_shard(Path(out) / shard, faces[shard], maps, per_video[shard])
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


def recorded_shards(done: Mapping[str, dict]) -> set[str]:
    """The shard names the ``ok`` entries of ``done`` (video_id -> last manifest entry) point at."""
    return {shard for e in done.values() if (shard := ok_shard(e))}


def remove_unrecorded_shards(out: Path, done: Mapping[str, dict], run_config: Optional[dict] = None) -> list[str]:
    """Delete the shard files under ``out`` that no ``ok`` entry of ``done`` names, unless of another run.

    Such a file was renamed into place by a run that stopped before writing
    its manifest lines (or holds faces the manifest has since placed in
    another shard): its videos are not done, so they are planned again, and
    the file would otherwise be read next to their new shard (every reader
    reads every shard of a folder). The caller holds the run lock.

    run_config : this run's config (what its run.json holds), or None. A
        shard whose own run config is of another run
        (:func:`ffmask.shards.runconfig.of_this_run`: another dataset, root
        or options), copied in by hand, is kept: it is not this run's
        leftover, and none of its videos would be redone.

    Returns
    -------
    list of str: one line per file, ``"NAME is in no manifest line ...: deleted, its videos are redone"``, or
    ``"NAME is in no manifest line and was written by another run (...): kept ..."``.
    """
    from ffmask.shards.runconfig import of_this_run, shard_run_config

    keep = recorded_shards(done)
    lines = []
    for path in sorted(Path(out).glob("shard-*.h5")):
        if path.name in keep or not path.is_file():
            continue
        config = shard_run_config(path)
        if not of_this_run(config, run_config):
            lines.append(f"{path.name} is in no manifest line and was written by another run (dataset "
                         f"{config.get('dataset')!r} under {config.get('root')}, or other options): kept, not "
                         "this run's (it is read with this run's shards; move it out of --out if it does not "
                         "belong here)")
            continue
        path.unlink()
        lines.append(f"{path.name} is in no manifest line (a run stopped before recording it): "
                     "deleted, its videos are redone")
    return lines


def next_shard_number(out: Path, entries: Iterable[dict]) -> int:
    """One more than the highest shard number any manifest entry (all of
    ``entries``, superseded ones too) or any ``shard-NNNNN.h5`` / ``.h5.tmp``
    file under ``out`` uses; 0 when there is none. New shards numbered from
    here never take a name a finished shard or a manifest line has."""
    names = [e.get("shard") for e in entries]
    names += [p.name for p in Path(out).glob("shard-*.h5*")]
    numbers = [int(m.group(1)) for n in names if isinstance(n, str) and (m := SHARD_FILE.fullmatch(n))]
    return max(numbers, default=-1) + 1


def pending_groups(groups: Sequence, done: Mapping[str, object]) -> list:
    """The part of ``groups`` (:class:`ffmask.pipeline.Group`) whose videos are not in ``done``.

    Parameters
    ----------
    groups : sequence of Group
        The plan over every item of the run (:func:`ffmask.pipeline.plan_groups`).
    done : mapping
        video_id -> its last manifest entry (ok or skipped: either is done).

    Returns
    -------
    list of Group, in the same order, new objects (``groups`` is not
    changed): done fakes are dropped; a done original that was written is
    kept only to compare its remaining fakes with (``write_original=False``);
    a group with nothing left to write is dropped.
    """
    out = []
    for g in groups:
        items = [i for i in g.items if i.video_id not in done]
        write = g.write_original and g.original is not None and g.original.video_id not in done
        if g.original is None:
            if items:
                out.append(replace(g, items=items))
        elif items or write:
            out.append(replace(g, items=items, write_original=write))
    return out


#: Bytes read at each end of a video file for its fingerprint: enough for a
#: container's header (or its index at the end) and first packets, which any
#: other encode of a video changes.
FINGERPRINT_BYTES = 1 << 16


def file_fingerprint(path) -> Optional[list]:
    """``[size, mtime_ns, hash]`` of the video at ``path``, or None.

    ``path`` is a video file, or a :class:`ffmask.sequences.FrameSequence`.
    For a file (and a sequence's tar archive), ``hash`` is the BLAKE2b
    digest (16 hex digits) of its first and last :data:`FINGERPRINT_BYTES`
    bytes; for a folder of frames, size and time are its frames' total and
    latest, and the hash is of their names and sizes. None for what cannot
    be read.
    """
    try:
        if isinstance(path, FrameSequence) and not path.in_archive:
            stats = _frame_stats(path)
            digest = hashlib.blake2b(digest_size=8)
            for name, st in zip(path.frames, stats):
                digest.update(f"{name}\0{st.st_size}\n".encode("utf-8", "surrogateescape"))
            return [*_folder_stat(stats), digest.hexdigest()]
        stat = _stat(path)
        if stat is None:
            return None
        with open(path.source if isinstance(path, FrameSequence) else path, "rb") as fh:
            digest = hashlib.blake2b(fh.read(FINGERPRINT_BYTES), digest_size=8)
            if stat[0] > FINGERPRINT_BYTES:
                fh.seek(max(FINGERPRINT_BYTES, stat[0] - FINGERPRINT_BYTES))
                digest.update(fh.read(FINGERPRINT_BYTES))
    except OSError:
        return None
    return [*stat, digest.hexdigest()]


def _stat(path) -> Optional[tuple[int, int]]:
    """(size, mtime_ns) of a video file or a sequence's archive; for a folder of frames, their total size and
    latest time. None for what is not a video path. Raises OSError for a file that is gone."""
    if isinstance(path, FrameSequence):
        if not path.in_archive:
            return _folder_stat(_frame_stats(path))
        path = path.source
    if not isinstance(path, (str, Path)):
        return None
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _frame_stats(seq: FrameSequence) -> list:
    """``os.stat`` of each frame of a folder of frames, in order. Raises OSError for a frame that is gone."""
    return [os.stat(seq.source / name) for name in seq.frames]


def _folder_stat(stats: Sequence) -> tuple[int, int]:
    """(total size, latest mtime_ns) of a folder's frames from their ``os.stat`` results."""
    return sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)


def _input_paths(item) -> dict:
    """``{"video", "original", "mask"}`` -> the path (or frame sequence, or None) of a
    :class:`ffmask.datasets.VideoItem`'s files: what a fingerprint covers."""
    return {"video": item.path, "original": item.original.path if item.original is not None else None,
            "mask": item.mask_path}


def _is_video_path(path) -> bool:
    return isinstance(path, (str, Path, FrameSequence))


def input_fingerprints(item, cache: Optional[dict] = None) -> dict:
    """``{"video": fp, "original": fp, "mask": fp}`` of a :class:`ffmask.datasets.VideoItem`'s files
    (:func:`file_fingerprint`; a role without a file is left out). ``cache``: path -> fingerprint,
    so an original compared with many fakes is read once."""
    cache = {} if cache is None else cache
    out = {}
    for role, path in _input_paths(item).items():
        if _is_video_path(path):
            if path not in cache:
                cache[path] = file_fingerprint(path)
            if cache[path] is not None:
                out[role] = cache[path]
    return out


def _unchanged(recorded, path) -> bool:
    """Whether the video at ``path`` is still the one ``recorded`` (a fingerprint) describes: read only
    when its size matches and its modification time does not (a copy that kept the time is trusted)."""
    try:
        stat = _stat(path)
    except OSError:
        return False
    if stat is None or stat[0] != recorded[0]:
        return False
    if stat[1] == recorded[1]:
        return True
    now = file_fingerprint(path)
    return now is not None and now[2] == recorded[2]


def changed_inputs(done: Mapping[str, dict], items: Mapping[str, object]) -> dict[str, str]:
    """The done videos whose files, or what the dataset says of them, changed since their entry was written.

    Parameters
    ----------
    done : mapping
        video_id -> its last manifest entry: its ``label``, ``manipulation``,
        ``split`` and ``original_id`` are compared with the item's, its
        ``files`` with :func:`file_fingerprint` of the item's files now (what
        an entry lacks, e.g. an older ffmask's, is not compared).
    items : mapping
        video_id -> the run's :class:`ffmask.datasets.VideoItem` for it now;
        videos no longer in the scan are not checked.

    Returns
    -------
    dict
        video_id -> what changed (``"its file"``, ``"its original's
        file"``, ``"its mask video"``, ``"its label (1 then, 0 now)"``).
    """
    words = {"video": "its file", "original": "its original's file", "mask": "its mask video"}
    changed = {}
    for video_id, entry in done.items():
        item = items.get(video_id)
        if item is None:
            continue
        # what the dataset says of it (a label fixed in labels.csv): recorded in every face of its shard
        said = {"label": item.label, "manipulation": item.manipulation, "split": item.split,
                "original_id": item.original_id}
        differs = [k for k, now in said.items() if k in entry and entry[k] != now]
        if differs:
            k = differs[0]
            changed[video_id] = f"its {k.replace('_', ' ')} ({entry[k]!r} then, {said[k]!r} now)"
            continue
        recorded = entry.get("files")
        if not isinstance(recorded, dict):
            continue
        for role, path in _input_paths(item).items():
            had = recorded.get(role)
            if had is None and not _is_video_path(path):
                continue
            if not (isinstance(had, list) and len(had) == 3 and _unchanged(had, path)):
                changed[video_id] = words[role]
                break
    return changed


def forget_changed_inputs(done: dict, changed: Mapping[str, str]) -> tuple[list[BadShard], list[str]]:
    """Plan the videos of ``changed`` (:func:`changed_inputs`) again: ``(shards, lines)``.

    A skipped video is dropped from ``done``; an ok one's shard is a
    :class:`BadShard` (deleted with :func:`forget_bad_shards` by the
    caller: a shard is written whole, so all its videos are redone).
    ``lines`` say what was done for the skipped ones.
    """
    lines = []
    shards: dict[str, list[str]] = defaultdict(list)
    for video_id, what in sorted(changed.items()):
        shard = ok_shard(done[video_id])
        if shard:
            shards[shard].append(f"{video_id}: {what}")
        else:
            entry = done[video_id]
            was = f"skipped ({entry.get('reason', '')})" if entry.get("status") == "skipped" else "done with no face"
            lines.append(f"{video_id} was {was} and {what} changed since: redone")
            done.pop(video_id)
    bad = []
    for shard, which in sorted(shards.items()):
        videos = tuple(v for v, e in done.items() if ok_shard(e) == shard)
        bad.append(BadShard(shard, f"holds videos that changed since they were annotated "
                                   f"({', '.join(which[:3])}{' ...' if len(which) > 3 else ''})", videos))
    return bad, lines
