"""The shard schema (versions 1 and 2) and a checker for it.

Readers get the same arrays from both versions (the *reader contract*):
``ShardIndex.read``/``ShardDataset`` return images uint8 (S, S, 3), masks
uint8 {0, 1}, continuous maps float16 (S, S) in [0, 1] and noise float16
(S, S, 3), whatever the file stores. Version 2 only changes how images and
maps are stored (compactly; see :mod:`ffmask.shards.codec`); the other
datasets are the same in both. Version 1, as written before::

    /images        uint8   (N, S, S, 3) RGB, one chunk per face
    /maps/<name>   uint8   (N, S, S)    {0, 1}      kind "mask"
                   float16 (N, S, S)    [0, 1]      kind "continuous"
                   float16 (N, S, S, 3) residual    kind "noise"
    /label         int8    (N,)  0 real, 1 fake, -1 unknown
    /video_id /original_id /manipulation /compression /split
                   UTF-8 variable-length strings (N,)
    /frame_index   int32   (N,)
    /box           int32   (N, 4)  x0, y0, x1, y1 in the source frame
    /landmarks     float32 (N, 68, 2), NaN where unknown
    /<extra>       float32 (N,)  optional per-face values, e.g. /focus_prob
    attrs: ffmask_version, schema_version, created (ISO 8601 UTC),
           config (JSON of the run)

Every map dataset also carries a ``kind`` attribute naming its kind, so a
reader never has to guess it from the dtype.

Version 2 (written by default)::

    /images        uint8 (N, 3, S, S) gradient residuals  attrs codec="gradient", size=S
                   (or row differences, codec="delta";
                   vlen uint8 (N,) PNG bytes, codec="png"; JPEG bytes,
                   codec="jpeg", quality=Q, only when asked; or uint8
                   (N, S, S, 3) with codec="blosc" or "raw")
    /maps/<name>   attrs kind, encoding:
                   uint8 (N, S, S) {0, 1}           mask, encoding "uint8"
                   uint8 (N, S, S) round(255 x)     continuous, "uint8/255"
                   uint8 (N, g, g), attr grid=g     continuous at a model grid
                   int8 (N, S, S, 3) x / step       noise, "scaled"
                   float32 (N,) σ                   noise, "derived" (recomputed)
    /map_steps/<name>  float32 (N,) per-face step of a "scaled" noise map
    (maps attr predictor "gradient": full-size continuous and scaled noise
    maps hold their zigzagged prediction residual, same dtype and shape;
    attr packing "nibbles": those bytes flattened and packed two to a byte,
    uint8 (N, L), L = ceil(n / 2) + n for n values per face;
    maps under Zstandard or Blosc through hdf5plugin)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import numpy as np

from ffmask.shards.checksum import explain_read_error

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAP_STEPS = "map_steps"
V2_MAP_ENCODINGS = {"mask": ("uint8",), "continuous": ("uint8/255",), "noise": ("scaled", "derived")}
V2_IMAGE_CODECS = ("gradient", "delta", "png", "jpeg", "blosc", "raw")
V2_MAP_PREDICTORS = ("none", "gradient")
V2_MAP_PACKINGS = ("none", "nibbles")
MAP_KINDS = ("mask", "continuous", "noise")
STRING_FIELDS = ("video_id", "original_id", "manipulation", "compression", "split")
REQUIRED_ATTRS = ("ffmask_version", "schema_version", "created", "config")
N_LANDMARKS = 68
LABELS = (-1, 0, 1)

# Fixed per-face datasets: name -> (dtype, shape after N; "S" is the crop side).
FIXED_DATASETS = {
    "images": (np.uint8, ("S", "S", 3)),
    "label": (np.int8, ()),
    "frame_index": (np.int32, ()),
    "box": (np.int32, (4,)),
    "landmarks": (np.float32, (N_LANDMARKS, 2)),
}
MAP_DTYPES = {"mask": np.uint8, "continuous": np.float16, "noise": np.float16}

# Names an extra may not take: the schema's own datasets and the keys of a
# ShardDataset sample.
RESERVED_NAMES = frozenset(FIXED_DATASETS) | frozenset(STRING_FIELDS) | {"maps", MAP_STEPS, "image", "meta"}

# Masks are checked block by block so validating a big shard stays in bounded memory.
_BLOCK = 256


def map_shape(kind: str, size: int) -> tuple[int, ...]:
    """Per-face shape of a map of ``kind`` for crops of side ``size``."""
    if kind not in MAP_KINDS:
        raise ValueError(f"map kind must be one of {MAP_KINDS}, got {kind!r}")
    return (size, size, 3) if kind == "noise" else (size, size)


def check_name(name: object, what: str) -> str:
    """A map or extra name usable as an HDF5 dataset name (non-empty, no '/' or '.')."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or name.strip() != name:
        raise ValueError(f"{what} name must be a non-empty string without '/', got {name!r}")
    return name


