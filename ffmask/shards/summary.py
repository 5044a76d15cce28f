"""What a run produced: counts, map coverage and manifest outcomes (``ffmask info``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ffmask.errors import FFMaskError
from ffmask.shards.index import SHARD_SUFFIX, find_shards, open_h5, shard_extras, shard_map_kinds
from ffmask.shards.layout import ShardLayout
from ffmask.shards.manifest import MANIFEST_NAME, Manifest, latest, missing_in, ok_shard
from ffmask.shards.writer import TMP_SUFFIX

_BLOCK = 256


class _MapStats:
    """Running statistics of one map over every face that has it."""

    def __init__(self, kind: str):
        self.kind = kind
        self.faces = self.fake_faces = 0
        self.positive = self.fake_positive = 0  # faces with any pixel > 0
        self.total = self.fake_total = 0.0  # sum over faces of the per-face mean value
        self.abs_total = 0.0

    def add(self, block: np.ndarray, labels: np.ndarray) -> None:
        flat = block.reshape(len(block), -1).astype(np.float32)
        fake = labels == 1
        means = flat.mean(axis=1, dtype=np.float64) if flat.shape[1] else np.zeros(len(flat))
        if self.kind == "noise":
            abs_means = np.abs(flat).mean(axis=1, dtype=np.float64)
            self.abs_total += float(abs_means.sum())
            positive = (flat != 0).any(axis=1)
        else:
            positive = (flat > 0).any(axis=1)
        self.faces += len(flat)
        self.fake_faces += int(fake.sum())
        self.positive += int(positive.sum())
        self.fake_positive += int(positive[fake].sum())
        self.total += float(means.sum())
        self.fake_total += float(means[fake].sum())

    def merge(self, other: "_MapStats") -> None:
        """Add the faces counted by ``other`` (another shard's statistics of this map)."""
        for name in ("faces", "fake_faces", "positive", "fake_positive", "total", "fake_total", "abs_total"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def result(self) -> dict:
        def ratio(a, b):
            return a / b if b else None

        out = {"kind": self.kind, "faces": self.faces}
        if self.kind == "mask":
            out["coverage"] = ratio(self.positive, self.faces)
            out["fake_coverage"] = ratio(self.fake_positive, self.fake_faces)
            out["area"] = ratio(self.total, self.faces)
            out["fake_area"] = ratio(self.fake_total, self.fake_faces)
        elif self.kind == "continuous":
            out["coverage"] = ratio(self.positive, self.faces)
            out["fake_coverage"] = ratio(self.fake_positive, self.fake_faces)
            out["mean"] = ratio(self.total, self.faces)
            out["fake_mean"] = ratio(self.fake_total, self.fake_faces)
        else:
            out["mean_abs"] = ratio(self.abs_total, self.faces)
        return out


def summarize_shards(paths) -> dict:
    """Summary of the shards at ``paths`` (a directory, a file or a list).

    Returns a JSON-able dict::

        shards (every *.h5 found, readable or not), bytes, unfinished (count
        of *.h5.tmp files), unreadable: {path: why} (shards that cannot be
        read; none of their faces is in the counts below), faces, videos,
        real, fake, unknown,
        by_manipulation / by_compression / by_split: {value: faces},
        maps: {name: {kind, faces, and for masks coverage (fraction of faces
              with any positive pixel), fake_coverage, area (mean fraction of
              positive pixels), fake_area; for continuous maps coverage,
              mean, fake_mean (mean value); for noise mean_abs}},
        extras: {name: mean value},
        manifest: None or {path, videos, ok, skipped, skipped_by_reason,
                  bad_lines ({manifest path: ["line N is malformed (...)"]}:
                  lines that are not entries, left out of the counts),
                  missing_shards (named by ok lines, not on disk),
                  unlisted_shards ({shard name: {videos, faces,
                  listed_elsewhere}}: readable shards holding videos their
                  directory's manifest does not list as ok in that shard, e.g.
                  a run stopped between renaming the shard into place and
                  appending its lines; listed_elsewhere of them the manifest
                  lists as skipped or in another shard; another_run: None, or
                  {dataset, root} when the shard's own run config is of
                  another run than the run.json beside it, a shard copied in,
                  which a resume keeps),
                  videos_not_in_their_shard ({shard name: [video ids]}: ok
                  lines naming a readable shard that does not hold their
                  video, e.g. a shard replaced by one of other videos),
                  person_changes ({video id: [frame indices]}: ok videos
                  whose face track passes to another person, see
                  ``ffmask.faces.identity``)}.

    Raises FFMaskError for a missing path or when there is no shard; an
    unreadable shard is listed, not raised. Reads every map once, in blocks,
    so memory stays bounded.
    """
    files = find_shards(paths)
    labels_all, strings = [], {k: Counter() for k in ("manipulation", "compression", "split")}
    sizes: Counter = Counter()  # crop side -> faces
    maps: dict[str, _MapStats] = {}
    extras: dict[str, list[float]] = {}
    unreadable: dict[str, str] = {}
    shard_videos: dict[Path, Counter] = {}  # readable shard -> video_id -> faces
    total_bytes = 0
    for path in files:
        total_bytes += path.stat().st_size
        try:
            part = _read_shard(path)
        except _UNREADABLE as exc:
            unreadable[str(path)] = _why_unreadable(exc)
            continue
        labels_all.append(part["labels"])
        for key, counter in strings.items():
            counter.update(part[key])
        sizes.update(part["sizes"])
        shard_videos[path] = part["videos"]
        for name, stats in part["maps"].items():
            maps.setdefault(name, _MapStats(stats.kind)).merge(stats)
        for name, values in part["extras"].items():
            extras.setdefault(name, []).extend(values)
    labels = np.concatenate(labels_all) if labels_all else np.zeros(0, np.int8)
    dirs = list(dict.fromkeys(p.parent for p in files))
    unfinished = sum(1 for d in dirs for _ in d.glob("*" + SHARD_SUFFIX + TMP_SUFFIX))
    return {
        "shards": len(files),
        "bytes": int(total_bytes),
        "unfinished": int(unfinished),
        "unreadable": unreadable,
        "faces": int(len(labels)),
        "videos": len(set().union(*shard_videos.values())),
        "real": int((labels == 0).sum()),
        "fake": int((labels == 1).sum()),
        "unknown": int((labels == -1).sum()),
        "by_manipulation": dict(sorted(strings["manipulation"].items())),
        "by_compression": dict(sorted(strings["compression"].items())),
        "by_split": dict(sorted(strings["split"].items())),
        "by_crop_size": {int(k): int(v) for k, v in sorted(sizes.items())},
        "maps": {name: stats.result() for name, stats in sorted(maps.items())},
        "extras": {name: (float(np.nanmean(v)) if np.isfinite(v).any() else None)
                   for name, v in sorted(extras.items())},
        "manifest": _manifest_summary(dirs, shard_videos),
        "dataset_problems": _dataset_problems(dirs),
    }


#: What reading a damaged or foreign HDF5 file raises (h5py's errors are OSError, KeyError, ...).
_UNREADABLE = (FFMaskError, KeyError, IndexError, OSError, ValueError, TypeError, RuntimeError)


def _why_unreadable(exc: Exception, subject: str = "") -> str:
    """One line: our own error's message, or that of a library error as "not a readable ffmask shard (...)"."""
    if isinstance(exc, FFMaskError):
        return _first_line(exc)
    return f"{subject}not a readable ffmask shard ({_first_line(exc)})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_shard(path: Path) -> dict:
    """Everything the summary counts of one shard, read in full before any of it is counted
    (so a shard that fails half-way adds nothing). Raises what reading it raises."""
    with open_h5(path) as f:
        labels = np.asarray(f["label"][()], dtype=np.int8)
        part: dict = {"labels": labels}
        for key in ("manipulation", "compression", "split"):
            part[key] = Counter(v.decode("utf-8") for v in f[key][()].tolist())
        part["videos"] = Counter(v.decode("utf-8") for v in f["video_id"][()].tolist())
        layout = ShardLayout(f)
        part["sizes"] = Counter({layout.size: layout.n} if layout.n else {})
        part["maps"] = {}
        for name, kind in shard_map_kinds(f).items():
            if kind is None:
                continue
            stats = part["maps"][name] = _MapStats(kind)
            for start in range(0, layout.n, _BLOCK):
                stop = min(layout.n, start + _BLOCK)
                stats.add(layout.maps_block(name, start, stop), labels[start:stop])
        part["extras"] = {name: f[name][()].astype(np.float64).tolist() for name in shard_extras(f)}
    return part


# Written by ``annotate`` beside its shards: what the dataset scan could not use, and why.
DATASET_PROBLEMS_NAME = "dataset_problems.json"


def _dataset_problems(dirs: list[Path]) -> dict | None:
    """{"path", "count", "by_reason": {reason: n}} of the runs' dataset problems, or None if none was recorded."""
    found = [d / DATASET_PROBLEMS_NAME for d in dirs if (d / DATASET_PROBLEMS_NAME).is_file()]
    if not found:
        return None
    reasons: Counter = Counter()
    for path in found:
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            reasons[f"unreadable {path.name}: {exc}"] += 1
            continue
        reasons.update(str(r.get("reason", "?")).split(":", 1)[0] for r in rows if isinstance(r, dict))
    return {"path": ", ".join(str(p) for p in found), "count": sum(reasons.values()),
            "by_reason": dict(reasons.most_common())}


def _load_lenient(path: Path) -> dict[str, dict]:
    """:meth:`Manifest.load` without the malformed lines (which :func:`summary_problems` reports)."""
    return latest(Manifest(path).entries_and_bad_lines()[0])


def _another_run(shard: Path) -> dict | None:
    """``{"dataset", "root"}`` of the run that wrote ``shard`` when its own run config is of another run than
    the run.json beside it records (:func:`ffmask.shards.runconfig.of_this_run`), else None."""
    from ffmask.shards.runconfig import of_this_run, read_run_doc, shard_run_config

    config = shard_run_config(shard)
    if of_this_run(config, read_run_doc(shard.parent)):
        return None
    return {"dataset": config.get("dataset"), "root": config.get("root")}


def _manifest_summary(dirs: list[Path], shard_videos: dict[Path, Counter]) -> dict | None:
    found = [d / MANIFEST_NAME for d in dirs if (d / MANIFEST_NAME).is_file()]
    if not found:
        return None
    entries: dict[str, dict] = {}
    missing: set[str] = set()
    unlisted: dict[str, dict] = {}
    bad_lines: dict[str, list[str]] = {}
    not_held: dict[str, list[str]] = {}
    for path in found:
        readable, bad = Manifest(path).entries_and_bad_lines()
        if bad:  # the rest is still summarised: one bad line must not hide the run
            bad_lines[str(path)] = [f"line {number} {why}" for number, why in bad]
        loaded = latest(readable)
        entries.update(loaded)
        # an ok video whose shard is gone: its faces are not in this summary
        missing.update(missing_in(path.parent, loaded))
        # a shard holding videos this manifest does not list as ok in it: the run stopped
        # between renaming the shard into place and appending its lines (a resume redoes them)
        for shard, videos in shard_videos.items():
            if shard.parent != path.parent:
                continue
            # (an ok line naming no shard, as a hand-made manifest may, is taken to mean this one)
            lacking = {v: n for v, n in videos.items()
                       if not (loaded.get(v, {}).get("status") == "ok"
                               and loaded[v].get("shard", shard.name) == shard.name)}
            if lacking:
                unlisted[shard.name] = {"videos": len(lacking), "faces": int(sum(lacking.values())),
                                        # listed, but skipped or in another shard: not a stopped run
                                        "listed_elsewhere": sum(1 for v in lacking if v in loaded),
                                        # written by another run (copied in): a resume keeps it
                                        "another_run": _another_run(shard)}
            # the reverse: ok lines naming this shard for videos it does not hold (the shard was
            # replaced by one of other videos): their faces are in no shard
            gone = sorted(v for v, e in loaded.items()
                          if ok_shard(e) == shard.name and v not in videos and int(e.get("faces", 1) or 0) > 0)
            if gone:
                not_held[shard.name] = gone
    status = Counter(e.get("status", "?") for e in entries.values())
    reasons = Counter(str(e.get("reason", "")) for e in entries.values() if e.get("status") == "skipped")
    return {
        "path": ", ".join(str(p) for p in found),
        "videos": len(entries),
        "ok": status.get("ok", 0),
        "skipped": status.get("skipped", 0),
        "skipped_by_reason": dict(reasons.most_common()),
        "bad_lines": bad_lines,
        "missing_shards": sorted(missing),
        "unlisted_shards": dict(sorted(unlisted.items())),
        "videos_not_in_their_shard": dict(sorted(not_held.items())),
        # ok videos cutting to another person: faces of several people under one id
        "person_changes": {v: list(e["person_changes"]) for v, e in sorted(entries.items())
                           if e.get("status") == "ok" and e.get("person_changes")},
    }


def summary_problems(paths, summary: dict) -> dict[str, list[str]]:
    """What ``ffmask info`` reports as problems (and exits 1 for): {path: [one line each]}.

    Parameters
    ----------
    paths : path-like or list
        What :func:`summarize_shards` was given.
    summary : dict
        Its result.

    Returns
    -------
    dict
        For each shard failing :func:`~ffmask.shards.schema.validate_shard`
        its schema problems; for a shard that cannot be read, why; for a
        shard the manifest names for ok videos but that is gone (their faces
        are missing from every reader); for a shard holding videos its
        manifest lists as skipped or in another shard (a copy of a shard:
        readers take every shard, so those faces count twice); for a
        manifest, its malformed lines; for a shard the manifest names for
        ok videos it does not hold (replaced by a shard of other videos:
        their faces are lost). A shard holding only videos its
        manifest does not list at all (a run stopped before writing their
        lines, which a resume redoes) is no problem: the summary notes it.
    """
    from ffmask.shards.schema import validate_shard

    files = find_shards(paths)
    problems = {str(p): found for p in files if (found := validate_shard(p))}
    for path, why in summary["unreadable"].items():  # what the schema check passed but reading failed
        problems.setdefault(path, [f"unreadable: {why}"])
    manifest = summary.get("manifest")
    if manifest is None:
        return problems
    for path, lines in manifest.get("bad_lines", {}).items():
        problems.setdefault(path, []).extend(
            f"{line}; the summary leaves it out, and a resume stops at it: fix or delete it" for line in lines)
    for folder in dict.fromkeys(p.parent for p in files):
        if not (folder / MANIFEST_NAME).is_file():
            continue
        for name in sorted(missing_in(folder, _load_lenient(folder / MANIFEST_NAME))):
            problems.setdefault(str(folder / name), []).append(
                "named by the manifest for ok videos but not on disk: their faces are in no summary and no reader; "
                "rerun the annotate command to redo them")
    for name, videos in manifest.get("videos_not_in_their_shard", {}).items():
        where = next((p for p in files if p.name == name), Path(name))
        shown = ", ".join(videos[:3]) + (f" and {len(videos) - 3} more" if len(videos) > 3 else "")
        problems.setdefault(str(where), []).append(
            f"the manifest says {len(videos)} ok video(s) are in it that it does not hold ({shown}): their faces "
            "are in no shard (the shard was replaced by one of other videos)")
    for name, lack in manifest.get("unlisted_shards", {}).items():
        if not lack["listed_elsewhere"]:
            continue
        where = next((p for p in files if p.name == name), Path(name))
        problems.setdefault(str(where), []).append(
            f"holds {lack['videos']} video(s) ({lack['faces']} faces) the manifest does not list there, "
            f"{lack['listed_elsewhere']} of them listed as skipped or in another shard: readers take every shard, "
            "so their faces may count twice (a copy of a shard? move it out of the directory)")
    return problems


_LABEL_NAMES = {0: "real", 1: "fake", -1: "unlabelled"}


def readable_shards(paths) -> tuple[list[Path], dict[str, str]]:
    """Split the shards at ``paths`` into those that open as ffmask shards and those that do not.

    Returns (readable paths in order, {path: why} of the others). A shard is
    readable when HDF5 opens it at a schema version this ffmask reads, it has
    /images and /label, and its image codec and map layouts are known: what
    :class:`~ffmask.shards.index.ShardIndex` checks; its data is not read.
    Raises FFMaskError (naming every shard and why) when none is readable,
    and as :func:`find_shards` does.
    """
    readable, unreadable = [], {}
    for path in find_shards(paths):
        try:
            with open_h5(path) as f:
                if "images" not in f or "label" not in f:
                    raise FFMaskError(f"{path} is not an ffmask shard (no /images or /label)")
                ShardLayout(f)
        except _UNREADABLE as exc:
            unreadable[str(path)] = _why_unreadable(exc, f"{path} is ")
            continue
        readable.append(path)
    if not readable:
        raise FFMaskError(f"no readable shard at {paths}: " + "; ".join(unreadable.values()))
    return readable, unreadable


def common_maps(paths) -> dict[str, str]:
    """map name -> kind for the maps every shard at ``paths`` has (first shard's order)."""
    common: dict[str, str] | None = None
    for path in find_shards(paths):
        with open_h5(path) as f:
            kinds = {k: v for k, v in shard_map_kinds(f).items() if v is not None}
        common = kinds if common is None else {k: v for k, v in common.items() if kinds.get(k) == v}
    return common or {}


def preview_faces(paths, maps=None, *, rows: int = 6, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """Pick up to ``rows`` faces for a contact sheet, shared fairly between real,
    fake and unlabelled faces, at random (``seed``) within each label.

    Returns (faces, map_kinds): faces ordered real, fake, unlabelled, each
    {"image": uint8 (S,S,3), "maps": {name: array}, "title": str}; map_kinds
    name -> kind for ``maps`` (None: every map all shards have).
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int, got {rows!r}")
    from ffmask.shards.index import ShardIndex

    if maps is None:
        maps = list(common_maps(paths))
    index = ShardIndex(paths, maps)
    if len(index) == 0:
        files = [str(p) for p in index.paths]
        named = files[0] if len(files) == 1 else f"{len(files)} shard files ({files[0]}, ...)"
        raise FFMaskError(f"{named}: no faces to preview (an annotate run whose videos all failed or had no face)")
    rng = np.random.default_rng(seed)
    pools = {lab: list(rng.permutation(np.flatnonzero(index.labels == lab)))
             for lab in (0, 1, -1) if (index.labels == lab).any()}
    chosen: dict[int, list[int]] = {lab: [] for lab in pools}
    while len([i for v in chosen.values() for i in v]) < rows and any(pools.values()):
        for lab, pool in pools.items():
            if pool and sum(len(v) for v in chosen.values()) < rows:
                chosen[lab].append(int(pool.pop()))
    faces = []
    for lab in pools:
        for i in sorted(chosen[lab]):
            face = index.read(i)
            manip = f" | {face['manipulation']}" if face["manipulation"] else ""
            face["title"] = f"{_LABEL_NAMES[face['label']]}{manip} | {face['video_id']} #{face['frame_index']}"
            faces.append(face)
    index.close()
    return faces, dict(index.map_kinds)
