"""Rewrite version-1 shards as compact version-2 shards (or re-encode version 2), atomically.

Each shard is re-encoded through :class:`ffmask.shards.ShardWriter` into
``<shard>.tmp`` and renamed over the original only when complete, so a
shard is at every moment either the untouched v1 file or the finished v2
file; a killed conversion leaves at most a ``.tmp`` behind (which readers
never pick up and the next conversion overwrites).

A conversion holds the run lock (:class:`ffmask.outdir.RunLock`,
``run.lock``) of every shard directory it rewrites, the lock ``annotate``
holds on its ``--out``: a conversion is refused while an annotate run (or
another conversion) writes there, and the other way round, so a shard a
resume redoes is never overwritten by the converted old file. A ``run.lock``
the conversion created is deleted when it is done (one that was there, e.g.
annotate's, stays).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ffmask.errors import FFMaskError, OutputError, RunLockedError
from ffmask.outdir import RunLock, writing
from ffmask.shards.index import find_shards, open_h5, shard_extras
from ffmask.shards.codec import DEFAULT_IMAGE_CODEC
from ffmask.shards.layout import ShardLayout
from ffmask.shards.runconfig import config_of_open
from ffmask.shards.schema import SCHEMA_VERSION, STRING_FIELDS
from ffmask.shards.writer import FaceRecord, ShardWriter

__all__ = ["ConvertResult", "convert_shard", "convert_shards"]

_BLOCK = 64


@dataclass
class ConvertResult:
    path: Path
    faces: int
    bytes_before: int
    bytes_after: int
    converted: bool  # False: already at the current version, left alone


def _records(f, layout: ShardLayout, extras: list[str]):
    """Every face of an open shard as FaceRecords carrying the arrays readers get."""
    strings = {name: f[name].asstr()[()] for name in STRING_FIELDS}
    label, frame_index = f["label"][()], f["frame_index"][()]
    box, landmarks = f["box"][()], f["landmarks"][()]
    extra_cols = {name: f[name][()] for name in extras}
    # A version-2 map stored at a model's grid (focus) stays at its grid: the
    # writer stores k / 255 as the same k again.
    grids = {name: f["maps"][name] for name in layout.kinds
             if layout.version == 2 and f["maps"][name].attrs.get("grid") is not None}
    # Scaled noise keeps its steps, hence its integers: it reads back bit for bit;
    # derived noise keeps its σ.
    steps = {name: ("step" if encoding == "scaled" else "sigma", layout.steps(name))
             for name, encoding in layout.encodings.items() if encoding in ("scaled", "derived")}
    for start in range(0, layout.n, _BLOCK):
        stop = min(layout.n, start + _BLOCK)
        images = layout.images(start, stop)
        maps = {name: layout.maps_block(name, start, stop, images=images) if name not in grids
                else grids[name][start:stop].astype(np.float32) / np.float32(255.0) for name in layout.kinds}
        for i in range(stop - start):
            row = start + i
            lms = landmarks[row]
            yield FaceRecord(
                image=images[i],
                maps={name: block[i] for name, block in maps.items()},
                label=int(label[row]),
                frame_index=int(frame_index[row]),
                box=box[row],
                landmarks=None if np.isnan(lms).all() else lms,
                extras={name: float(col[row]) for name, col in extra_cols.items()},
                map_params={name: {key: float(col[row])} for name, (key, col) in steps.items()},
                **{name: str(strings[name][row]) for name in STRING_FIELDS},
            )


def convert_shard(path, *, image_codec: str = DEFAULT_IMAGE_CODEC, jpeg_quality: Optional[int] = None,
                  map_predictor: str = "auto", map_packing: str = "auto") -> ConvertResult:
    """Rewrite the shard at ``path`` in schema version 2 (in place, atomically).

    A version-2 shard whose images use another codec, or whose maps another
    predictor or packing than ``map_predictor`` / ``map_packing`` ask, is
    re-encoded too (e.g. a "delta" shard of an earlier ffmask into
    "gradient", ~28 % smaller on the demo); "auto" accepts any choice an
    "auto" writer made, but not a map written before packings existed (no
    ``packing`` attr), which is re-encoded so that "auto" may pack it (the
    demo's noise: 53.7 -> 50.0 KiB per face). A version-2 shard written
    without chunk checksums (before they were added) is rewritten with them.
    Its maps keep their values.

    Images and maps come back from the new file exactly as from the old one
    (images bit for bit with a lossless ``image_codec``; continuous maps to
    1/510, noise to 1 % of each face's range: see :mod:`ffmask.shards.codec`;
    a version-2 shard's maps re-encode to the same integers, so they read
    back unchanged). A shard already at version 2 with this image codec,
    these map predictors and checksums is left alone. Raises FFMaskError for an
    unreadable shard or one with an unknown map layout, RunLockedError
    while another ffmask run holds the lock of the shard's directory.
    """
    path = Path(path)
    with _locked([path.parent]):
        return _convert_shard(path, image_codec=image_codec, jpeg_quality=jpeg_quality,
                              map_predictor=map_predictor, map_packing=map_packing)


@contextmanager
def _locked(dirs):
    """Hold the run lock of every directory in ``dirs``; one-line errors when one cannot be taken."""
    with ExitStack() as stack:
        for directory in sorted(set(Path(d).resolve() for d in dirs)):
            lock = RunLock(directory, cleanup="created")  # a lock file it made goes when it is done
            try:
                stack.enter_context(lock)
            except RunLockedError as exc:
                raise RunLockedError(f"{directory} is in use by another ffmask run (pid {exc.pid or 'unknown'}); "
                                     "wait for it to finish, then convert its shards", pid=exc.pid) from None
            except OutputError as exc:  # "cannot write to --out DIR: why": no --out here
                raise OutputError(str(exc).replace("cannot write to --out ", "cannot convert the shards in ", 1)) \
                    from None
        yield


def _convert_shard(path: Path, *, image_codec: str, jpeg_quality: Optional[int], map_predictor: str,
                   map_packing: str) -> ConvertResult:
    """:func:`convert_shard` with its directory's lock already held."""
    before = path.stat().st_size
    with open_h5(path) as f:
        try:
            layout = ShardLayout(f)
        except ValueError as exc:
            raise FFMaskError(f"{path}: {exc}") from None
        quality = f["images"].attrs.get("quality")
        if layout.version == SCHEMA_VERSION and layout.image_codec == image_codec and \
                (quality is None or int(quality) == jpeg_quality) and \
                all(_layout_as_asked(f, layout, name, map_predictor, map_packing) for name in layout.kinds) and \
                _checksummed(f):
            return ConvertResult(path, layout.n, before, before, False)
        unknown = [name for name, kind in layout.kinds.items() if kind is None]
        if unknown:
            raise FFMaskError(f"{path}: maps {unknown} have an unknown layout; cannot convert")
        if layout.size is None:
            raise FFMaskError(f"{path}: cannot tell the crop size of this shard")
        config = config_of_open(f) or {}
        extras = shard_extras(f)
        derived = "derived" in layout.encodings.values()
        try:
            writer = ShardWriter(path, size=layout.size, maps=dict(layout.kinds), config=config, extras=extras,
                                 image_codec=image_codec, jpeg_quality=jpeg_quality,
                                 noise_storage="derived" if derived else "scaled",
                                 map_predictor=map_predictor, map_packing=map_packing)
        except ValueError as exc:  # e.g. derived noise cannot go with lossy jpeg images
            raise FFMaskError(f"{path}: {exc}") from None
        # a full disk is one line naming the shard (the tmp file is deleted, the shard keeps its old content)
        with writing(path, then="fix that and rerun the same command (converted shards are kept)"), writer:
            for record in _records(f, layout, extras):
                writer.append(record)
            # close() inside the block: the old file is still open for reading,
            # and the rename replaces its directory entry only.
            writer.close()
        n = layout.n
    return ConvertResult(path, n, before, path.stat().st_size, True)


def _checksummed(f) -> bool:
    """Every fixed-size dataset carries HDF5's Fletcher-32 checksum (version 2 shards written since session 9)."""
    import h5py

    datasets = []
    f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return all(ds.fletcher32 for ds in datasets if ds.dtype.kind in "iuf")


def _layout_as_asked(f, layout: ShardLayout, name: str, map_predictor: str, map_packing: str) -> bool:
    """Whether map ``name`` is stored as a rewrite would store it (as ShardWriter chooses; "auto": any choice)."""
    full = layout.stored_map_shape(name)[1:] in ((layout.size, layout.size), (layout.size, layout.size, 3))
    predictor, packing = layout.predictors[name], layout.packings[name]
    if not (layout.encodings[name] in ("uint8/255", "scaled") and full):
        return predictor == "none" and packing == "none"
    if "auto" in (map_predictor, map_packing) and "packing" not in f["maps"][name].attrs:
        return False  # written before packings existed: "auto" never weighed them
    return map_predictor in ("auto", predictor) and map_packing in ("auto", packing)


def convert_shards(paths, *, image_codec: str = DEFAULT_IMAGE_CODEC, jpeg_quality: Optional[int] = None,
                   map_predictor: str = "auto", map_packing: str = "auto",
                   on_shard: Optional[Callable[[ConvertResult], None]] = None) -> list[ConvertResult]:
    """:func:`convert_shard` on every shard at ``paths`` (directory, file or list); in order.

    Takes the run lock of every directory holding one of them before the
    first is rewritten (RunLockedError, nothing converted, while another
    ffmask run holds one) and keeps them until the last is done.
    """
    results = []
    shards = find_shards(paths)
    with _locked(path.parent for path in shards):
        for path in shards:
            result = _convert_shard(path, image_codec=image_codec, jpeg_quality=jpeg_quality,
                                    map_predictor=map_predictor, map_packing=map_packing)
            results.append(result)
            if on_shard is not None:
                on_shard(result)
    return results
