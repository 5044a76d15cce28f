"""``ShardDataset``: shards as a PyTorch dataset, safe with many DataLoader workers."""

from __future__ import annotations

from contextlib import closing
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from ffmask.errors import FFMaskError
from ffmask.shards.codec import UINT8_255_VALUES
from ffmask.shards.index import ShardIndex, find_shards
from ffmask.shards.schema import STRING_FIELDS

__all__ = ["MAPS_AS", "BatchedShards", "ShardDataset", "find_shards", "maps_to_float32"]

#: What ``ShardDataset(maps_as=...)`` accepts.
MAPS_AS = ("float32", "stored")
# Each form's dtype in a sample (torch), and the device copies of the uint8/255 table.
_FORM_DTYPES = {"float32": torch.float32, "uint8": torch.uint8, "uint8/255": torch.uint8, "float16": torch.float16}
_TABLES: dict = {}
_ALIGN = 64  # bytes: every array of a batch block starts on a cache line


def maps_to_float32(maps: dict, forms: dict) -> dict:
    """Maps of a ``maps_as="stored"`` sample or collated batch -> the float32 maps of the default.

    Parameters
    ----------
    maps : name -> tensor, as :class:`ShardDataset` returns them (one
        sample's (S,S) / (3,S,S) or a batch's (B,S,S) / (B,3,S,S)), on any
        device (the conversion runs there: on the GPU after the copy).
    forms : name -> form, :attr:`ShardDataset.map_forms`:

        - ``"uint8"`` (masks): uint8 {0, 1} -> float32 0.0 / 1.0;
        - ``"uint8/255"`` (full-size continuous maps): uint8 k -> float32
          ``UINT8_255_VALUES[k]`` = float16(k / 255) widened, a table
          lookup (not ``k / 255``, which differs in the low bits);
        - ``"float16"`` (noise, grid or v1 continuous maps): widened;
        - ``"float32"``: returned as it is (the default dataset).

    Returns a new dict of float32 tensors bit for bit equal to what
    ``maps_as="float32"`` returns. A map whose dtype is not its form's
    raises ValueError (a batch converted twice, or the wrong dataset's forms).
    """
    out = {}
    for name, values in maps.items():
        form = forms[name]
        if values.dtype != _FORM_DTYPES[form]:
            raise ValueError(f"map {name!r} should be {_FORM_DTYPES[form]} for form {form!r}, got {values.dtype}")
        if form == "uint8/255":
            table = _TABLES.get(values.device)
            if table is None:
                table = _TABLES[values.device] = torch.from_numpy(UINT8_255_VALUES.copy()).to(values.device)
            # int32 indices: index_select is ~4x table[values.long()] on CPU torch (the same values)
            values = torch.index_select(table, 0, values.reshape(-1).int()).view(values.shape)
        elif form != "float32":
            values = values.float()
        out[name] = values
    return out


_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float16): torch.float16,
                 np.dtype(np.float32): torch.float32, np.dtype(np.int64): torch.int64}


def _meta(face: dict) -> dict:
    """A sample's ``"meta"``: the string fields and ``frame_index`` of a face from ``ShardIndex.read``."""
    meta = {name: face[name] for name in STRING_FIELDS}
    meta["frame_index"] = face["frame_index"]
    return meta


