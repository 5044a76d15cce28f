"""Exceptions that carry a message meant for the person running ffmask."""


class FFMaskError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line."""


class VideoError(FFMaskError):
    """A video cannot be opened or decoded (missing, empty, truncated, corrupt)."""


class CheckpointError(FFMaskError):
    """A model checkpoint is untrusted, unreadable or does not match its config."""


class OptionError(FFMaskError, ValueError):
    """A run option holds a bad value (``--frames 0``, ``--noise-sigma nan``, ...).

    A ValueError for Python callers, a one-line error for the CLI. Raised
    before anything is written to ``--out``.
    """


class OutputError(FFMaskError):
    """``--out`` cannot be used or written: read-only, under a regular file,
    locked by another run, or the disk is full. The run can be resumed once
    the cause is fixed."""


class RunLockedError(OutputError):
    """Another ffmask run holds the lock on the same ``--out``.

    ``pid`` is the holder's process id as its lock file names it (a str), or
    None when the file names none (the holder had not written it yet).
    """

    def __init__(self, message: str, pid=None):
        super().__init__(message)
        self.pid = pid


class WorkerDiedError(FFMaskError):
    """A worker process died mid-task (killed, e.g. by the OOM killer); the
    finished shards are kept and rerunning the same command resumes."""
