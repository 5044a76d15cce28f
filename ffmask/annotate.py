"""Running an annotation: plan tasks, resume, fan out, write shards, summarise.

One task = a chunk of whole groups (an original and its fakes) → one shard
file, written as ``shard-NNNNN.h5.tmp`` and renamed when complete. The parent
process alone appends to ``manifest.jsonl``, after the shard is in place, so
a video is "done" exactly when its manifest line exists: a killed run loses
at most the tasks in flight, and rerunning the same command redoes those
and nothing else. A rerun plans only the videos not yet done, into shards
numbered after every shard name already used (:mod:`ffmask.resume`): videos
added to the dataset since are annotated into new shards, never over a
finished one.

Tasks are plain picklable functions run through joblib, so ``backend="dask"``
runs them unchanged on a Dask cluster (with a shared output directory).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask import __version__
from ffmask.backends import dispatch, threads_per_task, validate_backend, worker_exit_codes
from ffmask.errors import FFMaskError, OptionError, WorkerDiedError
from ffmask.options import positive_int
from ffmask.outdir import RunLock, ensure_out_dir, exit_with_owner, shard_in_progress, writing
from ffmask.pipeline import (Group, JobSpec, annotate_groups, checks_person, method_spec, plan_groups,
                             prepare_worker)
from ffmask.resume import (changed_inputs, find_bad_shards, forget_bad_shards, forget_changed_inputs,
                           input_fingerprints, next_shard_number, pending_groups, recorded_shards,
                           remove_unrecorded_shards)
from ffmask.shards.manifest import ok_shard
from ffmask.shards.runconfig import RUN_NAME, comparable as _comparable
from ffmask.shards.schema import SCHEMA_VERSION
from ffmask.shards.summary import DATASET_PROBLEMS_NAME

RUN_FILE = RUN_NAME
MANIFEST_FILE = "manifest.jsonl"
PROBLEMS_FILE = DATASET_PROBLEMS_NAME
SHARD_PATTERN = "shard-{:05d}.h5"


@dataclass(frozen=True)
class Task:
    index: int
    groups: tuple  # tuple[Group, ...]
    owner_pid: int = 0  # the process that planned the task; its local workers die with it

    @property
    def shard_name(self) -> str:
        return SHARD_PATTERN.format(self.index)

    @property
    def video_ids(self) -> list[str]:
        return group_video_ids(self.groups)


def _items_by_id(groups: Sequence[Group]) -> dict:
    """video_id -> item of every video of ``groups`` (originals too)."""
    items = {}
    for g in groups:
        for item in ((g.original,) if g.original is not None else ()) + tuple(g.items):
            items[item.video_id] = item
    return items


def group_video_ids(groups: Sequence[Group]) -> list[str]:
    """The ids of the videos ``groups`` write, in order (an original only where it is written)."""
    ids = []
    for g in groups:
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
    tasks_total: int  # shards already done + tasks planned now
    tasks_done_before: int  # shards holding this run's videos done before it started
    videos_done_before: int = 0  # the run's videos a manifest line had recorded (ok or skipped)
    videos_todo: int = 0
    videos: Counter = field(default_factory=Counter)  # "ok" / "skipped"
    skip_reasons: Counter = field(default_factory=Counter)
    faces: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    coverage: dict[str, list[float]] = field(default_factory=dict)
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)
    # damaged/missing shards found on resume, then unrecorded / unfinished shard files deleted
    redone_shards: list[str] = field(default_factory=list)
    # skipped videos whose files changed since (a truncated download replaced): planned again
    redone_videos: list[str] = field(default_factory=list)
    # videos with faces in the shards that the dataset scan no longer has (kept, and said)
    gone_videos: list[str] = field(default_factory=list)
    # videos of this run whose face track passes to another person (manifest ``person_changes``)
    person_changes: list[str] = field(default_factory=list)

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.wall if self.wall > 0 else 0.0


def chunk_groups(groups: Sequence[Group], videos_per_shard: int, start: int = 0) -> list[Task]:
    """Pack whole groups into tasks of about ``videos_per_shard`` videos each,
    numbered (and so their shards named) from ``start``."""
    videos_per_shard = positive_int(videos_per_shard, "--videos-per-shard")
    owner = os.getpid()
    tasks, current, count = [], [], 0
    for g in groups:
        n = len(g.items) + (1 if g.write_original and g.original not in g.items else 0)
        if current and count + n > videos_per_shard:
            tasks.append(Task(start + len(tasks), tuple(current), owner))
            current, count = [], 0
        current.append(g)
        count += n
    if current:
        tasks.append(Task(start + len(tasks), tuple(current), owner))
    return tasks


def first_videos(items: Sequence, limit: Optional[int], *, paired: bool) -> list:
    """The first ``limit`` videos of a scan (all with ``None``), whole groups first.

    A paired scan lists every original before any fake (FF++: ``youtube/*``,
    then each manipulation), so its first N items would be originals only,
    with no fake to compare. Here the items are taken group by group, as
    :func:`ffmask.pipeline.plan_groups` forms them: an original followed by
    its fakes, then the next original. ``--limit 5`` on FF++ is one original
    and its four fakes; on an unpaired scan it is the scan's first five.
    """
    if limit is None:
        return list(items)
    ordered = []
    for group in plan_groups(items, paired=paired):
        if group.original is not None and group.write_original:
            ordered.append(group.original)
        ordered.extend(i for i in group.items if i is not group.original)
    return ordered[:limit]


def write_problems(path: Path, problems: Sequence) -> None:
    """Write the scan's dataset problems as a JSON list of {"where", "reason"} (an empty list if none).

    Kept beside the shards so ``ffmask info`` can say later what the dataset
    held that no shard or manifest line accounts for (a directory named like
    a video, a fake without its original, ...). Rewritten on every run: the
    scan is made anew each time.
    """
    rows = [{"where": str(p.where), "reason": str(p.reason)} for p in problems]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(tmp, path)


def map_kinds(methods: Sequence[str]) -> dict[str, str]:
    return {name: method_spec(name).kind for name in methods}


def _coverage_value(kind: str, arr: np.ndarray) -> float:
    # masks: share of the face marked manipulated; continuous maps: mean value
    if kind == "noise":
        return float(np.abs(arr).mean())
    if arr.dtype == np.bool_:
        # the float32 mean of 0s and 1s without the float32 copy: the sum is
        # exact in float32 (< 2**24 pixels), then one float32 division, as np.mean does
        return float(np.float32(np.count_nonzero(arr)) / np.float32(arr.size))
    return float(np.asarray(arr, np.float32).mean())


def run_task(task: Task, spec: JobSpec, out_dir: str, config: dict, threads: int = 1,
             shard_options: Optional[dict] = None) -> TaskResult:
    """Annotate every group of ``task`` and write its shard atomically.

    Runs with ``threads`` threads for OpenCV, FFmpeg and the BLAS / OpenMP
    pools NumPy's matrix products use (``hull``'s features). loky sizes the
    latter in its fresh workers, but a forked worker or the serial run in this
    process would keep the parent's pools: with one worker per core, every
    worker's BLAS threads then spin on the same cores (twice the CPU time for
    the six-map benchmark under ``--backend fork``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _run_task(task, spec, out_dir, config, threads, shard_options)


def _run_task(task: Task, spec: JobSpec, out_dir: str, config: dict, threads: int,
              shard_options: Optional[dict]) -> TaskResult:
    import cv2

    from ffmask import video
    from ffmask.allocator import cap_malloc_arenas
    from ffmask.shards import ShardWriter
    from ffmask.shards.writer import attempt_tmp_path

    exit_with_owner(task.owner_pid)
    # before this task's threads start: frames freed by one thread stay in its arena (ffmask.allocator)
    cap_malloc_arenas()
    cv2.setNumThreads(threads)
    # As many decoder threads as the task's share of the cores: with one
    # worker per core, FFmpeg's frame threads only add synchronisation.
    video.set_decode_threads(threads)
    kinds = map_kinds(spec.methods)
    # What a resume compares with the dataset then (a replaced file, a label fixed since), taken before
    # decoding: a file replaced while this task reads it is seen as changed by the next run.
    items, fingerprints = _items_by_id(task.groups), {}
    inputs = {video_id: input_fingerprints(item, fingerprints) for video_id, item in items.items()}
    entries, seconds = [], defaultdict(float)
    coverage = {m: [0.0, 0, 0.0, 0, 0.0, 0] for m in spec.methods}
    final = Path(out_dir) / task.shard_name
    extras = tuple(e for name in spec.methods for e in method_spec(name).extras)
    faces = 0

    # One tmp file per attempt, and a finished shard already in place kept: a task run twice
    # at once (a Dask worker believed dead while it still runs, its task retried elsewhere)
    # never writes into the other attempt's file, and only one complete file takes the name.
    tmp = attempt_tmp_path(final)

    def create():
        with writing(task.shard_name):
            return ShardWriter(final, size=spec.size, maps=kinds, config=config, extras=extras,
                               tmp_path=tmp, replace=False, **(shard_options or {}))

    # marked before the file exists: a run killed while it is created leaves no .tmp behind
    with shard_in_progress(tmp, create) as writer, writer:
        # A background decode needs a core of its own: only with more than one.
        for res in annotate_groups(task.groups, spec, prefetch=threads > 1):
            t0 = time.perf_counter()
            for rec in res.records:
                with writing(task.shard_name):
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
        with writing(task.shard_name):
            if faces:
                writer.close()
            else:
                writer.abort()
        seconds["write"] += time.perf_counter() - t0
    shard = task.shard_name if faces else None
    for e in entries:
        e["task"] = task.index
        e["shard"] = shard if e["status"] == "ok" else None
        item = items[e["video_id"]]
        e.update(split=item.split, original_id=item.original_id, files=inputs[e["video_id"]])
    return TaskResult(task.index, shard, entries, faces, dict(seconds), coverage)


SHARD_OPTIONS = ("image_codec", "jpeg_quality", "noise_storage")


def _check_shard_options(options: Optional[dict]) -> dict:
    """The storage choices of a run, checked once in the parent (bad ones are one-line errors).

    Returns the effective choices, defaults filled in: a run started from
    Python with none and its resume from the CLI (which names every one) must agree.
    """
    from ffmask.shards.writer import storage_choices

    options = dict(options or {})
    unknown = sorted(set(options) - set(SHARD_OPTIONS))
    if unknown:
        raise FFMaskError(f"unknown shard option(s) {unknown}; valid: {', '.join(SHARD_OPTIONS)}")
    try:
        image_codec, jpeg_quality, noise_storage = storage_choices(**options)
    except ValueError as exc:
        raise FFMaskError(f"bad shard option: {exc}") from None
    effective = {"image_codec": image_codec, "noise_storage": noise_storage}
    if jpeg_quality is not None:
        effective["jpeg_quality"] = jpeg_quality
    return effective


def _diff_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ, each with ``: OLD, now NEW`` when both are short."""
    keys = []
    for k in set(old) | set(new):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _diff_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            shown = (json.dumps(a), json.dumps(b))
            # the values tell the user what to pass to resume; long ones (lists of videos) would bury the line
            keys.append(f"{prefix}{k}" + (f": {shown[0]}, now {shown[1]}" if max(map(len, shown)) <= 40 else ""))
    return keys


def prepare_out_dir(out: Path, config: dict, overwrite: bool) -> list[str]:
    """Check that the existing directory ``out`` holds a run of the same
    options (or none, then write ``run.json``); ``overwrite`` empties it first.
    The caller holds the run lock. Returns one line per unfinished shard
    (``shard-NNNNN.h5.tmp``) of a stopped run that it deleted."""
    run_file = out / RUN_FILE
    if overwrite:
        for p in list(out.glob("shard-*.h5")) + list(out.glob("shard-*.h5.tmp")):
            p.unlink()
        for name in (RUN_FILE, MANIFEST_FILE, PROBLEMS_FILE):
            (out / name).unlink(missing_ok=True)
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FFMaskError(f"{run_file} is corrupt ({exc}); use --overwrite") from None
        if not isinstance(previous, dict):
            raise FFMaskError(f"{run_file} is corrupt (a JSON {type(previous).__name__}, not the run's options); "
                              "use --overwrite")
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
        try:
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
            os.replace(tmp, run_file)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
    # Shards being written when a previous run died are never valid: drop them.
    removed = []
    for p in sorted(out.glob("shard-*.h5.tmp")):
        p.unlink()
        removed.append(f"{p.name} is an unfinished shard of a stopped run: deleted, its videos are redone")
    return removed


def _single_image_methods() -> list[str]:
    from ffmask import targets

    return [n for n in targets.available_methods() if targets.get_method(n.split("@")[0]).input == "image"]


def check_run_options(spec: JobSpec, *, videos_per_shard, limit) -> None:
    """The options of a run that neither JobSpec nor :func:`validate_backend`
    checks; OptionError. ``device`` is checked only when something runs on it
    (MTCNN, model-backed methods)."""
    if not isinstance(spec, JobSpec):
        raise OptionError(f"spec must be a JobSpec, got {type(spec).__name__}")
    positive_int(videos_per_shard, "--videos-per-shard")
    if limit is not None:
        positive_int(limit, "--limit")
    if spec.device is not None and spec.uses_device:
        from ffmask.devices import resolve_device

        try:
            resolve_device(spec.device)
        except ValueError as exc:
            raise OptionError(f"--device: {exc}") from None


def annotate(
    dataset: str,
    root,
    out,
    spec: JobSpec,
    *,
    dataset_options: Optional[dict] = None,
    videos_per_shard: int = 20,
    jobs: Optional[int] = 1,
    backend: str = "loky",
    scheduler: Optional[str] = None,
    overwrite: bool = False,
    limit: Optional[int] = None,
    shard_options: Optional[dict] = None,
    on_progress: Optional[Callable[[TaskResult], None]] = None,
    on_plan: Optional[Callable[[int, int, int], None]] = None,
) -> AnnotateReport:
    """Annotate a dataset into resumable HDF5 shards under ``out``.

    Every option, the dataset and the plan are checked before anything
    touches ``out`` (OptionError, a ValueError, for a bad value). The run
    then holds an exclusive lock on ``out`` (RunLockedError when another run
    holds it), and on resume re-checks every shard the manifest relies on,
    redoing the tasks whose shard is missing or damaged
    (``report.redone_shards``). A full disk, an unwritable ``out`` or a dead
    worker end in a one-line FFMaskError with no unfinished shard left
    behind; rerunning the same command resumes.

    On resume only the videos no manifest line records are planned, into
    shards numbered after every shard name in use; shard files no manifest
    line names (a run stopped between a shard and its lines) and unfinished
    ``.h5.tmp`` files are deleted and said in ``report.redone_shards``.

    on_plan(videos_todo, tasks_todo, tasks_total, videos_done) is called once
    before work starts (tasks_total counts the shards already done),
    on_progress(task_result) after each task's shard and manifest lines are
    in place. ``backend``/``jobs``/``scheduler`` choose where tasks
    run (:mod:`ffmask.backends`; ``jobs=None`` means every core). shard_options
    are ShardWriter storage choices (``image_codec``, ``jpeg_quality``,
    ``noise_storage``), recorded in run.json.
    """
    from ffmask.datasets import get_dataset
    from ffmask.shards import Manifest
    from ffmask.shards.manifest import latest

    out = Path(out)
    dataset_options = dict(dataset_options or {})
    check_run_options(spec, videos_per_shard=videos_per_shard, limit=limit)
    jobs = validate_backend(backend, jobs, scheduler)  # None: every core
    methods = list(spec.methods)
    specs = [method_spec(name) for name in methods]
    for m in specs:
        if m.check is not None:
            m.check(spec)  # e.g. a bad checkpoint fails here, once, without loading the model

    scan = get_dataset(dataset, root, **dataset_options)
    paired_dataset = scan.paired or any(item.is_paired for item in scan.items)
    needs_original = [m.name for m in specs if m.paired or m.input == "mask_video"]
    if needs_original and not paired_dataset:
        raise FFMaskError(
            f"{', '.join(needs_original)} compare a fake with its original, and dataset "
            f"'{dataset}' has no originals; use single-image methods ({', '.join(_single_image_methods())})"
        )
    if needs_original and scan.items and not any(item.is_paired for item in scan.items):
        found = "; ".join(f"{p.where}: {p.reason}" for p in scan.problems) or "no fake videos"
        raise FFMaskError(
            f"{', '.join(needs_original)} compare a fake with its original, and no fake with its "
            f"original was found under {root} ({found})"
        )
    items = first_videos(scan.items, limit, paired=paired_dataset)
    if not items:
        why = ""
        if scan.problems:  # every item was refused: the reasons are the answer
            shown = "; ".join(f"{p.where}: {p.reason}" for p in scan.problems[:3])
            more = f" (and {len(scan.problems) - 3} more)" if len(scan.problems) > 3 else ""
            why = f"; {len(scan.problems)} problem(s): {shown}{more}"
        raise FFMaskError(f"no videos found for dataset '{dataset}' under {root}{why}")

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
    groups = plan_groups(items, paired=paired_dataset)

    ensure_out_dir(out)
    with RunLock(out):
        with writing(RUN_FILE):
            cleaned = prepare_out_dir(out, config, overwrite)
        manifest = Manifest(out / MANIFEST_FILE)
        entries = manifest.entries()
        done = latest(entries)
        bad = find_bad_shards(out, done, methods)
        forget_bad_shards(out, done, bad)
        # a file replaced since under the same name: its video's id is no longer its content
        changed, changed_lines = forget_changed_inputs(done, changed_inputs(done, _items_by_id(groups)))
        forget_bad_shards(out, done, changed)
        bad += changed
        with writing("unrecorded shard files"):
            # a shard another run wrote, copied in by hand, is kept: only this run's leftovers are redone
            cleaned += remove_unrecorded_shards(out, done, config)
        # Only what is not done, in shards no manifest line or file has named.
        todo = chunk_groups(pending_groups(groups, done), videos_per_shard, next_shard_number(out, entries))
        done_here = {v: done[v] for v in set(group_video_ids(groups)) & done.keys()}  # this run's videos only
        shards_done = len(recorded_shards(done_here))
        report = AnnotateReport(out=out, tasks_total=shards_done + len(todo), tasks_done_before=shards_done,
                                videos_done_before=len(done_here), videos_todo=sum(len(t.video_ids) for t in todo))
        report.problems = [f"{p.where}: {p.reason}" for p in scan.problems]
        with writing(PROBLEMS_FILE):
            write_problems(out / PROBLEMS_FILE, scan.problems)
        report.redone_shards = [str(b) for b in bad] + cleaned
        report.redone_videos = changed_lines
        # faces of videos the dataset no longer has (deleted, renamed, moved to another split) stay in their
        # shards: said, so that a video deleted as bad is not believed gone from the data
        planned = set(_items_by_id(groups))
        report.gone_videos = sorted(v for v, e in done.items() if ok_shard(e) and v not in planned)
        if on_plan:
            on_plan(report.videos_todo, len(todo), report.tasks_total, report.videos_done_before)
        with _run_failures(out):
            _run_tasks(todo, spec, out, config, jobs, backend, scheduler, manifest, report, on_progress,
                       shard_options)
    return report


def _run_tasks(todo, spec, out, config, jobs, backend, scheduler, manifest, report, on_progress,
               shard_options=None) -> None:
    threads = threads_per_task(backend, jobs, scheduler)
    out_dir = str(out.resolve())  # workers of a cluster may run in another directory
    start = time.perf_counter()
    arguments = [(t, spec, out_dir, config, threads, shard_options) for t in todo]
    # Workers forked from this process start with what every task loads first (the identity model only
    # when some video is checked: an FF++ run never loads it).
    person_check = any(checks_person(g.anchor, spec)
                       for t in todo for g in t.groups)
    with dispatch(run_task, arguments, backend=backend, jobs=jobs, scheduler=scheduler,
                  prepare=functools.partial(prepare_worker, spec, person_check)) as results:
        for res in results:
            if res.shard and not (out / res.shard).is_file():
                raise FFMaskError(f"a worker wrote {res.shard} but it is not in {out}: with --scheduler, "
                                  "--out must be storage shared by this machine and every worker")
            with writing(MANIFEST_FILE):
                manifest.append_many(res.entries)
            _accumulate(report, res)
            if on_progress:
                on_progress(res)
    report.wall = time.perf_counter() - start


@contextmanager
def _run_failures(out: Path):
    """A dead worker becomes one line; whatever stops the run, no unfinished
    shard stays behind (the workers are gone by the time it propagates here)."""
    try:
        yield
    except Exception as exc:
        codes = worker_exit_codes(exc)
        if codes is None:
            raise
        raise WorkerDiedError(
            f"a worker process died while annotating (exit code {codes}; SIGKILL(-9) is often the "
            "out-of-memory killer: try fewer --jobs); finished shards are kept, rerun the same command to resume"
        ) from None
    finally:
        for p in out.glob("shard-*.h5.tmp"):
            p.unlink(missing_ok=True)


def _accumulate(report: AnnotateReport, res: TaskResult) -> None:
    report.faces += res.faces
    for e in res.entries:
        report.videos[e["status"]] += 1
        if e.get("person_changes") and e["status"] == "ok":
            report.person_changes.append(e["video_id"])
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