class BatchedShards(Dataset):
    """A dataset of whole batches: item ``indices`` (a list of face indices) -> ``source.batch(indices)``.

    For a DataLoader with ``batch_size=None`` and a batch sampler as its
    ``sampler``: each worker then reads, collates and returns its batch in
    one shared block (:meth:`ShardDataset.batch`), and the DataLoader does
    not stack it again. ``source``: a :class:`ShardDataset`, or any object
    with ``batch(indices) -> batch`` and ``len()`` (ffmask's training wrappers).
    """

    def __init__(self, source) -> None:
        if not callable(getattr(source, "batch", None)):
            raise TypeError(f"{type(source).__name__} has no batch(indices) method")
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, indices) -> dict:
        if isinstance(indices, (int, np.integer)):
            raise TypeError("BatchedShards items are batches: index it with a list of face indices "
                            "(DataLoader(batch_size=None, sampler=<a batch sampler>))")
        return self.source.batch(list(indices))


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
    maps_as : ``"float32"`` (the default): maps as float32, as below.
        ``"stored"``: each map in its compact exact form, not widened
        (:attr:`map_forms`): masks uint8 (S,S) {0, 1}; full-size continuous
        maps uint8 (S,S) k (the value is float16(k / 255)); noise float16
        (3,S,S); continuous maps stored at a coarser grid (``focus``) or in a
        v1 shard float16 (S,S). A quarter (uint8) or half (float16) of a
        map's bytes to decode, collate into shared memory and copy to the GPU;
        :meth:`to_float32` (or :func:`maps_to_float32`) then gives, on the
        GPU, exactly the float32 maps of the default.

    A sample is ``{"image": uint8 (3,S,S), "maps": {name: float32 (S,S) for
    mask/continuous, float32 (3,S,S) for noise (with ``maps_as="stored"``:
    the forms above)}, "label": int64 scalar
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
    collates the list as before. :meth:`batch` returns that collated batch
    built in one block of memory, the face copied in as it is decoded (for
    ``DataLoader(BatchedShards(ds), batch_size=None, sampler=BatchSampler(...))``).

    A trainer that wants the compact samples (the default stays float32)::

        ds = ShardDataset("shards/", maps=["mscc", "ssim"], maps_as="stored", return_meta=False)
        loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=4, pin_memory=True)
        for batch in loader:
            image = batch["image"].cuda(non_blocking=True)
            maps = maps_to_float32({m: v.cuda(non_blocking=True) for m, v in batch["maps"].items()}, ds.map_forms)
            # maps["ssim"]: float32 (B,S,S) on the GPU, bit for bit the default batch's

    A ``transform`` sees the stored forms: geometric ones (crops, flips)
    work on any dtype; anything arithmetic belongs after :meth:`to_float32`.
    """

    def __init__(
        self,
        paths,
        maps: Sequence[str] = (),
        *,
        transform: Optional[Callable[[dict], dict]] = None,
        return_meta: bool = True,
        direct: bool = True,
        maps_as: str = "float32",
    ):
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        if maps_as not in MAPS_AS:
            raise ValueError(f"maps_as must be one of {', '.join(map(repr, MAPS_AS))}, got {maps_as!r}")
        self.maps_as = maps_as
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
    def map_forms(self) -> dict[str, str]:
        """Requested map name -> the form of its values in a sample (see :func:`maps_to_float32`).

        ``"float32"`` for every map with ``maps_as="float32"``; with
        ``"stored"``: ``"uint8"`` (masks), ``"uint8/255"`` (full-size
        continuous maps stored as uint8 in every shard) or ``"float16"``.
        """
        if self.maps_as == "float32":
            return {name: "float32" for name in self.index.map_kinds}
        return dict(self.index.map_forms)

    def to_float32(self, batch: dict) -> dict:
        """A sample or collated batch with its ``"maps"`` as float32 (on their device), the rest as it is.

        Identical to the default (``maps_as="float32"``) sample's maps, bit
        for bit; returns a new dict (a default dataset's batch unchanged).
        """
        return {**batch, "maps": maps_to_float32(batch["maps"], self.map_forms)}

    @property
    def extras(self) -> tuple[str, ...]:
        return self.index.extras

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        return self._sample(self.index.read(i, **self._read_options()))

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """``[self[i] for i in indices]`` (the same samples, in that order), read shard by shard.

        PyTorch's DataLoader calls this with each batch's indices when
        ``batch_size`` is set (then ``default_collate`` stacks the list). See
        :meth:`ShardIndex.read_many`: each shard is looked up once per batch
        and its faces are read in file order.
        """
        faces = self.index.read_many(indices, **self._read_options())
        return [self._sample(face) for face in faces]

    def batch(self, indices: Sequence[int], *, maps: Optional[Sequence[str]] = None,
              shared: Optional[bool] = None) -> dict:
        """The collated batch of faces ``indices``: ``default_collate(self.__getitems__(indices))``, cheaper.

        The same keys, dtypes, shapes and values (``"image"`` uint8 (B,3,S,S),
        ``"maps"`` {name: (B,S,S) or (B,3,S,S)}, ``"label"`` int64 (B,), each
        extra float32 (B,), ``"meta"`` as ``default_collate`` makes it), but
        every tensor is a view of ONE block of memory, and each face is
        copied into it as soon as it is decoded (while its arrays are in the
        cache; they are dropped before the next face is read) instead of a
        batch of per-face samples being kept and stacked afterwards.

        ``maps``: which of the dataset's maps to read (default all; the
        batch's ``"maps"`` then holds only those, the others are not read
        unless a ``transform`` needs whole samples; a ValueError names a map
        the dataset lacks).
        ``shared``: allocate the block in shared memory (what a DataLoader
        worker must return); None (the default) does so exactly when called
        in a DataLoader worker, as ``default_collate`` does. With a
        ``transform`` the samples are transformed one by one and collated by
        ``default_collate`` (a transform may change anything).

        A DataLoader that gets its batches from its workers this way (no
        second copy into shared memory)::

            loader = DataLoader(BatchedShards(ds), batch_size=None,
                                sampler=BatchSampler(RandomSampler(ds), 32, drop_last=True), num_workers=4)

        Faces of different sizes in one batch raise FFMaskError.
        """
        names = self.index.map_names(maps)
        if self.transform is not None:  # the transform sees whole samples; the batch keeps the maps asked for
            out = default_collate(self.__getitems__(indices))
            if maps is not None:
                out["maps"] = {name: out["maps"][name] for name in names}
            return out
        if shared is None:
            shared = get_worker_info() is not None
        n = len(indices)
        views: Optional[dict] = None
        metas: list = [None] * n if self.return_meta else []
        faces = self.index.iter_many(indices, maps=names, **self._read_options())
        with closing(faces):  # an error (a damaged face, another size) releases the shard's file at once
            for k, face in faces:
                if views is None:
                    views, out = self._batch_block(face, n, shared, names)
                self._put(views, k, face, names)
                if self.return_meta:
                    metas[k] = _meta(face)
        if views is None:
            raise ValueError("a batch needs at least one face index")
        if self.return_meta:
            out["meta"] = default_collate(metas)
        return out

    def _batch_block(self, face: dict, n: int, shared: bool, names: tuple) -> tuple[dict, dict]:
        """(numpy views to fill, the batch of torch views) of one new block for ``n`` faces shaped like ``face``."""
        fields = [("label", np.dtype(np.int64), ())] + [(name, np.dtype(np.float32), ()) for name in self.extras]
        if "image" in face:
            fields.append(("image", face["image"].dtype, face["image"].shape))
        for name in names:
            values = face["maps"][name]
            shape = (values.shape[2], *values.shape[:2]) if self.index.map_kinds[name] == "noise" else values.shape
            fields.append((("maps", name), values.dtype, shape))
        offsets, total = [], 0
        for _, dtype, shape in fields:
            offsets.append(total)
            total += -(-n * dtype.itemsize * int(np.prod(shape, dtype=np.int64)) // _ALIGN) * _ALIGN
        storage = torch.UntypedStorage._new_shared(max(total, 1)) if shared else torch.UntypedStorage(max(total, 1))
        views, out = {}, {"maps": {}}
        for (key, dtype, shape), offset in zip(fields, offsets):
            tensor = torch.empty(0, dtype=_TORCH_DTYPES[dtype]).set_(storage, offset // dtype.itemsize, (n, *shape))
            views[key] = tensor.numpy()
            if isinstance(key, tuple):
                out["maps"][key[1]] = tensor
            else:
                out[key] = tensor
        return views, {k: out[k] for k in ("image", "maps", "label", *self.extras) if k in out}

    def _put(self, views: dict, k: int, face: dict, names: tuple) -> None:
        """Copy ``face`` (from ``ShardIndex.read``) into row ``k`` of a batch block's views."""
        pairs = [(views["image"][k], face["image"])] if "image" in views else []
        for name in names:
            values = face["maps"][name]
            noise = self.index.map_kinds[name] == "noise"
            pairs.append((views[("maps", name)][k], values.transpose(2, 0, 1) if noise else values))
        for target, values in pairs:
            if target.shape != values.shape:
                raise FFMaskError(f"one batch needs faces of one size: an array of {tuple(values.shape)} "
                                  f"after {tuple(target.shape)}")
            target[...] = values
        views["label"][k] = face["label"]
        for name in self.extras:
            views[name][k] = face[name]

    def _read_options(self) -> dict:
        stored = self.maps_as == "stored"
        return {"channels_first": True, "float32": not stored, "compact": stored, "meta": self.return_meta}

    def _sample(self, face: dict) -> dict:
        """A sample (see the class docstring) from ``ShardIndex.read(..., **self._read_options())``."""
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
            sample["meta"] = _meta(face)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return (f"ShardDataset({len(self.paths)} shard(s), {len(self)} faces, "
                f"maps={list(self.index.map_kinds)}, extras={list(self.extras)}"
                + (f", maps_as={self.maps_as!r})" if self.maps_as != "float32" else ")"))
