"""The output directory of a run: create it, hold it alone, turn write
failures into one line, and leave no writer behind when the run dies.

Two runs writing the same ``--out`` would overwrite each other's shards and
interleave their manifest lines. A run therefore holds an exclusive
``fcntl.flock`` on ``<out>/run.lock`` (which names its pid) from before it
reads ``run.json`` until it returns; a second run is refused with the first
one's pid. The kernel drops the lock when the holder dies, even by SIGKILL,
so a stale lock file never blocks a resume.

Local worker processes watch the run's process and exit, deleting their
unfinished shard, when it dies (:func:`exit_with_owner`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ffmask.errors import OutputError, RunLockedError

LOCK_FILE = "run.lock"
T = TypeVar("T")

# Libraries that keep the OS error in their message: h5py ("... errno = 28, error message = ..."),
# safetensors ("... File too large (os error 27)").
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)|os error (\d+)")


def _errno_in_text(exc: BaseException) -> "int | None":
    found = _ERRNO_IN_TEXT.search(str(exc))
    return int(found.group(1) or found.group(2)) if found else None


def describe_os_error(exc: Exception) -> str:
    """``exc``'s reason in a few words ("no space left on device"), lower case."""
    code = getattr(exc, "errno", None)
    code = code if isinstance(code, int) else _errno_in_text(exc)
    if code == errno.EFBIG:
        return "file too large (the file size limit is reached)"
    if code is not None and code in errno.errorcode:
        return os.strerror(code).lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def ensure_out_dir(out: Path) -> Path:
    """Create ``out`` (with its parents) or raise a one-line OutputError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"cannot create --out {out}: {blocker} is a regular file, not a directory") from None
        raise OutputError(f"cannot create --out {out}: {describe_os_error(exc)}") from None
    return out


class RunLock:
    """Exclusive lock on a run's output directory (a context manager).

    Raises RunLockedError naming the holder's pid (also its ``pid``
    attribute) when another process holds it, and OutputError when the
    directory cannot be written (read-only).

    Parameters
    ----------
    out : path-like
        The directory; the lock is its ``run.lock``.
    cleanup : {"keep", "created", "own"}
        What becomes of ``run.lock`` on release: kept (annotate's, which
        names the last run's pid); deleted when this lock created it (a tool
        that only passes through a directory, such as ``shards convert``,
        leaves none behind, and a lock file that was there stays); or
        deleted when this lock created it or found it left by a lock of its
        own ``kind`` (an export's folder, where a lock file left by a killed
        export would stay among the exported files; an annotate run's lock
        file, met by an export into the shard folder, stays). The file is
        deleted while still locked, and a locker that took an already
        deleted file (opened just before the deletion) notices and takes the
        new one.
    kind : str
        What holds the lock (``"export"``), written on the lock file's
        second line after the pid; ``""`` writes the pid alone.
    """

    def __init__(self, out, *, cleanup: str = "keep", kind: str = ""):
        if cleanup not in ("keep", "created", "own"):
            raise ValueError(f"cleanup must be 'keep', 'created' or 'own', got {cleanup!r}")
        if cleanup == "own" and not kind:
            raise ValueError("cleanup='own' needs the lock's kind")
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.cleanup = cleanup
        self.kind = kind
        self._fh = None
        self._created = False
        self._found_kind = ""

    def _open(self):
        """(file object, whether this call created the file)."""
        try:
            return os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), "r+"), True
        except FileExistsError:
            return os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+"), False

    def acquire(self) -> "RunLock":
        for _ in range(100):
            try:
                fh, created = self._open()
            except OSError as exc:
                raise OutputError(f"cannot write to --out {self.out}: {describe_os_error(exc)}") from None
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = (fh.read().split() or [None])[0]
                fh.close()
                raise RunLockedError(
                    f"{self.out} is in use by another ffmask run (pid {holder or 'unknown'}); "
                    "wait for it to finish or pick another --out", pid=holder
                ) from None
            if self._still_the_file(fh):
                break
            fh.close()  # its holder deleted it on release: lock the file that is there now
        else:  # pragma: no cover - would need another process deleting the file 100 times in a row
            raise OutputError(f"cannot write to --out {self.out}: {self.path} keeps being replaced")
        try:
            fh.seek(0)
            found = fh.read().split("\n")  # "pid" or "pid\nkind": who held it last
            fh.seek(0)
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n{self.kind}\n" if self.kind else f"{os.getpid()}\n")
            fh.flush()
        except OSError as exc:
            try:
                fh.close()  # flushes the pid again: fails the same way on a full disk
            except OSError:
                pass
            raise OutputError(f"cannot write to --out {self.out}: {describe_os_error(exc)}") from None
        self._fh, self._created = fh, created
        self._found_kind = found[1].strip() if len(found) > 1 else ""
        return self

    def _still_the_file(self, fh) -> bool:
        try:
            now, held = os.stat(self.path), os.fstat(fh.fileno())
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self._fh is not None:
            if self.cleanup != "keep" and (self._created or (self.cleanup == "own" and self._found_kind == self.kind)):
                try:
                    os.unlink(self.path)  # still locked: nobody else holds it now
                except OSError:
                    pass
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


#: What :func:`writing` adds by default: the run resumes (annotate, train).
RERUN_TO_RESUME = "fix that and rerun the same command to resume"
#: For a write that a rerun simply redoes (a report, an export, a JSON file).
RERUN = "fix that and rerun the same command"
#: For a command that refuses a non-empty output folder without ``--overwrite`` (synth).
RERUN_OVERWRITE = "fix that and rerun the same command with --overwrite"


def write_failure(exc: BaseException):
    """The reason of a failed write in a few words, or None when ``exc`` is no write failure.

    An OSError, or a library error that carries the OS error in its text:
    h5py's RuntimeError ("... errno = 28, error message = ..."), safetensors'
    SafetensorError ("... File too large (os error 27)").
    """
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if not isinstance(exc, Exception):
        return None
    code = _errno_in_text(exc)
    return None if code is None else describe_os_error(OSError(code, ""))


def lock_holder(directory) -> "str | None":
    """The pid of the process holding ``directory``'s run lock right now, or None.

    Read from ``/proc/locks`` (Linux), so asking takes no lock and never
    stands in a starting run's way; None as well where there is no lock
    file or ``/proc/locks`` cannot be read.
    """
    try:
        st = os.stat(Path(directory) / LOCK_FILE)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 8575 fe:00:2794381 0 EOF" (a waiter has "->" first)
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE" and parts[5] == want:
            return parts[4]
    return None


@contextmanager
def writing(what, *, tmp=None, then: str = RERUN_TO_RESUME):
    """Turn a failed write of ``what`` into one line, the one style of every ffmask write.

    Parameters
    ----------
    what : str or path-like
        The file (or folder) being written, as the message names it.
    tmp : path-like, optional
        A temporary file the write goes through, deleted on failure (the
        file ``what`` keeps its previous content).
    then : str
        What the person should do, after the reason ("" for nothing).

    Raises
    ------
    OutputError
        ``cannot write shard-00003.h5: no space left on device; fix that and
        rerun the same command to resume``, for an OSError or a library error
        carrying one (:func:`write_failure`); anything else passes through.
    """
    try:
        yield
    except Exception as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise OutputError(f"cannot write {what}: {reason}" + (f"; {then}" if then else "")) from None


# The shard a worker is writing, deleted by the owner watch if the run dies. ``_marking`` is
# held while the shard file is created and marked (so the watch never sees a file that exists
# but is not marked yet), and taken for good by the watch before it deletes the file and exits.
_writing_now: list = [None]
_watched_owner: list = [None]
_marking = threading.Lock()


@contextmanager
def shard_in_progress(tmp_path: Path, create: Callable[[], T]) -> Iterator[T]:
    """Create the shard this process writes and mark it for :func:`exit_with_owner`.

    ``create()`` makes the file ``tmp_path`` (e.g. a ShardWriter) and its
    result is what the block gets. The file is marked before it is created,
    under a lock the owner watch also takes, so a run killed at any moment,
    even while the file is being created, leaves no unfinished shard: the
    watch waits for the creation to end, then deletes the file.
    """
    with _marking:
        _writing_now[0] = Path(tmp_path)
        try:
            made = create()
        except BaseException:
            _writing_now[0] = None
            raise
    try:
        yield made
    finally:
        _writing_now[0] = None


def exit_with_owner(owner_pid: int) -> None:
    """In a local worker process of a run, exit (deleting the unfinished
    shard) as soon as the run's own process dies, so no orphan keeps writing.

    Does nothing in the run's own process and on remote (Dask) workers,
    whose parent is not the run.
    """
    if not owner_pid or owner_pid == os.getpid() or os.getppid() != owner_pid:
        return
    if _watched_owner[0] == owner_pid:
        return
    _watched_owner[0] = owner_pid

    def watch():
        while os.getppid() == owner_pid:
            time.sleep(0.5)
        _marking.acquire()  # never released: the process ends here, and no shard is created meanwhile
        tmp = _writing_now[0]
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        os._exit(1)

    threading.Thread(target=watch, name="ffmask-exit-with-owner", daemon=True).start()
