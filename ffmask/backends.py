"""Where shard tasks run: this process, local worker processes, or a Dask cluster.

Every backend runs the same picklable task function through joblib, so a
task cannot tell where it runs; only the parent process consumes results
(and so is the only writer of the manifest). Results come back as each task
finishes, in completion order, which is what feeds the progress bar.

Backends are registry entries: what a backend needs (an importable module,
the pip extra providing it), whether it can join a running cluster, and how
it opens a joblib session (or runs the tasks itself, as ``fork`` does) are
properties of its entry, never ``if name ==`` tests in the caller.

``fork`` differs from ``loky`` only in how its worker processes start: loky
starts each one as a fresh interpreter, which imports NumPy, OpenCV, h5py,
joblib and ffmask again (~0.5 s of CPU per worker, paid by every run); a
forked worker starts with everything this process has imported. Forking a
process that runs threads, or that has used torch (whose OpenMP pool does not
survive a fork), can deadlock the child, and so can a worker that sizes
OpenCV's pool; ``fork`` therefore runs on loky instead in such a process or
when a worker would get more than one thread (:func:`fork_is_safe`). The
records are the same either way.

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
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator, Optional, Sequence

from ffmask.errors import FFMaskError

__all__ = ["Backend", "BACKENDS", "get_backend", "default_jobs", "validate_backend", "threads_per_task", "dispatch",
           "fork_is_safe", "LocalWorkerDied", "worker_exit_codes"]

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


def _watch_owner(owner_pid: int) -> None:
    """Worker initializer: exit when the run's process ``owner_pid`` dies (:func:`ffmask.outdir.exit_with_owner`).

    A local worker is the run's child; one whose parent is already someone
    else was orphaned while it started (the run was killed during the pool's
    start-up) and exits at once, before it can block on the task queue.
    """
    from ffmask.outdir import exit_with_owner

    if os.getppid() != owner_pid:
        os._exit(1)
    exit_with_owner(owner_pid)


@contextmanager
def _loky_session(jobs: int, scheduler: Optional[str]):
    from joblib import parallel_config

    # Each worker watches this process from its start (not from its first
    # task): a worker that never got a task would otherwise outlive a killed
    # run, blocked on the task queue's lock if a sibling died holding it.
    with parallel_config(backend="loky", n_jobs=jobs, initializer=_watch_owner, initargs=(os.getpid(),)):
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
def _quiet(logger: str):
    """``logger``'s records below CRITICAL dropped for the block: the run's own error says what went wrong
    (distributed logs a lost scheduler as tracebacks on stderr, and each failed task, before the run can)."""
    names = [logger, *(n for n in list(logging.Logger.manager.loggerDict) if n.startswith(logger + "."))]
    logs = [logging.getLogger(n) for n in names]  # distributed gives its modules' loggers levels of their own
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


@contextmanager
def _dask_client(jobs: int, scheduler: Optional[str]):
    """A ``distributed.Client``: on ``scheduler``, or on a LocalCluster of ``jobs`` workers made for the block."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        client = _connect(scheduler, CONNECT_TIMEOUT_S)
    else:
        # One single-threaded worker process per job: the tasks are CPU-bound
        # Python/NumPy, so threads would share one GIL. No dashboard: it needs
        # bokeh and a free port, and nobody watches a throwaway cluster.
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def _dask_pool(fn: Callable, arguments: list, jobs: int, prepare: Optional[Callable[[], None]] = None,
               scheduler: Optional[str] = None) -> Iterator[Iterator]:
    """``fn(*args)`` for each of ``arguments`` on a Dask cluster; yields the results in completion order.

    Submitted with distributed's own futures, not through joblib's Dask
    backend: a task that kills its worker more often than the scheduler
    allows (``distributed.scheduler.allowed-failures``, 3: a video that
    runs a worker out of memory every time) is marked failed by the
    scheduler, and joblib's backend set that error on a future its
    ``Parallel`` never looked at, so the run waited for ever (session 12).
    Here the failure (``KilledWorker``) comes out of the iteration, and any
    other exception of a task as it was raised. Waits up to
    :data:`WORKER_WAIT_S` for a first worker. ``prepare`` is not used (no
    worker is forked from this process).
    """
    from distributed import as_completed

    with _quiet("distributed"), _dask_client(jobs, scheduler) as client:  # quiet while it closes too
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, OSError) as exc:
            raise FFMaskError(f"no Dask worker joined within {WORKER_WAIT_S} s ({type(exc).__name__}); "
                              "is the cluster running?") from None
        futures = [client.submit(fn, *args, pure=False) for args in arguments]

        def results():
            for future in as_completed(futures, loop=client.loop):
                yield future.result()  # the task's own exception, or KilledWorker

        try:
            yield results()
        finally:
            client.cancel([f for f in futures if not f.done()])


