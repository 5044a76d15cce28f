"""ffmask: pixel-level supervision for face-forgery video datasets.

``from ffmask import targets, ShardDataset`` is the stable public API; see
DESIGN.md. Heavy modules (torch, dlib, av) load only when used.
"""

from __future__ import annotations

from ffmask import _compat

__version__ = "0.1.0"

_compat.install()

__all__ = ["__version__", "targets", "ShardDataset"]


def __getattr__(name: str):
    if name == "targets":
        import importlib

        return importlib.import_module("ffmask.targets")
    if name == "ShardDataset":
        from ffmask.shards.reader import ShardDataset

        return ShardDataset
    raise AttributeError(f"module 'ffmask' has no attribute {name!r}")
