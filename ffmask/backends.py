"""Where shard tasks run: this process, local worker processes, or a Dask cluster.

Every backend runs the same picklable task function through joblib, so a
task cannot tell where it runs; only the parent process consumes results
(and so is the only writer of the manifest). Results come back as each task
finishes, in completion order, which is what feeds the progress bar.

Backends are registry entries: what a backend needs (an importable module,
the pip extra providing it), whether it can join a running cluster, and how
it opens a joblib session are properties of its entry, never ``if name ==``
tests in the caller.

Validate first (:func:`validate_backend`, before anything is written), then
run (:func:`dispatch`)::

    jobs = validate_backend("dask", None, scheduler="tcp://head:8786")
    with dispatch(run_task, args, backend="dask", jobs=jobs, scheduler=...) as results:
        for result in results:      # completion order
            ...
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator, Optional, Sequence

from ffmask.errors import FFMaskError

__all__ = ["Backend", "BACKENDS", "get_backend", "default_jobs", "validate_backend", "threads_per_task", "dispatch"]

#: How long a run waits for the first Dask worker (a cluster may still be starting).
WORKER_WAIT_S = 60
#: How long ``--scheduler`` may take to answer before the run is refused.
CONNECT_TIMEOUT_S = 10


def default_jobs() -> int:
    """Cores this process may use (its CPU affinity), the default ``--jobs``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def _loky_session(jobs: int, scheduler: Optional[str]):
    from joblib import parallel_config

    with parallel_config(backend="loky", n_jobs=jobs):
        yield jobs


def _connect(scheduler: str, timeout: float):
    """A ``distributed.Client`` on ``scheduler``; unreachable becomes FFMaskError."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{timeout}s", set_as_default=True)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FFMaskError(f"cannot reach the Dask scheduler at {scheduler!r} ({reason})") from None


@contextmanager
def _dask_session(jobs: int, scheduler: Optional[str]):
    from distributed import Client, LocalCluster
    from joblib import parallel_config

    cluster = None
    if scheduler:
        client = _connect(scheduler, CONNECT_TIMEOUT_S)
    else:
        # One single-threaded worker process per job: the tasks are CPU-bound
        # Python/NumPy, so threads would share one GIL. No dashboard: it needs
        # bokeh and a free port, and nobody watches a throwaway cluster.
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=True)
    try:
        with parallel_config(backend="dask", wait_for_workers_timeout=WORKER_WAIT_S):
            yield -1  # joblib's dask backend: every worker thread of the cluster
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_errors() -> tuple[type, ...]:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return (KilledWorker, CommClosedError)


@dataclass(frozen=True)
class Backend:
    """One way to run tasks.

    name: the ``--backend`` value. requires: module that must import (None:
    always available); extra: the ``ffmask[...]`` extra that provides it.
    joins_cluster: accepts ``--scheduler``. serial_in_process: with one job
    (or one task) run the tasks in this process, without a pool.
    session(jobs, scheduler): context manager that configures joblib for the
    block and yields the ``n_jobs`` to give ``Parallel``. worker_errors():
    exceptions meaning "infrastructure died", not "a task failed".
    """

    name: str
    description: str
    session: Callable[[int, Optional[str]], ContextManager[int]]
    requires: Optional[str] = None
    extra: Optional[str] = None
    joins_cluster: bool = False
    serial_in_process: bool = False
    worker_errors: Callable[[], tuple[type, ...]] = tuple

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


BACKENDS: dict[str, Backend] = {
    "loky": Backend("loky", "worker processes on this machine", _loky_session, serial_in_process=True),
    "dask": Backend("dask", "a Dask cluster: a LocalCluster of --jobs workers, or --scheduler ADDRESS",
                    _dask_session, requires="distributed", extra="dask", joins_cluster=True,
                    worker_errors=_dask_errors),
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise FFMaskError(f"unknown --backend {name!r}; choose one of {', '.join(BACKENDS)}") from None


def validate_backend(backend: str, jobs: Optional[int] = None, scheduler: Optional[str] = None) -> int:
    """Check ``--backend``/``--jobs``/``--scheduler`` before anything is written.

    Returns the number of jobs (``None`` → :func:`default_jobs`). An unknown
    backend, a missing dependency, ``jobs < 1``, ``--scheduler`` with a
    backend that cannot join a cluster, or a scheduler that does not answer
    within ``CONNECT_TIMEOUT_S`` raise FFMaskError.
    """
    entry = get_backend(backend)
    if jobs is None:
        jobs = default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise FFMaskError(f"--jobs must be an integer >= 1, got {jobs!r}")
    if not entry.available():
        raise FFMaskError(f"--backend {backend} needs the {entry.requires!r} package: "
                          f"pip install 'ffmask[{entry.extra}]'")
    if scheduler is not None:
        if not entry.joins_cluster:
            joiners = [b.name for b in BACKENDS.values() if b.joins_cluster]
            raise FFMaskError(f"--scheduler needs --backend {' or '.join(joiners)} (got --backend {backend})")
        if not scheduler.strip():
            raise FFMaskError("--scheduler is empty; give the scheduler's address, e.g. tcp://head-node:8786")
        _connect(scheduler, CONNECT_TIMEOUT_S).close()
    return jobs


def threads_per_task(backend: str, jobs: int, scheduler: Optional[str] = None) -> int:
    """Threads a task may give OpenCV: this machine's cores shared by local jobs, 1 on a remote cluster."""
    if scheduler is not None:
        return 1
    return max(1, default_jobs() // jobs)


@contextmanager
def dispatch(
    fn: Callable,
    arguments: Sequence[tuple],
    *,
    backend: str = "loky",
    jobs: int = 1,
    scheduler: Optional[str] = None,
) -> Iterator[Iterable]:
    """Run ``fn(*args)`` for each tuple in ``arguments``; yield an iterator of results in completion order.

    The backend (a worker pool, a LocalCluster, a client on ``scheduler``)
    lives exactly as long as the ``with`` block. When infrastructure dies
    under a task (a Dask worker killed more often than the scheduler's
    allowed failures, a lost scheduler) the iterator raises FFMaskError:
    results already consumed stay valid, so rerunning resumes.
    """
    entry = get_backend(backend)
    arguments = list(arguments)
    if entry.serial_in_process and (jobs == 1 or len(arguments) <= 1):
        yield (fn(*args) for args in arguments)
        return
    from joblib import Parallel, delayed

    with entry.session(jobs, scheduler) as n_jobs:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        yield _guarded(parallel(delayed(fn)(*args) for args in arguments), entry)


def _guarded(results: Iterator, entry: Backend) -> Iterator:
    errors = entry.worker_errors()
    try:
        yield from results
    except errors as exc:
        raise FFMaskError(f"a {entry.name} worker died under a task ({type(exc).__name__}: {exc}); "
                          "finished shards are kept: rerun the same command to resume") from None
