"""Running an annotation: plan tasks, resume, fan out, write shards, summarise.

One task = a chunk of whole groups (an original and its fakes) → one shard
file, written as ``shard-NNNNN.h5.tmp`` and renamed when complete. The parent
process alone appends to ``manifest.jsonl``, after the shard is in place, so
a video is "done" exactly when its manifest line exists: a killed run loses
at most the tasks in flight, and rerunning the same command redoes those
(overwriting their shard names) and nothing else.

Tasks are plain picklable functions run through joblib, so ``backend="dask"``
runs them unchanged on a Dask cluster (with a shared output directory).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask import __version__
from ffmask.errors import FFMaskError
from ffmask.pipeline import Group, JobSpec, annotate_groups, method_spec, plan_groups
from ffmask.shards.schema import SCHEMA_VERSION

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.jsonl"
SHARD_PATTERN = "shard-{:05d}.h5"


@dataclass(frozen=True)
class Task:
    index: int
    groups: tuple  # tuple[Group, ...]

    @property
    def shard_name(self) -> str:
        return SHARD_PATTERN.format(self.index)

    @property
    def video_ids(self) -> list[str]:
        ids = []
        for g in self.groups:
            if g.original is not None and g.write_original:
                ids.append(g.original.video_id)
            ids.extend(i.video_id for i in g.items if i is not g.original)
        return ids


@dataclass
class TaskResult:
    index: int
    shard: Optional[str]
    entries: list[dict]
    faces: int
    seconds: dict[str, float]
    coverage: dict[str, list[float]]  # method -> [sum, n] over fake, real, then unlabelled faces


@dataclass
class AnnotateReport:
    out: Path
    tasks_total: int
    tasks_done_before: int
    videos: Counter = field(default_factory=Counter)  # "ok" / "skipped"
    skip_reasons: Counter = field(default_factory=Counter)
    faces: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    coverage: dict[str, list[float]] = field(default_factory=dict)
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.wall if self.wall > 0 else 0.0


def chunk_groups(groups: Sequence[Group], videos_per_shard: int) -> list[Task]:
    """Pack whole groups into tasks of about ``videos_per_shard`` videos each."""
    if videos_per_shard < 1:
        raise ValueError("videos_per_shard must be >= 1")
    tasks, current, count = [], [], 0
    for g in groups:
        n = len(g.items) + (1 if g.write_original and g.original not in g.items else 0)
        if current and count + n > videos_per_shard:
            tasks.append(Task(len(tasks), tuple(current)))
            current, count = [], 0
        current.append(g)
        count += n
    if current:
        tasks.append(Task(len(tasks), tuple(current)))
    return tasks


def map_kinds(methods: Sequence[str]) -> dict[str, str]:
    return {name: method_spec(name).kind for name in methods}


def _coverage_value(kind: str, arr: np.ndarray) -> float:
    # masks: share of the face marked manipulated; continuous maps: mean value
    if kind == "noise":
        return float(np.abs(arr).mean())
    return float(np.asarray(arr, np.float32).mean())


def run_task(task: Task, spec: JobSpec, out_dir: str, config: dict, threads: int = 1,
             shard_options: Optional[dict] = None) -> TaskResult:
    """Annotate every group of ``task`` and write its shard atomically."""
    import cv2

    from ffmask.shards import ShardWriter

    cv2.setNumThreads(threads)
    kinds = map_kinds(spec.methods)
    entries, seconds = [], defaultdict(float)
    coverage = {m: [0.0, 0, 0.0, 0, 0.0, 0] for m in spec.methods}
    final = Path(out_dir) / task.shard_name
    extras = tuple(e for name in spec.methods for e in method_spec(name).extras)
    faces = 0
    with ShardWriter(final, size=spec.size, maps=kinds, config=config, extras=extras,
                     **(shard_options or {})) as writer:
        for res in annotate_groups(task.groups, spec):
            t0 = time.perf_counter()
            for rec in res.records:
                writer.append(rec)
                slot = {1: 0, 0: 2}.get(int(rec.label), 4)  # fake, real, unlabelled (-1)
                for name, arr in rec.maps.items():
                    coverage[name][slot] += _coverage_value(kinds[name], arr)
                    coverage[name][slot + 1] += 1
            seconds["write"] += time.perf_counter() - t0
            for k, v in res.seconds.items():
                seconds[k] += v
            faces += len(res.records)
            entries.extend(res.entries)
        t0 = time.perf_counter()
        if faces:
            writer.close()
        else:
            writer.abort()
        seconds["write"] += time.perf_counter() - t0
    shard = task.shard_name if faces else None
    for e in entries:
        e["task"] = task.index
        e["shard"] = shard if e["status"] == "ok" else None
    return TaskResult(task.index, shard, entries, faces, dict(seconds), coverage)


SHARD_OPTIONS = ("image_codec", "jpeg_quality", "noise_storage")


def _check_shard_options(options: Optional[dict]) -> dict:
    """The storage choices of a run, checked once in the parent (bad ones are one-line errors)."""
    import tempfile

    from ffmask.shards import ShardWriter

    options = dict(options or {})
    unknown = sorted(set(options) - set(SHARD_OPTIONS))
    if unknown:
        raise FFMaskError(f"unknown shard option(s) {unknown}; valid: {', '.join(SHARD_OPTIONS)}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ShardWriter(Path(tmp) / "check.h5", size=8, maps={}, config={}, **options).abort()
        except ValueError as exc:
            raise FFMaskError(f"bad shard option: {exc}") from None
    return options


def _comparable(config: dict) -> dict:
    # Options that change no record may differ between a run and its resume.
    return {k: v for k, v in config.items() if k not in {"jobs", "backend", "ffmask_version"}}


def _diff_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in set(old) | set(new):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _diff_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def prepare_out_dir(out: Path, config: dict, overwrite: bool) -> None:
    """Create ``out``, or check that it holds a run of the same options."""
    run_file = out / RUN_FILE
    if out.exists() and not out.is_dir():
        raise FFMaskError(f"--out {out} exists and is not a directory")
    if overwrite and out.exists():
        for p in list(out.glob("shard-*.h5")) + list(out.glob("shard-*.h5.tmp")):
            p.unlink()
        for name in (RUN_FILE, MANIFEST_FILE):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text())
        except json.JSONDecodeError as exc:
            raise FFMaskError(f"{run_file} is corrupt ({exc}); use --overwrite") from None
        old, new = _comparable(previous), _comparable(config)
        if old != new:
            changed = sorted(_diff_keys(old, new))
            raise FFMaskError(
                f"{out} holds a run with different options ({', '.join(changed)}); "
                "rerun with the same options to resume, pick another --out, or pass --overwrite"
            )
    elif any(out.glob("shard-*.h5")) or (out / MANIFEST_FILE).exists():
        raise FFMaskError(f"{out} holds shards from an unknown run; pass --overwrite or pick another --out")
    else:
        tmp = run_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, run_file)
    # Shards being written when a previous run died are never valid: drop them.
    for p in out.glob("shard-*.h5.tmp"):
        p.unlink()


def annotate(
    dataset: str,
    root,
    out,
    spec: JobSpec,
    *,
    dataset_options: Optional[dict] = None,
    videos_per_shard: int = 20,
    jobs: int = 1,
    backend: str = "loky",
    overwrite: bool = False,
    limit: Optional[int] = None,
    shard_options: Optional[dict] = None,
    on_progress: Optional[Callable[[TaskResult], None]] = None,
    on_plan: Optional[Callable[[int, int, int], None]] = None,
) -> AnnotateReport:
    """Annotate a dataset into resumable HDF5 shards under ``out``.

    on_plan(videos_todo, tasks_todo, tasks_total) is called once before work
    starts, on_progress(task_result) after each task's shard and manifest
    lines are in place. shard_options are ShardWriter storage choices
    (``image_codec``, ``jpeg_quality``, ``noise_storage``), recorded in run.json.
    """
    from joblib import Parallel, delayed

    from ffmask.datasets import get_dataset
    from ffmask.shards import Manifest

    out = Path(out)
    dataset_options = dict(dataset_options or {})
    methods = list(spec.methods)
    if not methods:
        raise FFMaskError("no --method given")
    try:
        specs = [method_spec(name) for name in methods]
    except ValueError as exc:
        raise FFMaskError(str(exc)) from None
    for m in specs:
        if m.check is not None:
            m.check(spec)  # e.g. a bad checkpoint fails here, once, without loading the model
    if jobs < 1:
        raise FFMaskError("--jobs must be >= 1")
    from ffmask.faces import DETECTORS

    if spec.detector not in DETECTORS:
        raise FFMaskError(f"unknown --detector {spec.detector!r}; choose one of {', '.join(DETECTORS)}")
    if spec.size < 8:
        raise FFMaskError(f"--size must be >= 8 pixels, got {spec.size}")
    if not spec.scale > 0:
        raise FFMaskError(f"--scale must be > 0, got {spec.scale}")

    scan = get_dataset(dataset, root, **dataset_options)
    paired_dataset = any(item.is_paired for item in scan.items) or dataset in {"ff++", "dfdc"}
    needs_original = [m.name for m in specs if m.paired or m.input == "mask_video"]
    if needs_original and not paired_dataset:
        raise FFMaskError(
            f"{', '.join(needs_original)} compare a fake with its original, and dataset "
            f"'{dataset}' has no originals; use single-image methods (noise, focus)"
        )
    items = scan.items[:limit] if limit else scan.items
    if not items:
        raise FFMaskError(f"no videos found for dataset '{dataset}' under {root}")

    config = {
        "dataset": dataset,
        "root": str(Path(root).resolve()),
        "dataset_options": dataset_options,
        "job": asdict(spec),
        "videos_per_shard": videos_per_shard,
        "limit": limit,
        "jobs": jobs,
        "backend": backend,
        "ffmask_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "shards": _check_shard_options(shard_options),
    }
    config = json.loads(json.dumps(config))  # the form run.json holds (tuples become lists)
    prepare_out_dir(out, config, overwrite)
    manifest = Manifest(out / MANIFEST_FILE)
    done = manifest.load()

    tasks = chunk_groups(plan_groups(items, paired=paired_dataset), videos_per_shard)
    todo = [t for t in tasks if not all(v in done for v in t.video_ids)]
    report = AnnotateReport(out=out, tasks_total=len(tasks), tasks_done_before=len(tasks) - len(todo))
    report.problems = [f"{p.where}: {p.reason}" for p in scan.problems]
    if on_plan:
        on_plan(sum(len(t.video_ids) for t in todo), len(todo), len(tasks))

    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.perf_counter()
    if jobs == 1 or len(todo) <= 1:
        results = (run_task(t, spec, str(out), config, threads, shard_options) for t in todo)
    else:
        parallel = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")
        results = parallel(delayed(run_task)(t, spec, str(out), config, threads, shard_options) for t in todo)
    for res in results:
        manifest.append_many(res.entries)
        _accumulate(report, res)
        if on_progress:
            on_progress(res)
    report.wall = time.perf_counter() - start
    return report


def _accumulate(report: AnnotateReport, res: TaskResult) -> None:
    report.faces += res.faces
    for e in res.entries:
        report.videos[e["status"]] += 1
        if e["status"] != "ok":
            report.skip_reasons[_reason_key(e["reason"])] += 1
    for k, v in res.seconds.items():
        report.seconds[k] += v
    for name, vals in res.coverage.items():
        acc = report.coverage.setdefault(name, [0.0, 0, 0.0, 0, 0.0, 0])
        for i, v in enumerate(vals):
            acc[i] += v


def _reason_key(reason: str) -> str:
    # "unreadable video: <details of that file>" → "unreadable video"
    return reason.split(":", 1)[0]
