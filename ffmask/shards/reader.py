"""``ShardDataset``: shards as a PyTorch dataset, safe with many DataLoader workers."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ffmask.shards.index import ShardIndex, find_shards
from ffmask.shards.schema import STRING_FIELDS

__all__ = ["ShardDataset", "find_shards"]


class ShardDataset(Dataset):
    """Faces of HDF5 shards as training samples.

    Parameters
    ----------
    paths : a directory (all ``*.h5`` in it, sorted; never ``*.h5.tmp``),
        a shard file, or a list of them.
    maps : names of the maps to return; every shard must have each of them
        (otherwise FFMaskError naming the shard and its available maps).
    transform : optional callable applied to the whole sample dict (so one
        random crop/flip can be applied to the image and its maps alike);
        it must return the sample.
    return_meta : include the ``"meta"`` dict (strings do not batch into
        tensors, so leave it off for the fastest loading).
    direct : decompress faces' chunks without HDF5's filter pipeline (the
        default, faster; the same arrays); False reads through HDF5 (see
        :class:`ShardIndex`).

    A sample is ``{"image": uint8 (3,S,S), "maps": {name: float32 (S,S) for
    mask/continuous, float32 (3,S,S) for noise}, "label": int64 scalar
    (0 real, 1 fake, -1 unknown), "meta": {"video_id", "original_id",
    "manipulation", "compression", "split": str, "frame_index": int}}``
    plus one float32 scalar tensor per extra present in every shard (e.g.
    ``"focus_prob"``).

    Files are opened lazily in the process that reads them and reopened
    after a fork, so the dataset works with ``DataLoader(num_workers>0)``
    under both the fork and spawn start methods. ``labels`` (int8 (N,))
    gives every face's label without reading images, for samplers.

    ``__getitems__(indices)`` returns ``[self[i] for i in indices]`` read
    shard by shard (:meth:`ShardIndex.read_many`); a DataLoader with a
    ``batch_size`` calls it once per batch (so does ``Subset``'s), then
    collates the list as before.
    """

    def __init__(
        self,
        paths,
        maps: Sequence[str] = (),
        *,
        transform: Optional[Callable[[dict], dict]] = None,
        return_meta: bool = True,
        direct: bool = True,
    ):
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        self.index = ShardIndex(paths, maps, direct=direct)
        self.transform = transform
        self.return_meta = bool(return_meta)

    @property
    def paths(self):
        return self.index.paths

    @property
    def maps(self) -> dict[str, str]:
        """Requested map name -> kind ("mask", "continuous" or "noise")."""
        return dict(self.index.map_kinds)

    @property
    def extras(self) -> tuple[str, ...]:
        return self.index.extras

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        return self._sample(self.index.read(i, channels_first=True, float32=True, meta=self.return_meta))

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """``[self[i] for i in indices]`` (the same samples, in that order), read shard by shard.

        PyTorch's DataLoader calls this with each batch's indices when
        ``batch_size`` is set (then ``default_collate`` stacks the list). See
        :meth:`ShardIndex.read_many`: each shard is looked up once per batch
        and its faces are read in file order.
        """
        faces = self.index.read_many(indices, channels_first=True, float32=True, meta=self.return_meta)
        return [self._sample(face) for face in faces]

    def _sample(self, face: dict) -> dict:
        """A sample (see the class docstring) from ``ShardIndex.read(..., channels_first=True, float32=True)``."""
        maps = {}
        for name, kind in self.index.map_kinds.items():
            values = face["maps"][name]
            if kind == "noise":
                values = np.ascontiguousarray(values.transpose(2, 0, 1))
            maps[name] = torch.from_numpy(values)
        # Scalars through 0-d arrays: torch.tensor(x) costs ~10x torch.from_numpy.
        sample = {"image": torch.from_numpy(face["image"]), "maps": maps,
                  "label": torch.from_numpy(np.array(face["label"], np.int64))}
        for name in self.index.extras:
            sample[name] = torch.from_numpy(np.array(face[name], np.float32))
        if self.return_meta:
            meta = {name: face[name] for name in STRING_FIELDS}
            meta["frame_index"] = face["frame_index"]
            sample["meta"] = meta
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return (f"ShardDataset({len(self.paths)} shard(s), {len(self)} faces, "
                f"maps={list(self.index.map_kinds)}, extras={list(self.extras)})")
