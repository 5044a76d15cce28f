"""Read every face of a run back through the public reader (any schema version).

Tests compare what annotate wrote with independent computations; they read
through :class:`ffmask.shards.ShardIndex`, the reader contract, not raw
HDF5 datasets (version 2 stores images and maps encoded).
"""

from __future__ import annotations

from pathlib import Path

import h5py

from ffmask.shards import ShardIndex, find_shards, validate_shard


def read_faces(out: Path, *, validate: bool = True) -> list[dict]:
    """Every face of the shards under ``out``, in shard order.

    Each face: ``image`` uint8 (S,S,3), ``maps`` {name: array as stored for
    users}, ``label``, the string fields, ``frame_index``, ``box`` (list of 4
    ints), ``landmarks`` float32 (68,2) and any extras.
    """
    faces = []
    for path in find_shards(out):
        if validate:
            assert validate_shard(path) == []
        with h5py.File(path, "r") as f:  # structure only: which maps this shard has
            names = sorted(f["maps"]) if "maps" in f else []
        index = ShardIndex([path], names)
        for i in range(len(index)):
            face = index.read(i, geometry=True)
            face["box"] = face["box"].tolist()
            faces.append(face)
    return faces
