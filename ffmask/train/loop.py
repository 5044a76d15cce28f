"""The bookkeeping every training loop shares (:class:`TrainingRun`, :class:`TrainResult`).

A loop (:mod:`ffmask.train.focus`, :mod:`ffmask.train.evaluator`) owns its
model, data, batches and loss; a :class:`TrainingRun` owns what happens
around them, the same for every loop::

    with TrainingRun(out, model, ..., validate=..., describe=...) as run:  # releases run.lock however it ends
        run.resume(differences)                  # takes run.lock; restores out/last.*, if any
        loader = ...                             # (a failure here releases the lock too)
        with run.session(progress):              # progress bar; Ctrl-C saves the last completed step
            for step, batch in batches_after(run.step):
                loss, parts = ...
                run.optimize(step, loss)         # backward, optimizer and scheduler step
                record = run.record_losses(step, parts)
                run.end_step(step, lr, info)     # validation, best.*, log line, last.*, progress text

- resuming restores weights, optimizer, scheduler, random generators,
  history and best score, and refuses a checkpoint of another run;
- after each step: the running loss window, validation when due (history,
  ``out/best.*`` on a better score, one line of ``train_log.jsonl``),
  ``out/last.*`` every ``checkpoint_every`` steps and at the end, the
  progress bar's text;
- on Ctrl-C: ``out/last.*`` of the last completed step (unless the interrupt
  hit mid-update), then the KeyboardInterrupt goes on.

Files in ``out``: ``last.safetensors``/``last.json`` (weights +
description), ``last.optim.safetensors`` (optimizer tensors and RNG states,
:mod:`ffmask.train.state`), ``best.safetensors``/``best.json``,
``train_log.jsonl`` (:mod:`ffmask.train.log`), ``run.lock`` (held from
:meth:`TrainingRun.resume` to the end of the session, or of the ``with`` block when something fails
before the session starts: one run per ``out``).
A checkpoint is written whole into ``.last.saving/`` (``.best.saving/``)
and then renamed into place, its JSON last, so a run killed while saving
leaves either the previous checkpoint or, once the renames are finished on
resume, the new one (:func:`finish_interrupted_saves`), never a mix.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import torch

from ffmask.errors import CheckpointError, FFMaskError
from ffmask.models.checkpoint import match_state_dict, read_description, read_safetensors, save_checkpoint
from ffmask.outdir import RERUN_TO_RESUME, RunLock, ensure_out_dir, writing
from ffmask.train.log import append_log, mean_losses, truncate_log
from ffmask.train.state import load_training_state, save_training_state

log = logging.getLogger("ffmask.train")

LAST, BEST = "last", "best"
OPTIM_FILE = "last.optim.safetensors"
#: A checkpoint is written whole into ``out/.<stem>.saving/`` first, then its files are
#: renamed over ``out``'s (the JSON last); COMPLETE there lists them once all are written.
SAVING_SUFFIX = ".saving"
COMPLETE = "COMPLETE"
LOG_FILE = "train_log.jsonl"
LOSS_WINDOW = 50  # steps the running mean losses are over


def _commit(staging: Path, out: Path) -> None:
    """Rename the files COMPLETE lists from ``staging`` into ``out``, in order; then drop ``staging``."""
    for name in json.loads((staging / COMPLETE).read_text()):
        if (staging / name).is_file():  # renamed already by an earlier, interrupted commit
            with writing(out / name, then=RERUN_TO_RESUME):
                os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)


def finish_interrupted_saves(out: Path) -> list[str]:
    """Settle checkpoints a killed run left half-saved in ``out``; returns what was done, one line each.

    A staging folder with its COMPLETE list holds a whole checkpoint whose
    renames were cut short: they are finished. One without it holds a
    checkpoint cut short while being written: it is dropped, and ``out``'s
    previous checkpoint, untouched, stays.
    """
    done = []
    for staging in sorted(Path(out).glob(f".*{SAVING_SUFFIX}")):
        if not staging.is_dir():
            continue
        try:
            complete = json.loads((staging / COMPLETE).read_text())
        except (OSError, ValueError):
            complete = None
        if isinstance(complete, list):
            _commit(staging, Path(out))
            done.append(f"finished saving {', '.join(complete)} (interrupted while being renamed)")
        else:
            shutil.rmtree(staging, ignore_errors=True)
            done.append(f"dropped {staging.name} (a checkpoint interrupted while being written)")
    for line in done:
        log.info("%s: %s", out, line)
    return done


def warn_if_being_written(paths) -> None:
    """Log a warning for each folder of ``paths`` another ffmask run (an annotate still going) writes now:
    the shards it finishes later are not in this training's data."""
    from ffmask.shards.manifest import being_written_line, shards_being_written

    for folder, pid in shards_being_written(paths).items():
        log.warning("%s", being_written_line(folder, pid, "training"))


