"""Read any readable schema version of an open shard as version-1 arrays.

:class:`ShardLayout` wraps an open ``h5py.File``: it reads the encodings
of ``/images`` and ``/maps/*`` once, then returns faces exactly as users
have always got them (see :mod:`ffmask.shards.codec`). Every reader of
shards (``ShardIndex``, ``ffmask info``/``preview``, the schema check, the
v1 -> v2 converter) goes through it, so no reader knows a storage detail.
"""

from __future__ import annotations

import numpy as np

import hdf5plugin  # noqa: F401  (registers the Zstandard/Blosc HDF5 filters v2 shards use)

from ffmask.shards.codec import (IMAGE_CODECS, MAP_PACKINGS, MAP_PREDICTORS, decode_image, decode_image_chw,
                                 decode_map, decode_map_float32, float16_to_float32, unpack_map,
                                 unpredict_map)
from ffmask.shards.chunks import RowReader
from ffmask.shards.schema import MAP_STEPS, infer_map_kind, map_shape, shard_version

__all__ = ["ShardLayout"]

# Encodings whose stored array is already what readers return (v1 maps, masks).
_STORED_AS_READ = ("float16", "uint8")


def _attr(obj, name, default=None):
    value = obj.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


class ShardLayout:
    """Decoding view of an open shard ``f`` (schema version 1 or 2).

    Attributes: ``version`` (int), ``n`` (faces), ``size`` (crop side S or
    None for an empty v1 shard), ``image_codec``, ``kinds`` (map name ->
    kind or None), ``encodings`` (map name -> encoding), ``predictors``
    and ``packings`` (map name -> predictor / packing, "none" where the
    attr is absent).

    ``direct`` (default True): fixed-shape rows are read by a
    :class:`~ffmask.shards.chunks.RowReader`, which decompresses Blosc and
    Zstandard chunks itself; False reads them through HDF5's filters (the
    same arrays).

    Raises ValueError (one line) for an image codec, map predictor or
    packing this version of ffmask does not know, before any face is read.
    """

    def __init__(self, f, *, direct: bool = True):
        self.f = f
        self.direct = bool(direct)
        self.version = shard_version(f)
        images = f["images"]
        self.n = int(images.shape[0])
        self.image_codec = _attr(images, "codec", "raw")
        if self.image_codec not in IMAGE_CODECS:
            raise ValueError(f"/images has an unknown codec {self.image_codec!r} "
                             f"(this ffmask reads {', '.join(IMAGE_CODECS)})")
        size = _attr(images, "size")
        if size is None and images.ndim == 4:
            size = images.shape[2]
        self.size = None if size is None else int(size)
        self.kinds, self.encodings, self.predictors, self.packings = {}, {}, {}, {}
        for name, ds in f.get("maps", {}).items():
            kind = infer_map_kind(ds)
            self.kinds[name] = kind
            default = {"mask": "uint8", "continuous": "float16", "noise": "float16"}.get(kind)
            self.encodings[name] = _attr(ds, "encoding", default)
            self.predictors[name] = _attr(ds, "predictor", "none")
            if self.predictors[name] not in MAP_PREDICTORS:
                raise ValueError(f"/maps/{name} has an unknown predictor {self.predictors[name]!r} "
                                 f"(this ffmask reads {', '.join(MAP_PREDICTORS)})")
            self.packings[name] = _attr(ds, "packing", "none")
            if self.packings[name] not in MAP_PACKINGS:
                raise ValueError(f"/maps/{name} has an unknown packing {self.packings[name]!r} "
                                 f"(this ffmask reads {', '.join(MAP_PACKINGS)})")
        self._steps: dict[str, np.ndarray] = {}
        # Dataset handles looked up once: h5py's path lookup costs more than a small read.
        self._images = images
        self._maps = {name: ds for name, ds in f.get("maps", {}).items()}
        self._rows: dict = {}  # id(dataset) -> its RowReader (False: read through h5py)

    def _row(self, ds, row: int) -> np.ndarray:
        """``ds[row]`` of a dataset of this shard, as a new array.

        Fixed-shape numeric rows go through a :class:`RowReader` made once
        per dataset (the chunk decompressed here where it can, else HDF5
        with ready dataspaces: h5py's ``ds[row]`` parses the selection and
        builds both dataspaces on every call); variable-length bytes (PNG,
        JPEG images) through h5py.
        """
        reader = self._rows.get(id(ds))  # the datasets live as long as the layout: ids are stable
        if reader is None:
            numeric = ds.dtype.kind in "iuf" and ds.ndim >= 1
            reader = self._rows[id(ds)] = RowReader(ds, direct=self.direct) if numeric else False
        if reader is False:
            return ds[row]
        return reader(row)

    def _stored(self, name: str, row: int) -> np.ndarray:
        """Map ``name``'s stored integers of face ``row`` in the map's own shape (packed bytes unpacked)."""
        stored = self._row(self._maps[name], row)
        return self._unpack(name, stored)

    def _unpack(self, name: str, stored: np.ndarray) -> np.ndarray:
        packing = self.packings[name]
        if packing == "none":
            return stored
        kind = self.kinds[name]
        return unpack_map(stored, packing, map_shape(kind, self.size), np.int8 if kind == "noise" else np.uint8)

    def image(self, row: int) -> np.ndarray:
        """uint8 (S, S, 3) RGB of face ``row``."""
        return decode_image(self._row(self._images, row), self.image_codec, overwrite=True)

    def image_chw(self, row: int) -> np.ndarray:
        """uint8 (3, S, S) channel planes of face ``row`` (no HWC round trip for "delta")."""
        return decode_image_chw(self._row(self._images, row), self.image_codec, overwrite=True)

    def images(self, start: int, stop: int) -> np.ndarray:
        """uint8 (n, S, S, 3) of faces ``start:stop``."""
        stored = self._images[start:stop]
        if self.image_codec in ("raw", "blosc"):
            return stored
        if self.image_codec == "delta":
            return np.ascontiguousarray(np.cumsum(stored, axis=-2, dtype=np.uint8).transpose(0, 2, 3, 1))
        if not len(stored):
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([decode_image(b, self.image_codec) for b in stored])

    def steps(self, name: str) -> np.ndarray:
        """Per-face float32 (N,) step of scaled noise, or σ of derived noise (the map dataset itself)."""
        if name not in self._steps:
            source = self._maps[name] if self.encodings[name] == "derived" else self.f[MAP_STEPS][name]
            self._steps[name] = source[()].astype(np.float32)
        return self._steps[name]

    def map(self, name: str, row: int, image=None) -> np.ndarray:
        """Map ``name`` of face ``row`` in its v1 dtype (``image``: the face, if already read)."""
        kind, encoding, predictor = self.kinds[name], self.encodings[name], self.predictors[name]
        if encoding in _STORED_AS_READ and predictor == "none" and self.packings[name] == "none":
            return self._row(self._maps[name], row)
        step = self.steps(name)[row] if encoding in ("scaled", "derived") else None
        if encoding == "derived":
            return decode_map(None, kind, encoding, size=self.size, step=step,
                              image=self.image(row) if image is None else image)
        return decode_map(self._stored(name, row), kind, encoding, size=self.size, step=step,
                          predictor=predictor, overwrite=True)

    def map_float32(self, name: str, row: int, image=None) -> np.ndarray:
        """``map(name, row, image).astype(np.float32)``, without the float16 detour where it can."""
        kind, encoding = self.kinds[name], self.encodings[name]
        if encoding in ("uint8/255", "scaled"):
            step = self.steps(name)[row] if encoding == "scaled" else None
            return decode_map_float32(self._stored(name, row), kind, encoding, size=self.size, step=step,
                                      predictor=self.predictors[name], overwrite=True)
        return float16_to_float32(self.map(name, row, image=image))  # exact; OpenCV widens float16 ~10x faster

    def compact_form(self, name: str) -> str:
        """The cheapest exact form of map ``name``'s values (see :meth:`map_compact`).

        ``"uint8"`` for a mask (values 0 and 1), ``"uint8/255"`` for a
        full-size ``uint8/255`` continuous map (the stored k; the value is
        float16(k / 255)), ``"float16"`` for every other map (v1 float16
        maps, maps stored at a coarser grid, noise of every encoding): the
        float16 value itself, exactly what :meth:`map` returns.
        """
        kind = self.kinds[name]
        if kind == "mask":
            return "uint8"
        if kind == "continuous" and self.encodings[name] == "uint8/255" \
                and self.stored_map_shape(name)[-1] == self.size:
            return "uint8/255"
        return "float16"

    def map_compact(self, name: str, row: int, form: str, image=None) -> np.ndarray:
        """Map ``name`` of face ``row`` in ``form`` (its :meth:`compact_form`, or ``"float16"``).

        ``"uint8/255"``: the stored uint8 (S, S) k, not looked up (the map's
        compact form must be ``"uint8/255"``); any other form: :meth:`map`
        (uint8 masks, float16 continuous maps and noise).
        """
        if form == "uint8/255":
            return unpredict_map(self._stored(name, row), self.kinds[name], self.predictors[name], overwrite=True)
        return self.map(name, row, image=image)

    def maps_block(self, name: str, start: int, stop: int, images=None) -> np.ndarray:
        """Map ``name`` of faces ``start:stop`` in its v1 dtype."""
        kind, encoding, predictor = self.kinds[name], self.encodings[name], self.predictors[name]
        if encoding in _STORED_AS_READ and predictor == "none" and self.packings[name] == "none":
            return self._maps[name][start:stop]
        step = self.steps(name)[start:stop] if encoding in ("scaled", "derived") else None
        if encoding == "derived":
            return decode_map(None, kind, encoding, size=self.size, step=step,
                              image=self.images(start, stop) if images is None else images)
        return decode_map(self._unpack(name, self._maps[name][start:stop]), kind, encoding, size=self.size,
                          step=step, predictor=predictor)

    def stored_map_shape(self, name: str) -> tuple:
        """Shape of map ``name``'s stored integers, (N, g, g) or (N, S, S[, 3]) (packed bytes counted unpacked)."""
        shape = tuple(self.f["maps"][name].shape)
        if self.packings.get(name, "none") != "none":
            return (shape[0], *map_shape(self.kinds[name], self.size))
        return shape