def infer_map_kind(dataset) -> str | None:
    """The kind of a ``/maps/<name>`` dataset: its ``kind`` attr, else from dtype and shape."""
    kind = dataset.attrs.get("kind")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind in MAP_KINDS:
        return kind
    if dataset.dtype == np.uint8 and dataset.ndim == 3:
        return "mask"
    if dataset.dtype == np.float16 and dataset.ndim == 3:
        return "continuous"
    if dataset.dtype == np.float16 and dataset.ndim == 4:
        return "noise"
    return None


def shard_version(f) -> int:
    """The schema version of an open shard (1 when the attribute is missing)."""
    version = f.attrs.get("schema_version", 1)
    try:
        return int(version)
    except (TypeError, ValueError):
        return -1


def validate_shard(path: Union[str, Path]) -> list[str]:
    """Every way the shard at ``path`` departs from its schema version (1 or 2).

    Returns a list of human-readable problems; an empty list means the shard
    is valid. Never raises for a bad file: an unreadable or non-HDF5 file is
    reported as a problem. Masks are read in full to check they hold only 0
    and 1, continuous maps to check they are finite and within [0, 1].
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return [f"{path}: not a readable HDF5 file ({exc})"]
    with f:
        return _validate_open(f)


def _validate_open(f) -> list[str]:
    problems: list[str] = []

    for attr in REQUIRED_ATTRS:
        if attr not in f.attrs:
            problems.append(f"attribute {attr!r} missing")
    if "schema_version" in f.attrs:
        version = f.attrs["schema_version"]
        if not (np.ndim(version) == 0 and np.issubdtype(np.asarray(version).dtype, np.integer)
                and int(version) in READABLE_VERSIONS):
            problems.append(f"schema_version is {version!r}, expected one of {list(READABLE_VERSIONS)}")
    if "config" in f.attrs:
        try:
            json.loads(attr_text(f.attrs["config"]))
        except (TypeError, ValueError) as exc:
            problems.append(f"attribute 'config' is not JSON ({exc})")

    v2 = shard_version(f) == 2
    n = None
    if "images" in f and isinstance(f["images"], _dataset_type()):
        n = f["images"].shape[0] if f["images"].ndim >= 1 else None
    size = None
    images = f.get("images")
    if not isinstance(images, _dataset_type()):
        images = None
    if images is not None and images.ndim == 4 and images.shape[1] == images.shape[2]:
        size = images.shape[1]
    if v2 and images is not None and images.attrs.get("size") is not None:
        size = images.attrs.get("size")
        size = int(size) if size is not None and np.ndim(size) == 0 else None

    def check(name, ds, dtype, tail):
        if not isinstance(ds, _dataset_type()):
            problems.append(f"/{name} is not a dataset")
            return False
        ok = True
        if ds.dtype != dtype:
            problems.append(f"/{name} has dtype {ds.dtype}, expected {np.dtype(dtype)}")
            ok = False
        expected = tuple(size if t == "S" else t for t in tail)
        if ds.ndim != 1 + len(tail) or (None not in expected and tuple(ds.shape[1:]) != expected):
            shown = ", ".join(str(t) for t in ("N", *tail))
            problems.append(f"/{name} has shape {ds.shape}, expected ({shown})")
            ok = False
        if n is not None and ds.ndim >= 1 and ds.shape[0] != n:
            problems.append(f"/{name} has {ds.shape[0]} rows but /images has {n}")
            ok = False
        return ok

    if v2 and images is not None:
        problems.extend(_check_v2_images(images, size))
    for name, (dtype, tail) in FIXED_DATASETS.items():
        if name not in f:
            problems.append(f"dataset /{name} missing")
            continue
        if v2 and name == "images":
            continue
        if check(name, f[name], dtype, tail) and name == "label":
            values = np.unique(f[name][()])
            bad = sorted(set(values.tolist()) - set(LABELS))
            if bad:
                problems.append(f"/label holds values {bad}, expected only {list(LABELS)}")
        if name == "images" and images is not None and images.ndim == 4 and size is None:
            problems.append(f"/images crops are not square: shape {images.shape}")

    for name in STRING_FIELDS:
        if name not in f:
            problems.append(f"dataset /{name} missing")
            continue
        ds = f[name]
        if not isinstance(ds, _dataset_type()):
            problems.append(f"/{name} is not a dataset")
            continue
        info = _string_info(ds.dtype)
        if info is None:
            problems.append(f"/{name} has dtype {ds.dtype}, expected variable-length UTF-8 strings")
        if ds.ndim != 1:
            problems.append(f"/{name} has shape {ds.shape}, expected (N,)")
        elif n is not None and ds.shape[0] != n:
            problems.append(f"/{name} has {ds.shape[0]} rows but /images has {n}")

    if "maps" not in f:
        problems.append("group /maps missing")
    elif isinstance(f["maps"], _dataset_type()):
        problems.append("/maps is a dataset, expected a group")
    elif v2:
        problems.extend(_check_v2_maps(f, n, size))
    else:
        for name, ds in f["maps"].items():
            where = f"maps/{name}"
            if not isinstance(ds, _dataset_type()):
                problems.append(f"/{where} is not a dataset")
                continue
            kind = infer_map_kind(ds)
            if kind is None:
                problems.append(f"/{where} has dtype {ds.dtype} and shape {ds.shape}, matching no map kind")
                continue
            tail = ("S", "S", 3) if kind == "noise" else ("S", "S")
            if not check(where, ds, MAP_DTYPES[kind], tail):
                continue
            problems.extend(_check_values(where, ds, kind))

    for name, obj in f.items():
        if name in FIXED_DATASETS or name in STRING_FIELDS or name == "maps" or (v2 and name == MAP_STEPS):
            continue
        if not isinstance(obj, _dataset_type()):
            problems.append(f"/{name} is an unexpected group")
        elif obj.ndim != 1 or (n is not None and obj.shape[0] != n):
            problems.append(f"extra /{name} has shape {obj.shape}, expected ({n if n is not None else 'N'},)")
        elif not np.issubdtype(obj.dtype, np.number):
            problems.append(f"extra /{name} has dtype {obj.dtype}, expected a number")
    return problems


def _check_v2_images(images, size) -> list[str]:
    import h5py

    codec = images.attrs.get("codec")
    codec = codec.decode() if isinstance(codec, bytes) else codec
    if codec not in V2_IMAGE_CODECS:
        return [f"/images has codec {codec!r}, expected one of {list(V2_IMAGE_CODECS)}"]
    if size is None and images.ndim != 4:
        return ["/images lacks the crop side attribute 'size'"]
    if codec in ("png", "jpeg"):
        if images.ndim != 1 or h5py.check_vlen_dtype(images.dtype) != np.dtype(np.uint8):
            return [f"/images ({codec}) must be variable-length uint8 bytes (N,), got {images.dtype} {images.shape}"]
        if codec == "jpeg" and "quality" not in images.attrs:
            return ["/images is lossy jpeg but does not record its quality"]
        return []
    if codec in ("gradient", "delta"):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, size, size):
            return [f"/images ({codec}) must be uint8 (N, 3, S, S), got {images.dtype} {images.shape}"]
        return []
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (images.shape[1], images.shape[1], 3):
        return [f"/images ({codec}) must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}"]
    return []


def _check_v2_maps(f, n, size) -> list[str]:
    """Layout of every v2 map, then its decoded values (as the v1 check does)."""
    from ffmask.shards.layout import ShardLayout

    problems: list[str] = []
    good = []
    for name, ds in f["maps"].items():
        where = f"/maps/{name}"
        if not isinstance(ds, _dataset_type()):
            problems.append(f"{where} is not a dataset")
            continue
        kind, encoding = (_attr_str(ds, "kind"), _attr_str(ds, "encoding"))
        if kind not in MAP_KINDS or encoding not in V2_MAP_ENCODINGS[kind]:
            problems.append(f"{where} has kind {kind!r} and encoding {encoding!r}, matching no map layout")
            continue
        predictor = _attr_str(ds, "predictor") or "none"
        if predictor not in V2_MAP_PREDICTORS:
            problems.append(f"{where} has predictor {predictor!r}, expected one of {list(V2_MAP_PREDICTORS)}")
            continue
        packing = _attr_str(ds, "packing") or "none"
        if packing not in V2_MAP_PACKINGS:
            problems.append(f"{where} has packing {packing!r}, expected one of {list(V2_MAP_PACKINGS)}")
            continue
        if n is not None and ds.shape[:1] != (n,):
            problems.append(f"{where} has shape {ds.shape}, expected {n} rows like /images")
            continue
        if encoding == "derived":
            ok = ds.dtype == np.float32 and ds.ndim == 1
            expected = "float32 (N,)"
        elif packing != "none":
            from ffmask.shards.codec import nibbles_length

            length = nibbles_length(int(np.prod(map_shape(kind, size)))) if size is not None else None
            ok = ds.dtype == np.uint8 and ds.ndim == 2 and length is not None and ds.shape[1] == length
            expected = f"uint8 (N, {length}) (packed {packing})"
        else:
            side = int(ds.attrs.get("grid", size if size is not None else -1))
            tail = (side, side, 3) if kind == "noise" else (side, side)
            dtype = np.int8 if kind == "noise" else np.uint8
            ok = ds.dtype == dtype and tuple(ds.shape[1:]) == tail and (side == size or kind == "continuous")
            expected = f"{np.dtype(dtype)} (N, {', '.join(map(str, tail))})"
        if not ok:
            problems.append(f"{where} ({kind}, {encoding}) has {ds.dtype} {ds.shape}, expected {expected}")
            continue
        if encoding == "scaled":
            steps = f.get(MAP_STEPS, {}).get(name) if MAP_STEPS in f else None
            if steps is None or steps.shape != (ds.shape[0],):
                problems.append(f"{where} is scaled noise but /{MAP_STEPS}/{name} is missing or has the wrong length")
                continue
        good.append((name, kind))
    if not good or not n:
        return problems
    try:
        layout = ShardLayout(f)
    except ValueError as exc:  # an unknown image codec, already reported
        return problems if any("codec" in p for p in problems) else problems + [str(exc)]
    for name, kind in good:
        for start in range(0, n, _BLOCK):
            try:
                block = layout.maps_block(name, start, min(n, start + _BLOCK))
            except (ValueError, OSError) as exc:
                problems.append(f"/maps/{name} cannot be decoded ({explain_read_error(exc)})")
                break
            found = _check_block(f"maps/{name}", block, kind, start)
            if found:
                problems.extend(found)
                break
    return problems


def _attr_str(ds, name):
    value = ds.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _check_block(where: str, block, kind: str, start: int) -> list[str]:
    if kind == "mask":
        if block.size and block.max() > 1:
            faces = start + np.flatnonzero(block.reshape(len(block), -1).max(axis=1) > 1)
            return [f"/{where} is a mask but holds values other than 0 and 1 "
                    f"(faces {faces[:5].tolist()}{'...' if len(faces) > 5 else ''})"]
        return []
    if not np.isfinite(block).all():
        return [f"/{where} holds NaN or infinite values"]
    if kind == "continuous" and block.size and (block.min() < 0 or block.max() > 1):
        return [f"/{where} is a continuous map but holds values outside [0, 1]"]
    return []


def _check_values(where: str, ds, kind: str) -> list[str]:
    for start in range(0, ds.shape[0], _BLOCK):
        problems = _check_block(where, ds[start : start + _BLOCK], kind, start)
        if problems:
            return problems
    return []


def _dataset_type():
    import h5py

    return h5py.Dataset


def _string_info(dtype):
    import h5py

    info = h5py.check_string_dtype(dtype)
    if info is None or info.length is not None:
        return None
    return info


def attr_text(value) -> str:
    """An HDF5 string attribute as ``str`` (h5py gives ``str``, ``bytes`` or a 0-d array of either).

    Raises TypeError for anything else (a number, an array of strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return attr_text(value.item())
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