def config_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """One ``"key: checkpoint A, now B"`` line per key whose value differs between two configs."""
    return [f"{key}: checkpoint {saved.get(key)!r}, now {now.get(key)!r}"
            for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]


class ProgressBar:
    """A rich progress bar (``title``, steps done of ``total``, times, a text), or nothing when not ``enabled``."""

    def __init__(self, enabled: bool, title: str, total: int, done: int) -> None:
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=total, completed=done, info="")

    def __enter__(self) -> "ProgressBar":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, info: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)


class TrainingRun:
    """One training run's state and files in ``out`` (see the module docstring).

    out : the output directory (created).
    model, model_name, config : what ``out/last.*`` and ``out/best.*`` hold
        (:func:`ffmask.models.checkpoint.save_checkpoint`).
    optimizer, scheduler : saved with ``last.*`` and restored on resume.
    title : names the run in the progress bar and messages ("FoCus", "efb4-fpn").
    iters : the run's last step. val_every : validate every this many steps
        (0: only at ``iters``). checkpoint_every : save ``last.*`` every this many
        steps (and at ``iters``).
    validate : ``validate() -> scores`` of the model on the validation faces
        (a dict with at least "auc" and ``select``), or None without validation.
    select : the score that picks ``best.*`` (higher is better; NaN never wins).
    describe : ``describe(run) -> dict``, the loop's part of a checkpoint
        description (training arguments, data, metrics...).

    State (read by the loop): ``step`` (the resumed step, 0 for a fresh run),
    ``completed`` (last completed step), ``window`` (the last
    :data:`LOSS_WINDOW` steps' loss dicts), ``history`` ({"step", "val",
    "losses"} per validation), ``last_val``, ``best_auc`` (the frame AUC at
    the best step), ``best_score`` and ``best_step``, ``resumed_from``.
    """

    def __init__(self, out: Path, model: torch.nn.Module, *, model_name: str, config: Mapping[str, Any],
                 optimizer: torch.optim.Optimizer, scheduler, title: str, iters: int, val_every: int,
                 checkpoint_every: int, validate: Optional[Callable[[], dict[str, float]]],
                 describe: Callable[["TrainingRun"], dict[str, Any]], select: str = "auc") -> None:
        self.out = ensure_out_dir(Path(out))
        self.model, self.model_name, self.config = model, model_name, dict(config)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.title, self.iters, self.val_every, self.checkpoint_every = title, iters, val_every, checkpoint_every
        self.validate, self.describe, self.select = validate, describe, select
        self.last_json = self.out / (LAST + ".json")
        self.step, self.completed, self.saved_step, self.resumed_from = 0, 0, 0, None
        self.history: list[dict[str, Any]] = []
        self.last_val: Optional[dict[str, float]] = None
        self.best_auc, self.best_score, self.best_step = math.nan, math.nan, None
        self.window: deque = deque(maxlen=LOSS_WINDOW)
        self._earlier_seconds, self._session_start, self._in_update = 0.0, time.perf_counter(), False
        self._bar = ProgressBar(False, title, iters, 0)  # session() shows a real one
        self._lock: Optional[RunLock] = None

    def release(self) -> None:
        """Release ``out``'s run lock, when held (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "TrainingRun":
        return self

    def __exit__(self, *exc) -> None:
        # A failure between resume() and session() (a DataLoader, a feature cache, pretrained weights)
        # would otherwise keep the lock until the object is collected: a retry in the same process
        # would meet its own pid in an "in use" line.
        self.release()

    # ---------------------------------------------------------------- resume

    def resume(self, differences: Callable[[dict], list[str]], model_name: Optional[str] = None) -> Optional[dict]:
        """Restore ``out/last.*`` when it exists; returns its description, or None for a fresh run.

        Takes ``out``'s run lock first (RunLockedError naming the pid while
        another run trains there), held until :meth:`session` ends, or
        until :meth:`release` / the end of a ``with run:`` block.

        differences : ``differences(description) -> lines``, what makes the
            checkpoint another run's; any line is a one-line CheckpointError.
        model_name : passed to :func:`~ffmask.models.checkpoint.read_description` (checked there).
        """
        if self._lock is None:
            # Two runs training into one --out would overwrite each other's checkpoints and log: the
            # second is refused (held until session() ends).
            self._lock = RunLock(self.out).acquire()
        try:
            return self._resume(differences, model_name)
        except BaseException:
            self.release()
            raise

    def _resume(self, differences: Callable[[dict], list[str]], model_name: Optional[str]) -> Optional[dict]:
        """:meth:`resume` with the lock held."""
        finish_interrupted_saves(self.out)
        if not self.last_json.is_file():
            self._start_fresh(differences, model_name)
            return None
        doc = read_description(self.last_json, model_name)
        diffs = differences(doc)
        if diffs:
            raise CheckpointError(f"{self.out} holds a checkpoint of a different run ({'; '.join(diffs)}); "
                                  "use another output directory or remove it")
        step = int(doc["step"])
        weights = self.out / (LAST + ".safetensors")
        tensors, meta = read_safetensors(weights)
        if meta.get("step") != str(step):
            raise CheckpointError(f"{self.out}/last.safetensors is from step {meta.get('step')}, "
                                  f"last.json from step {step}")
        match_state_dict(self.model, tensors, str(weights))
        load_training_state(self.out, doc["training_state"], self.optimizer, self.scheduler, step)
        metrics = doc.get("metrics", {})
        self.best_auc = _nan_if_none(metrics.get("best_val_auc"))
        self.best_score = _nan_if_none(metrics.get("best_score", metrics.get("best_val_auc")))
        self.best_step = metrics.get("best_step")
        # JSON stores NaN scores as null: back to NaN.
        self.history = [dict(h, val={k: math.nan if v is None else v for k, v in h["val"].items()})
                        for h in doc.get("history", [])]
        self.last_val = self.history[-1]["val"] if self.history else None
        self._earlier_seconds = float(metrics.get("train_seconds", 0.0))
        self.step = self.completed = self.saved_step = self.resumed_from = step
        truncate_log(self.out / LOG_FILE, step)  # lines a crashed run wrote after its last checkpoint
        log.info("resuming %s training from %s at step %d", self.title, self.last_json, step)
        return doc

    def _start_fresh(self, differences: Callable[[dict], list[str]], model_name: Optional[str]) -> None:
        """No ``last.json``: a ``best.json`` left by another run would outlive this one (a run without
        validation never replaces it, and ``ffmask evaluate DIR`` prefers best), so it is refused;
        log lines of an earlier attempt are dropped."""
        best = self.out / (BEST + ".json")
        if best.is_file():
            try:
                diffs = differences(read_description(best, model_name))
            except CheckpointError as exc:
                diffs = [str(exc)]
            if diffs:
                raise CheckpointError(f"{self.out} holds {best.name} of a different run ({'; '.join(diffs)}) but no "
                                      f"{self.last_json.name} to resume; use another output directory or remove it")
        truncate_log(self.out / LOG_FILE, 0)

    # ---------------------------------------------------------------- the steps

    @contextmanager
    def session(self, progress: bool) -> Iterator["TrainingRun"]:
        """The loop's body: shows the progress bar; on Ctrl-C saves the last completed step, then re-raises."""
        self._session_start = time.perf_counter()
        try:
            with ProgressBar(progress, self.title, self.iters, self.step) as self._bar:
                yield self
        except KeyboardInterrupt:
            if not self._in_update and self.completed > self.saved_step:
                self.save_last(self.completed)
                log.info("interrupted: saved step %d to %s", self.completed, self.last_json)
            raise
        finally:
            self.release()

    def optimize(self, step: int, loss: torch.Tensor) -> None:
        """Update ``step``: the gradients of ``loss``, the optimizer's step, the scheduler's.

        A Ctrl-C inside the update leaves ``last.*`` as it is (the weights may be half updated).
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._in_update = True
        self.optimizer.step()
        self.scheduler.step()
        self._in_update, self.completed = False, step

    def record_losses(self, step: int, parts: Mapping[str, Any]) -> dict[str, float]:
        """The step's loss terms (tensors or numbers) as floats, also added to :attr:`window`.

        A non-finite one is an FFMaskError naming the last good checkpoint.
        """
        record = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in parts.items()}
        if not all(math.isfinite(v) for v in record.values()):
            raise FFMaskError(f"{self.title} training diverged at step {step} (losses {record}); "
                              f"the last good checkpoint is {self.last_json}")
        self.window.append(dict(record))
        return record

    def end_step(self, step: int, lr: float, info: str) -> None:
        """After step ``step``: validate when due, save ``last.*`` when due, show ``info`` (+ the last scores).

        A validation appends to :attr:`history`, saves ``best.*`` when its
        ``select`` score beats the best so far, and logs ``{"step", "lr",
        "val", "losses"}`` (``lr``: the learning rate to log).
        """
        if self.validate is not None and ((self.val_every and step % self.val_every == 0) or step == self.iters):
            self.last_val = self.validate()
            self.history.append({"step": step, "val": self.last_val, "losses": mean_losses(list(self.window))})
            score = self.last_val[self.select]
            if math.isfinite(score) and not (score <= self.best_score):
                self.best_auc, self.best_score, self.best_step = self.last_val["auc"], score, step
                extra = self.describe(self)
                self._save_staged(BEST, lambda folder: save_checkpoint(folder / BEST, self.model,
                                                                       model_name=self.model_name,
                                                                       config=self.config, step=step, extra=extra))
            append_log(self.out / LOG_FILE, {"step": step, "lr": lr, **self.history[-1]})
        if step % self.checkpoint_every == 0 or step == self.iters:
            self.save_last(step)
        if self.last_val is not None:
            info += f"  val AUC {self.last_val['auc']:.3f}"
            if math.isfinite(self.last_val.get("map_auc", math.nan)):
                info += f" map AUC {self.last_val['map_auc']:.3f}"
        self._bar.update(step, info)

    # ---------------------------------------------------------------- files and times

    def save_last(self, step: int) -> None:
        """Write ``last.optim.safetensors`` and then ``last.*`` (weights, description, history) of ``step``.

        All three are written into ``out/.last.saving/`` first and renamed into
        place once complete (``last.json`` last), so a run killed while saving
        resumes from the previous checkpoint, or from this one when only the
        renames were left (:func:`finish_interrupted_saves`); never from a mix.
        """
        def write(folder: Path):
            training_state = save_training_state(folder / OPTIM_FILE, self.optimizer, self.scheduler, step)
            extra = self.describe(self)
            extra.update(history=self.history, training_state=training_state)
            weights, description = save_checkpoint(folder / LAST, self.model, model_name=self.model_name,
                                                   config=self.config, step=step, extra=extra)
            return [folder / OPTIM_FILE, weights, description]

        self._save_staged(LAST, write)
        self.saved_step = step

    def _save_staged(self, stem: str, write: Callable[[Path], Any]) -> None:
        """``write(folder)`` writes a checkpoint's files into a staging folder (returning their paths, or
        a tuple of them, the JSON last); they are then renamed into ``out`` in that order."""
        staging = self.out / f".{stem}{SAVING_SUFFIX}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            ensure_out_dir(staging)
            written = write(staging)
            names = [Path(p).name for p in written]
            with writing(staging / COMPLETE, then=RERUN_TO_RESUME):
                (staging / COMPLETE).write_text(json.dumps(names))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # out's own checkpoint is untouched
            raise
        _commit(staging, self.out)

    def train_seconds(self) -> float:
        """Seconds spent training, summed over this session and the resumed ones."""
        return self._earlier_seconds + time.perf_counter() - self._session_start


@dataclass(kw_only=True)
class TrainResult:
    """Outcome of a training loop (each loop's result adds its own fields).

    step : the last completed step, of ``iters``; resumed_from : the step
    resumed from (None for a fresh run). losses : mean of the last (up to
    :data:`LOSS_WINDOW`) steps' loss terms. best_val_auc / best_step : frame
    AUC at the best step and that step (NaN / None without validation).
    last_val : the last validation's scores. seconds : wall time of this
    call; train_seconds : summed over resumes. n_train / n_val : faces.
    pretrained : what the backbone's ImageNet weights were (fresh runs), or None.
    history : {"step", "val", "losses"} per validation.
    """

    out_dir: Path
    step: int
    iters: int
    resumed_from: Optional[int]
    losses: dict[str, float]
    best_val_auc: float
    best_step: Optional[int]
    last_val: Optional[dict[str, float]]
    seconds: float
    train_seconds: float
    n_train: int
    n_val: int
    pretrained: Optional[str] = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        """``out_dir/last.json``."""
        return self.out_dir / (LAST + ".json")

    @property
    def best_checkpoint(self) -> Optional[Path]:
        """``out_dir/best.json``, or None when no validation made one."""
        path = self.out_dir / (BEST + ".json")
        return path if path.is_file() else None


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)
