"""Load a repository script (under ``scripts/`` or ``benchmarks/``) as a module, for tests of its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str, name: str | None = None) -> ModuleType:
    """The module of the file ``rel`` (relative to the repository root), executed fresh."""
    path = ROOT / rel
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
