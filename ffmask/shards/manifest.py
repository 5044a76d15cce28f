"""``manifest.jsonl``: one line per video outcome, so a rerun resumes.

Each line is a JSON object with at least ``video_id``, ``status`` ("ok" or
"skipped") and ``reason`` ("" when ok), plus whatever the run adds (frames,
faces, shard, task...). Appends are a single write followed by fsync, so a
killed run can lose at most the line being written, never an earlier one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

import numpy as np

from ffmask.errors import FFMaskError

MANIFEST_NAME = "manifest.jsonl"
STATUSES = ("ok", "skipped")


class Manifest:
    """The manifest at ``path`` (a file; an existing directory means ``path/manifest.jsonl``)."""

    def __init__(self, path: Union[str, Path]):
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        self.path = path

    def __repr__(self) -> str:
        return f"Manifest({str(self.path)!r})"

    def append_many(self, entries: Iterable[dict]) -> None:
        """Append ``entries`` as JSON lines in one write, then flush and fsync.

        Every entry is checked before anything is written: ``video_id`` a
        non-empty str, ``status`` "ok" or "skipped", ``reason`` a str that is
        empty when ok and non-empty when skipped; otherwise ``ValueError``.
        numpy scalars/arrays and paths are converted to JSON values. A
        partial last line left by a killed run is cut off first, so it never
        ends up glued to a new entry in the middle of the file.
        """
        lines = [_encode(entry, i) for i, entry in enumerate(entries)]
        if not lines:
            return
        blob = "".join(lines).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab+") as fh:
            _drop_partial_line(fh)
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self) -> list[dict]:
        """Every entry in file order. A malformed final line (a killed write)
        is ignored; a malformed line before it raises FFMaskError naming it."""
        entries, bad = self.entries_and_bad_lines()
        if bad:
            number, why = bad[0]
            raise FFMaskError(f"manifest {self.path} line {number} {why}; fix or delete that line to resume")
        return entries

    def entries_and_bad_lines(self) -> tuple[list[dict], list[tuple[int, str]]]:
        """The readable entries in file order, and what is wrong with the others.

        Returns
        -------
        entries : list of dict
            Every line that is a JSON object with a string ``video_id``.
        bad : list of (int, str)
            ``(line number from 1, "is malformed (why): 'the line...'")`` of
            every other non-empty line except the last one (a torn write
            of a killed run, ignored as :meth:`entries` does).

        Raises FFMaskError when the file cannot be read.
        """
        if not self.path.exists():
            return [], []
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise FFMaskError(f"cannot read manifest {self.path}: {exc}") from exc
        lines = text.split("\n")
        # The last non-empty line may be torn; find it to forgive it alone.
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        out, bad = [], []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), str):
                    raise ValueError("not an object with a string video_id")
            except ValueError as exc:
                if i != last:
                    bad.append((i + 1, f"is malformed ({exc}): {line[:120]!r}"))
                continue
            out.append(entry)
        return out, bad

    def load(self) -> dict[str, dict]:
        """video_id -> its LAST entry (a rerun's outcome overrides an earlier one).
        A missing manifest is empty."""
        return latest(self.entries())


def latest(entries: Iterable[dict]) -> dict[str, dict]:
    """video_id -> its last entry among ``entries`` (in file order: a rerun's outcome overrides an earlier one)."""
    return {entry["video_id"]: entry for entry in entries}


def ok_shard(entry: Mapping) -> Optional[str]:
    """The shard file name an ``ok`` entry puts its video's faces in; None for a skipped
    video or an entry that names no shard."""
    shard = entry.get("shard")
    return shard if entry.get("status") == "ok" and isinstance(shard, str) and shard else None


def _encode(entry: dict, index: int) -> str:
    if not isinstance(entry, dict):
        raise ValueError(f"manifest entry {index} must be a dict, got {type(entry).__name__}")
    video_id = entry.get("video_id")
    status = entry.get("status")
    reason = entry.get("reason")
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"manifest entry {index}: video_id must be a non-empty str, got {video_id!r}")
    if status not in STATUSES:
        raise ValueError(f"manifest entry {index} ({video_id}): status must be one of {STATUSES}, got {status!r}")
    if not isinstance(reason, str):
        raise ValueError(f"manifest entry {index} ({video_id}): reason must be a str, got {reason!r}")
    if status == "ok" and reason:
        raise ValueError(f"manifest entry {index} ({video_id}): an ok entry has reason '', got {reason!r}")
    if status == "skipped" and not reason:
        raise ValueError(f"manifest entry {index} ({video_id}): a skipped entry needs a reason")
    try:
        text = json.dumps(entry, ensure_ascii=False, default=_to_json)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"manifest entry {index} ({video_id}) is not JSON-serialisable: {exc}") from exc
    return text + "\n"


def _to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _drop_partial_line(fh) -> None:
    """Truncate ``fh`` (opened ab+) after its last newline if it ends mid-line."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return
    fh.seek(end - 1)
    if fh.read(1) == b"\n":
        return
    pos = end
    step = 4096
    while pos > 0:
        start = max(0, pos - step)
        fh.seek(start)
        chunk = fh.read(pos - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            fh.truncate(start + cut + 1)
            return
        pos = start
    fh.truncate(0)


def missing_in(folder: Path, entries: dict) -> set:
    """Names of the shards that ``folder``'s manifest ``entries`` (:meth:`Manifest.load`) give
    for ok videos but that are not in ``folder``."""
    return {shard for e in entries.values() if (shard := ok_shard(e)) and not (folder / shard).is_file()}


def missing_shards(files) -> list:
    """Shards the ``manifest.jsonl`` beside ``files`` names for ok videos that are not on disk.

    Parameters
    ----------
    files : sequence of path-like
        Shard files of one or more runs (their folders are searched for a
        manifest; a folder without one names nothing).

    Returns
    -------
    list of Path, sorted: each missing shard once. Their videos are in no
    shard that is read, so a report over ``files`` leaves them out.
    """
    missing = set()
    for folder in sorted({Path(f).parent for f in files}):
        if (folder / MANIFEST_NAME).is_file():
            missing.update(folder / name for name in missing_in(folder, Manifest(folder / MANIFEST_NAME).load()))
    return sorted(missing)


def being_written_line(folder, pid, reader: str) -> str:
    """The one line every reader of shards says about a folder another ffmask run still writes.

    folder, pid : a key and value of :func:`shards_being_written`.
    reader : what leaves the later shards out, "training", "export" or
        "evaluation" ("... are not in this export; ...").
    """
    return (f"{folder} is being written by another ffmask run (pid {pid}): shards it finishes from now on are "
            f"not in this {reader}; run it again once that run is done")


def shards_being_written(files) -> dict:
    """Folders of ``files`` whose run lock another ffmask run holds now: {folder: pid}.

    An annotate run still writing there adds shards (and redoes missing
    ones) after a reader has listed them: a report over ``files`` then
    leaves those faces out. (Read from ``/proc/locks``: see
    :func:`ffmask.outdir.lock_holder`; empty where it cannot be read.)
    """
    from ffmask.outdir import lock_holder

    found = {}
    for folder in sorted({Path(f).parent for f in files}):
        pid = lock_holder(folder)
        if pid is not None and pid != str(os.getpid()):
            found[folder] = pid
    return found
