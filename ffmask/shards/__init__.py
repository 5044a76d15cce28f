"""HDF5 shards: the atomic writer, the manifest, the schema check and the reader.

``ShardDataset``, ``BatchedShards`` and ``maps_to_float32`` (which import torch) load on first
use, so writing shards and ``ffmask info`` never pay for torch.
"""

from __future__ import annotations

from ffmask.shards.index import ShardIndex, find_shards
from ffmask.shards.manifest import MANIFEST_NAME, Manifest, missing_shards
from ffmask.shards.schema import MAP_KINDS, SCHEMA_VERSION, validate_shard
from ffmask.shards.summary import summarize_shards
from ffmask.shards.writer import FaceRecord, ShardWriter

__all__ = [
    "FaceRecord",
    "ShardWriter",
    "Manifest", "missing_shards",
    "MANIFEST_NAME",
    "ShardDataset", "BatchedShards", "maps_to_float32",
    "ShardIndex",
    "validate_shard",
    "summarize_shards",
    "find_shards",
    "SCHEMA_VERSION",
    "MAP_KINDS",
]


def __getattr__(name: str):
    if name in ("ShardDataset", "BatchedShards", "maps_to_float32"):
        from ffmask.shards import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'ffmask.shards' has no attribute {name!r}")