def _dask_error_text(exc: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return "every Dask worker that ran one task died running it (a video that runs a worker out of memory?)"
    return "the connection to the Dask scheduler was lost"


def _dask_errors() -> tuple[type, ...]:
    import distributed.client
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    # a task cancelled because the client lost its scheduler (FutureCancelledError in distributed >= 2024)
    cancelled = getattr(distributed.client, "FutureCancelledError", None)
    return (KilledWorker, CommClosedError) + ((cancelled,) if cancelled else ())


@dataclass(frozen=True)
class Backend:
    """One way to run tasks.

    name: the ``--backend`` value. requires: module that must import (None:
    always available); extra: the ``ffmask[...]`` extra that provides it.
    joins_cluster: accepts ``--scheduler``. serial_in_process: with one job
    (or one task) run the tasks in this process, without a pool.
    session(jobs, scheduler): context manager that configures joblib for the
    block and yields the ``n_jobs`` to give ``Parallel``. worker_errors():
    exceptions meaning "infrastructure died", not "a task failed". pool:
    runs the tasks itself instead of through ``session`` (see the field).
    platform_check / platform_note: what the platform must offer, and the
    error's wording when it does not.
    """

    name: str
    description: str
    session: Optional[Callable[[int, Optional[str]], ContextManager[int]]] = None
    requires: Optional[str] = None
    extra: Optional[str] = None
    joins_cluster: bool = False
    serial_in_process: bool = False
    worker_errors: Callable[[], tuple[type, ...]] = tuple
    #: what one of ``worker_errors()`` means, in words (None: "a NAME worker died under a task")
    worker_error_text: Optional[Callable[[BaseException], str]] = None
    #: runs the tasks itself instead of through a joblib ``session``:
    #: ``pool(fn, arguments, jobs, prepare, scheduler=)`` is a context manager yielding the
    #: results in completion order (``prepare``: see :func:`dispatch`).
    pool: Optional[Callable[..., ContextManager[Iterator]]] = None
    #: what must hold on this platform (None: nothing), and what to say when it does not
    platform_check: Optional[Callable[[], bool]] = None
    platform_note: str = ""

    def available(self) -> bool:
        if self.platform_check is not None and not self.platform_check():
            return False
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def fork_is_safe(jobs: int = 1) -> bool:
    """Whether this process may fork ``jobs`` workers.

    Only when no other thread runs, torch is not imported, and each worker
    gets one thread (``threads_per_task`` is 1, as with ``--jobs`` = cores):
    a child gets a copy of the memory of every thread but only the forking
    one, so a lock or condition another thread waits on stays taken there for
    ever. OpenCV's thread pool is such a case (a child that changes the pool
    size hangs; :func:`_fork_pool` shrinks the pool to one thread before it
    forks, and a one-thread worker never grows it), and so is torch's OpenMP
    pool once it has run.
    """
    return (threading.active_count() == 1 and "torch" not in sys.modules
            and threads_per_task("fork", jobs) == 1)


@contextmanager
def _opencv_single_threaded():
    """OpenCV's pool shrunk to no worker thread for the block (restored after), if OpenCV is imported."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        yield
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


@contextmanager
def _fork_pool(fn: Callable, arguments: list, jobs: int,
               prepare: Optional[Callable[[], None]] = None, scheduler: Optional[str] = None) -> Iterator[Iterator]:
    """``fn(*args)`` for each of ``arguments`` in ``jobs`` processes forked from this one.

    Yields an iterator of results in completion order. A worker that dies
    (killed, out of memory) ends the iteration with :class:`LocalWorkerDied`
    (see :func:`worker_exit_codes`); on any exception the workers are killed
    and the tasks not started are dropped. ``prepare()`` runs here just
    before the workers are forked, so they start with what it loaded.
    When :func:`fork_is_safe` says no (before or after ``prepare``), runs the
    loky pool instead.
    """
    if fork_is_safe(jobs) and prepare is not None:
        prepare()
    if not fork_is_safe(jobs):
        with _joblib_pool(BACKENDS["loky"], fn, arguments, jobs, None) as results:
            yield results
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    executor = ProcessPoolExecutor(max_workers=min(jobs, len(arguments)) or 1,
                                   mp_context=multiprocessing.get_context("fork"),
                                   initializer=_watch_owner, initargs=(os.getpid(),))
    # Submitted as tasks finish, 2 per worker ahead (as joblib pre-dispatches),
    # so a failure leaves the rest unstarted; the first submit forks every
    # worker (with the fork context CPython starts them all before any thread).
    pending = list(arguments)[::-1]
    with _opencv_single_threaded():
        running = {executor.submit(fn, *pending.pop()) for _ in range(min(2 * jobs, len(pending)))}
    workers = list(getattr(executor, "_processes", {}).values())

    def results():
        nonlocal running
        from concurrent.futures.process import BrokenProcessPool

        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise _terminated(workers) from None
                if pending:
                    running.add(executor.submit(fn, *pending.pop()))
                yield result

    finished = False
    try:
        yield results()
        finished = not running
    finally:
        if not finished:
            for process in workers:
                if process.is_alive():
                    process.kill()
        executor.shutdown(wait=True, cancel_futures=True)


class LocalWorkerDied(Exception):
    """A worker process of the ``fork`` pool died under a task; ``exit_codes`` as loky writes them."""

    def __init__(self, exit_codes: str):
        super().__init__(f"a worker process died (exit codes {{{exit_codes}}})")
        self.exit_codes = exit_codes


def _exit_code_text(code: int) -> str:
    if code < 0:
        try:
            return f"{signal.Signals(-code).name}({code})"
        except ValueError:
            pass
    return str(code)


def _terminated(workers) -> LocalWorkerDied:
    """The error for forked ``workers`` once one died, naming the exit code(s) of the dead."""
    for process in workers:
        process.join(timeout=1.0)
    codes = [p.exitcode for p in workers if p.exitcode not in (None, 0)]
    # the pool terminates the other workers once one died: name the one that did
    codes = [c for c in codes if c != -signal.SIGTERM] or codes
    return LocalWorkerDied(", ".join(_exit_code_text(c) for c in codes) or "?")


def worker_exit_codes(exc: BaseException) -> Optional[str]:
    """The exit codes (text, e.g. ``"SIGKILL(-9)"``) when ``exc`` says a local worker
    process died under a task (loky's ``TerminatedWorkerError``, the ``fork``
    pool's :class:`LocalWorkerDied`), else None. ``"?"`` when they are unknown."""
    if isinstance(exc, LocalWorkerDied):
        return exc.exit_codes
    loky = sys.modules.get("joblib.externals.loky.process_executor")  # none raised if never imported
    if loky is not None and isinstance(exc, loky.TerminatedWorkerError):
        import re

        codes = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
        return codes.group(1) if codes else "?"
    return None


BACKENDS: dict[str, Backend] = {
    "loky": Backend("loky", "worker processes on this machine", _loky_session, serial_in_process=True),
    "fork": Backend("fork", "worker processes on this machine forked from this one, without loky's start-up "
                    "(Linux, macOS; loky where forking is unsafe)", pool=_fork_pool, serial_in_process=True,
                    platform_check=_can_fork, platform_note="needs the 'fork' start method (not on Windows)"),
    "dask": Backend("dask", "a Dask cluster: a LocalCluster of --jobs workers, or --scheduler ADDRESS",
                    pool=_dask_pool, requires="distributed", extra="dask", joins_cluster=True,
                    worker_errors=_dask_errors, worker_error_text=_dask_error_text),
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
        if entry.platform_check is not None and not entry.platform_check():
            raise FFMaskError(f"--backend {backend} {entry.platform_note}; use --backend loky")
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
    prepare: Optional[Callable[[], None]] = None,
) -> Iterator[Iterable]:
    """Run ``fn(*args)`` for each tuple in ``arguments``; yield an iterator of results in completion order.

    The backend (a worker pool, a LocalCluster, a client on ``scheduler``)
    lives exactly as long as the ``with`` block. When infrastructure dies
    under a task (a Dask worker killed more often than the scheduler's
    allowed failures, a lost scheduler) the iterator raises FFMaskError:
    results already consumed stay valid, so rerunning resumes.

    ``prepare``: loads in this process what every task loads first (modules,
    models), called only where workers are forked from this process
    (``fork``), just before forking: each worker then starts with it instead
    of loading it again. It must start no thread and import no torch (the
    run falls back to loky if it did). Other backends, and a run in this
    process, never call it (a fresh worker would not see it; a serial task
    loads what it needs itself).
    """
    entry = get_backend(backend)
    arguments = list(arguments)
    if entry.serial_in_process and (jobs == 1 or len(arguments) <= 1):
        yield (fn(*args) for args in arguments)
        return
    if entry.pool is not None:
        with entry.pool(fn, arguments, jobs, prepare, scheduler=scheduler) as results:
            yield _guarded(results, entry)
        return
    with _joblib_pool(entry, fn, arguments, jobs, scheduler) as results:
        yield results


@contextmanager
def _joblib_pool(entry: Backend, fn: Callable, arguments: list, jobs: int, scheduler: Optional[str]):
    from joblib import Parallel, delayed

    with entry.session(jobs, scheduler) as n_jobs:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        yield _guarded(parallel(delayed(fn)(*args) for args in arguments), entry)


def _guarded(results: Iterator, entry: Backend) -> Iterator:
    errors = entry.worker_errors()
    try:
        yield from results
    except errors as exc:
        what = entry.worker_error_text(exc) if entry.worker_error_text else f"a {entry.name} worker died under a task"
        said = str(exc).split(". ")[0].splitlines()[0] if str(exc) else ""  # distributed adds a paragraph
        raise FFMaskError(f"{what} ({type(exc).__name__}: {said}); "
                          "finished shards are kept: rerun the same command to resume") from None
