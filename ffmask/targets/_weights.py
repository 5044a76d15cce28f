"""Per-process cache of the weight files that learned target methods ship."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Optional


class WeightsCache:
    """Weights read once per resolved path and process (thread-safe).

    Parameters
    ----------
    what : str
        What the file holds, for the "not found" message ("hull selector weights").
    default : Path
        The shipped file, used when no path is given.
    read : callable
        ``read(path) -> weights``; raises ValueError with its own message on a
        bad file. Called at most once per path (a failure is not cached).
    """

    def __init__(self, what: str, default: Path, read: Callable[[Path], Any]):
        self.what, self.default, self.read = what, Path(default), read
        self._loaded: dict = {}
        self._lock = threading.Lock()

    def get(self, path: Optional[Path] = None) -> Any:
        """The weights of ``path`` (default: the shipped file); ValueError when it is missing or bad."""
        path = Path(path) if path is not None else self.default
        key = str(path.resolve())
        with self._lock:
            if key not in self._loaded:
                if not path.is_file():
                    raise ValueError(f"{self.what} {path} not found")
                self._loaded[key] = self.read(path)
            return self._loaded[key]
