"""The annotate run's config of a shard: the ``run.json`` beside it, else the copy the shard carries.

Every shard an annotate run writes carries the run's config (what ``run.json`` holds: ``dataset``,
``root``, ``job``, ...) as its ``config`` attribute, so a shard copied without its ``run.json`` still
says what it holds. ``evaluate`` (sources, datasets, crops), ``train`` (through evaluate's helpers) and
``export deepfakebench`` (the dataset name) read it here, one way; an annotate resume and ``info`` tell by
it a shard another run wrote, copied into a run folder (:func:`of_this_run`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ffmask.shards.schema import attr_text

__all__ = ["RUN_NAME", "read_run_doc", "run_dataset", "comparable", "of_this_run", "config_of_open", "shard_run_config",
           "by_shard"]

#: the file an annotate run writes beside its shards
RUN_NAME = "run.json"


def read_run_doc(folder) -> Optional[dict]:
    """The ``run.json`` an annotate run wrote in ``folder`` (its dataset, root, job, ...), or None (none there,
    unreadable, or not a JSON object)."""
    try:
        doc = json.loads((Path(folder) / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def run_dataset(doc: dict) -> Optional[str]:
    """The dataset name (``"ff++"``, ``"folder"``, ...) an annotate run's config ``doc`` records, or None."""
    name = doc.get("dataset")
    return name if isinstance(name, str) else None


def config_of_open(f) -> Optional[dict]:
    """The run config an open shard (``h5py.File``) carries as its ``config`` attribute, or None (no such
    attribute, not JSON, or not a JSON object)."""
    try:
        doc = json.loads(attr_text(f.attrs["config"]))
    except (KeyError, TypeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def shard_run_config(path) -> Optional[dict]:
    """:func:`config_of_open` of the shard file ``path``, or None (unreadable too)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return config_of_open(f)
    except OSError:
        return None


def by_shard(paths: Sequence, value_of: Callable[[dict], Any]) -> list:
    """``value_of`` the annotate run's config of each shard in ``paths``, in order: the run.json beside it
    (read once per folder); where that gives None (shards copied without run.json), the run config the
    shard itself carries (the file is opened only then). ``value_of`` takes a dict ({} when there is no
    config) and returns a value, or None for "not said"; None is the answer when neither says."""
    folders: dict = {}
    out = []
    for p in paths:
        folder = Path(p).parent
        if folder not in folders:
            folders[folder] = value_of(read_run_doc(folder) or {})
        out.append(folders[folder] if folders[folder] is not None else value_of(shard_run_config(p) or {}))
    return out


def comparable(config: dict) -> dict:
    """An annotate run config without what may differ between a run and its resume (``jobs``, ``backend``,
    ``ffmask_version``: they change no record), older spellings brought to today's: two configs are of one
    run when these are equal."""
    out = {k: v for k, v in config.items() if k not in {"jobs", "backend", "ffmask_version"}}
    job = out.get("job")
    if isinstance(job, dict) and any(k.endswith("_checkpoint") for k in job):
        # run.json written before ``checkpoints`` replaced one METHOD_checkpoint key per method
        job = dict(job)
        pairs = {k[:-len("_checkpoint")]: job.pop(k) for k in list(job) if k.endswith("_checkpoint")}
        job.setdefault("checkpoints", sorted([m, p] for m, p in pairs.items() if p is not None))
        out["job"] = job
    if isinstance(job, dict) and "person_check" not in job:
        # run.json written before --person-check: its resume runs with the default (the dataset's choice)
        out["job"] = {**job, "person_check": None}
    return out


def of_this_run(shard_config: Optional[dict], run_config: Optional[dict]) -> bool:
    """Whether a shard carrying ``shard_config`` (:func:`shard_run_config`) may be of the run whose config is
    ``run_config`` (its run.json): True when either is unknown, else whether they are :func:`comparable`-equal
    (False: another run wrote it, with another dataset, root or options)."""
    if shard_config is None or run_config is None:
        return True
    return comparable(shard_config) == comparable(run_config)
