"""The output directory of a run: create it, and hold it alone.

Two runs writing the same ``--out`` would overwrite each other's shards and
interleave their manifest lines. A run therefore holds an exclusive
``fcntl.flock`` on ``<out>/run.lock`` (which names its pid) from before it
reads ``run.json`` until it returns; a second run is refused with the first
one's pid. The kernel drops the lock when the holder dies, even by SIGKILL,
so a stale lock file never blocks a resume.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ffmask.errors import OutputError, RunLockedError

LOCK_FILE = "run.lock"


def describe_os_error(exc: OSError) -> str:
    """``exc``'s reason in a few words ("no space left on device"), lower case."""
    code = exc.errno if isinstance(exc.errno, int) else None
    if code is None:
        # h5py keeps the C errno inside its message: "... errno = 28, error message = ..."
        import re

        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
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

    Raises RunLockedError naming the holder's pid when another process holds
    it, and OutputError when the directory cannot be written (read-only).
    """

    def __init__(self, out):
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self._fh = None

    def acquire(self) -> "RunLock":
        try:
            fh = open(self.path, "a+")
        except OSError as exc:
            raise OutputError(f"cannot write to --out {self.out}: {describe_os_error(exc)}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise RunLockedError(
                f"{self.out} is in use by another ffmask run (pid {holder}); "
                "wait for it to finish or pick another --out"
            ) from None
        try:
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError as exc:
            fh.close()
            raise OutputError(f"cannot write to --out {self.out}: {describe_os_error(exc)}") from None
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
