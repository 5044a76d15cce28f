"""Write face records into one shard, atomically.

The writer fills ``<path>.tmp`` (or a tmp name of the caller's, e.g. one per
attempt from :func:`attempt_tmp_path`) and renames it to ``<path>`` only in
:meth:`ShardWriter.close`, so a shard that exists under its final name is
always complete; a killed run leaves at most a ``.tmp`` file behind.

It writes schema version 2 (compact: see :mod:`ffmask.shards.codec`) unless
asked for version 1 (``schema_version=1``, kept to produce legacy shards).
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ffmask.shards.codec import (DEFAULT_IMAGE_CODEC, IMAGE_CODECS, MAP_PACKINGS, MAP_PREDICTORS, encode_image,
                                 encode_map, nibbles_length, pack_map, predict_map, to_float16)
from ffmask.shards.schema import (
    LABELS,
    MAP_DTYPES,
    MAP_KINDS,
    N_LANDMARKS,
    RESERVED_NAMES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    STRING_FIELDS,
    check_name,
    map_shape,
)

TMP_SUFFIX = ".tmp"


def attempt_tmp_path(path: Union[str, Path]) -> Path:
    """A tmp name for one attempt at writing the shard ``path``, no other attempt's.

    ``shard-00001.h5`` -> ``shard-00001.<pid>-<8 hex>.h5.tmp``: it still ends in
    ``.h5.tmp`` (what readers skip and cleanups delete) and names its process.
    Two processes writing the same shard at once (a Dask worker the scheduler
    believes dead while it still runs, its task retried elsewhere) then never
    write into one file, which the second's ``h5py.File(..., "w")`` would
    truncate under the first.
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}{TMP_SUFFIX}")


# float16 cannot hold more than this; a noise residual beyond it is a bug upstream.
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_COMPRESSIONS = (None, "lzf", "gzip")
# Measured on 224px faces (benchmarks/bench_shards.py, 2-core CPU): lzf makes
# masks ~30x and continuous maps ~4.5x smaller for 0.05-0.3 ms/face, while
# images (-13%) and noise residuals (0%) barely compress at 1.6-2.9 ms/face,
# so those stay raw.
AUTO_COMPRESSION = {"mask": "lzf", "continuous": "lzf", "noise": None}
NOISE_STORAGE = ("scaled", "derived")
# Faces of the first buffer that map_predictor/map_packing "auto" compresses in each
# candidate layout, spread over the buffer (its first faces are often one real video,
# whose diff map is all zero): 8 faces rank the layouts as all 32 did on the demo and
# the benchmark tree, at a quarter of the cost (3 layouts x 3 maps x 32 faces was
# ~1 ms per face of a 200-face shard).
AUTO_SAMPLE = 8
# Schema 2: Zstandard (level 1) for every stored map; on uint8/int8 maps of
# the sample data it is as small as gzip and 2-3x faster to read
# (benchmarks/bench_shards.py). Level 3 gained nothing on these maps: on the
# benchmark tree's faces, per face, noise 70.4 KiB at 2.1 ms to write vs 67.7
# KiB at 1.1 ms with level 1; ssim 18.3 vs 18.7 KiB, 0.44 vs 0.32 ms; masks
# 0.2 KiB either way. Readers are the same for every level.
_V2_MAP_FILTER = None


def _v2_map_filter() -> dict:
    global _V2_MAP_FILTER
    if _V2_MAP_FILTER is None:
        import hdf5plugin

        _V2_MAP_FILTER = dict(hdf5plugin.Zstd(clevel=1))
    return _V2_MAP_FILTER


def _image_delta_filter() -> dict:
    import hdf5plugin

    return dict(hdf5plugin.Zstd(clevel=1))


def _residual_filter() -> dict:
    """Blosc(Zstandard level 1, bit-shuffle) for zigzagged prediction residuals (images and maps).

    On 100 of the demo's faces (docs/shards.md) the bit-shuffle packs the
    zero high bits of small residuals: images 39.9 KiB/face vs 46.4 with
    plain Zstandard level 1 (order-0 entropy 38.2), read as fast; ssim maps
    11.9 vs 13.2 KiB, noise 54 vs 57. Levels 5-9 save < 3 % more at
    4-140x the encoding time.
    """
    import hdf5plugin

    return dict(hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


def _blosc_filter() -> dict:
    import hdf5plugin

    return dict(hdf5plugin.Blosc(cname="lz4hc", clevel=9, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


@dataclass
class FaceRecord:
    """One face crop, its maps and where it came from.

    image: uint8 (S, S, 3) RGB crop.
    maps: name -> array; "mask" maps bool or {0, 1} (S, S), "continuous"
        maps float (S, S) (clipped to [0, 1] when written), "noise" maps
        float (S, S, 3).
    label: 0 real, 1 fake, -1 unknown.
    frame_index: index of the frame in its video (>= 0).
    box: int (4,) x0, y0, x1, y1 of the crop in the source frame.
    landmarks: float (68, 2) x, y in the source frame, or None (stored as NaN).
    extras: per-face scalars declared when the writer was opened, e.g. focus_prob.
    map_params: map name -> the keyword parameters it was computed with, e.g.
        ``{"noise": {"sigma": 5.0}}``; a shard that derives noise on read
        stores σ from here. A "step" there fixes a scaled noise map's
        quantisation step (re-encoding a shard keeps its integers exactly).

    A "continuous" map may also come at a coarser square grid (g, g), g < S
    (a model's output grid): schema 2 stores the grid and readers upsample
    it; every record of a shard must then use the same g.
    """

    image: np.ndarray
    maps: dict
    label: int
    video_id: str
    original_id: str
    manipulation: str
    compression: str
    split: str
    frame_index: int
    box: np.ndarray
    landmarks: Optional[np.ndarray] = None
    extras: dict = field(default_factory=dict)
    map_params: dict = field(default_factory=dict)


def _check_declared(what: str, given: Mapping, declared) -> None:
    """A record must carry exactly the maps (or extras) its shard declares."""
    missing = sorted(set(declared) - set(given))
    unexpected = sorted(set(given) - set(declared))
    if missing:
        raise ValueError(f"{what}: record lacks {missing} declared for this shard")
    if unexpected:
        raise ValueError(f"{what}: record has {unexpected} not declared for this shard "
                         f"(declared: {sorted(declared)})")


def storage_choices(
    image_codec: Optional[str] = None,
    jpeg_quality: Optional[int] = None,
    noise_storage: str = "scaled",
    *,
    image_compression: Optional[str] = None,
    schema_version: int = SCHEMA_VERSION,
) -> tuple[str, Optional[int], str]:
    """The effective ``(image_codec, jpeg_quality, noise_storage)`` of a shard.

    Fills in the defaults (``gradient`` images in version 2, ``raw`` in version 1
    or with an h5py ``image_compression``; JPEG quality 95) and raises
    ValueError for a choice the writer cannot honour. :class:`ShardWriter`
    applies it; a run checks its options with it before writing anything.
    """
    if schema_version not in READABLE_VERSIONS:
        raise ValueError(f"schema_version must be one of {READABLE_VERSIONS}, got {schema_version!r}")
    if image_codec is None:
        image_codec = "raw" if image_compression is not None or schema_version == 1 else DEFAULT_IMAGE_CODEC
    if image_codec not in IMAGE_CODECS:
        raise ValueError(f"image_codec must be one of {IMAGE_CODECS}, got {image_codec!r}")
    if schema_version == 1 and image_codec != "raw":
        raise ValueError(f"schema version 1 stores raw images; image_codec {image_codec!r} needs version 2")
    if image_codec == "jpeg":
        jpeg_quality = 95 if jpeg_quality is None else jpeg_quality
        if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) \
                or not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an int in 1..100, got {jpeg_quality!r}")
        jpeg_quality = int(jpeg_quality)
    elif jpeg_quality is not None:
        raise ValueError(f"jpeg_quality applies to image_codec='jpeg' only (got image_codec={image_codec!r})")
    if noise_storage not in NOISE_STORAGE:
        raise ValueError(f"noise_storage must be one of {NOISE_STORAGE}, got {noise_storage!r}")
    if noise_storage == "derived" and image_codec == "jpeg":
        raise ValueError("noise_storage='derived' recomputes noise from the stored image, "
                         "which a lossy jpeg image would change; use a lossless image_codec")
    return image_codec, jpeg_quality, noise_storage


class ShardWriter:
    """Append :class:`FaceRecord` objects to a new shard; a context manager.

    Parameters
    ----------
    path : final shard path (conventionally ``*.h5``); data goes to
        ``tmp_path`` until :meth:`close`. An existing tmp file (a killed
        run) is overwritten; an existing final file is replaced on close
        (unless ``replace`` is False).
    size : crop side S in pixels.
    maps : map name -> kind, one of ``MAP_KINDS``. Every record must carry
        exactly these maps.
    config : JSON-able description of the run, stored as the ``config`` attr
        (values JSON cannot hold, e.g. paths, are stored as strings).
    extras : names of per-face float32 scalars every record carries in
        ``FaceRecord.extras``.
    map_compression : HDF5 filter for every map, None, "lzf" or "gzip"; the
        default "auto" is Zstandard in schema 2 (lzf for masks and
        continuous maps, none for noise in schema 1).
    image_compression : filter for images stored as pixels ("raw" codec);
        None, "lzf" or "gzip". Giving one selects the "raw" codec.
    buffer : records held in memory and written together; one HDF5 write
        per dataset per buffer instead of per face.
    image_codec : schema 2 only: "gradient" (lossless, the default: colour
        transform + gradient prediction under Blosc/Zstandard; the smallest
        lossless codec here, as fast to read as delta), "delta" (lossless,
        the previous default: row differences under Zstandard, ~60 %
        larger), "png" (lossless, ~50 % larger, ~5x slower to read),
        "blosc", "raw", or "jpeg" (lossy, only when asked; its quality is
        recorded).
    jpeg_quality : 1..100, for "jpeg" (default 95).
    noise_storage : schema 2 only: "scaled" (int8 with a per-face step, error
        <= 1 % of the face's range; the default) or "derived" (nothing
        stored but σ, from ``FaceRecord.map_params``; recomputed on read,
        which needs a lossless image codec).
    map_predictor : schema 2 only, for full-size continuous maps and
        scaled noise (masks and grid maps are never predicted): "gradient"
        stores their integers as the zigzagged gradient-prediction residual
        under Blosc (Zstandard, bit-shuffle), read back as exactly the same
        integers; "none" stores them as they are under Zstandard (the
        layout before); "auto" (the default) compresses the first buffer
        of faces both ways and keeps the smaller, per map and shard (the
        residual saves 37 % on the demo's ssim maps and 17 % on its noise,
        but loses on noise of sharp, downscaled faces).
    map_packing : schema 2 only, for the same maps: "nibbles" stores the
        (predicted) integers two to a byte, flattened to uint8 (N, L),
        under Zstandard (see :func:`ffmask.shards.codec.pack_nibbles`);
        "none" keeps the map's shape; "auto" (the default) decides with
        the predictor on the first buffer, trying the plain integers, the
        residual and the packed residual (the demo's noise: 50.1 KiB per
        face packed vs 53.7 bit-shuffled and 64.4 plain). Readers get the
        same integers either way.
    schema_version : 2 (default) or 1 (legacy layout: raw images, float16 maps).
    tmp_path : where the shard is written until :meth:`close` (default
        ``path + ".tmp"``); give each concurrent attempt its own
        (:func:`attempt_tmp_path`).
    replace : False: a final file that is already there when this writer
        closes (another attempt of the same shard finished first) is kept,
        and this writer's file deleted; the check and the rename are one
        atomic step (a hard link, which fails if the name exists).

    Records are validated in :meth:`append`: a wrong shape, dtype, kind,
    missing or undeclared map raises ``ValueError`` naming the field, and
    nothing of that record is written.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        size: int,
        maps: Mapping[str, str],
        config: Mapping,
        extras: Sequence[str] = (),
        map_compression: Optional[str] = "auto",
        image_compression: Optional[str] = None,
        buffer: int = 32,
        image_codec: Optional[str] = None,
        jpeg_quality: Optional[int] = None,
        noise_storage: str = "scaled",
        map_predictor: str = "auto",
        map_packing: str = "auto",
        schema_version: int = SCHEMA_VERSION,
        tmp_path: Union[str, Path, None] = None,
        replace: bool = True,
    ):
        import h5py

        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if not isinstance(maps, Mapping):
            raise ValueError(f"maps must map name -> kind, got {type(maps).__name__}")
        for name, kind in maps.items():
            check_name(name, "map")
            if kind not in MAP_KINDS:
                raise ValueError(f"map {name!r}: kind must be one of {MAP_KINDS}, got {kind!r}")
        if isinstance(extras, str):
            raise ValueError("extras must be a sequence of names, not a string")
        extras = tuple(extras)
        for name in extras:
            check_name(name, "extra")
            if name in RESERVED_NAMES:
                raise ValueError(f"extra {name!r} clashes with a schema dataset name")
        if len(set(extras)) != len(extras):
            raise ValueError(f"extras has duplicates: {list(extras)}")
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        if map_compression not in (*_COMPRESSIONS, "auto"):
            raise ValueError(f"map_compression must be one of {(*_COMPRESSIONS, 'auto')}, got {map_compression!r}")
        if image_compression not in _COMPRESSIONS:
            raise ValueError(f"image_compression must be one of {_COMPRESSIONS}, got {image_compression!r}")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be a positive int, got {buffer!r}")
        image_codec, jpeg_quality, noise_storage = storage_choices(
            image_codec, jpeg_quality, noise_storage, image_compression=image_compression,
            schema_version=schema_version)
        if map_predictor not in (*MAP_PREDICTORS, "auto"):
            raise ValueError(f"map_predictor must be one of {(*MAP_PREDICTORS, 'auto')}, got {map_predictor!r}")
        if map_packing not in (*MAP_PACKINGS, "auto"):
            raise ValueError(f"map_packing must be one of {(*MAP_PACKINGS, 'auto')}, got {map_packing!r}")

        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + TMP_SUFFIX) if tmp_path is None else Path(tmp_path)
        if self.tmp_path == self.path:
            raise ValueError(f"tmp_path must differ from the shard's path, got {str(self.tmp_path)!r}")
        self.replace = bool(replace)
        self.size = int(size)
        self.maps = dict(maps)
        self.extras = extras
        self.schema_version = int(schema_version)
        self.image_codec = image_codec
        self.jpeg_quality = None if jpeg_quality is None else int(jpeg_quality)
        self.noise_storage = noise_storage
        self.map_predictor = map_predictor if self.schema_version == 2 else "none"
        self.map_packing = map_packing if self.schema_version == 2 else "none"
        # map name -> (predictor, packing), fixed when its dataset is made
        self._layouts: dict[str, tuple[str, str]] = {}
        self._map_compression = map_compression
        self._grids: dict[str, int] = {}  # continuous maps stored at a coarser grid
        self._config = json.dumps(dict(config), sort_keys=True, default=str)
        self._buffer_size = buffer
        self._pending: list[dict] = []
        self._count = 0
        self._closed = False

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Version 2: HDF5 1.10's file format, whose chunk indexes (an extensible array per
        # dataset) take ~16 bytes per chunk instead of a B-tree's ~60; with one chunk per
        # face per dataset that is 0.89 -> 0.37 KiB per face on the demo. Any HDF5 >= 1.10
        # reads it (h5py >= 3 ships 1.12 or later). Version 1 keeps the oldest format.
        libver = ("v110", "v110") if self.schema_version == 2 else None
        self._file = h5py.File(self.tmp_path, "w", libver=libver)
        self._datasets: dict = {}
        try:
            self._create_datasets(map_compression, image_compression)
        except BaseException:
            self.abort()
            raise

    # -- layout ---------------------------------------------------------

    def _dataset(self, name: str, **kwargs):
        """``create_dataset`` in the open file; a version 2 shard's fixed-size datasets get HDF5's
        Fletcher-32 checksum on every chunk, so a damaged chunk is a read error, not other values."""
        numeric = np.dtype(kwargs["dtype"]).kind in "iuf"  # not the variable-length strings
        return self._file.create_dataset(name, fletcher32=self.schema_version == 2 and numeric, **kwargs)

    def _create_datasets(self, map_compression, image_compression) -> None:
        import h5py

        f, s = self._file, self.size
        # Small per-face columns share one chunk of many faces.
        row_chunk = 256

        def make(name, dtype, tail, chunk_rows, compression=None):
            return self._dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=(chunk_rows, *tail),
                compression=compression,
            )

        if self.schema_version == 1:
            make("images", np.uint8, (s, s, 3), 1, image_compression)
            f.create_group("maps")
            for name, kind in self.maps.items():
                compression = AUTO_COMPRESSION[kind] if map_compression == "auto" else map_compression
                ds = make(f"maps/{name}", MAP_DTYPES[kind], map_shape(kind, s), 1, compression)
                ds.attrs["kind"] = kind
        else:
            if self.image_codec in ("png", "jpeg"):
                images = f.create_dataset("images", shape=(0,), maxshape=(None,), chunks=(64,),
                                          dtype=h5py.vlen_dtype(np.uint8))
            elif self.image_codec in ("gradient", "delta"):
                images = self._dataset("images", shape=(0, 3, s, s), maxshape=(None, 3, s, s),
                                          chunks=(1, 3, s, s), dtype=np.uint8,
                                          **(_residual_filter() if self.image_codec == "gradient"
                                             else _image_delta_filter()))
            elif self.image_codec == "blosc":
                images = self._dataset("images", shape=(0, s, s, 3), maxshape=(None, s, s, 3),
                                          chunks=(1, s, s, 3), dtype=np.uint8, **_blosc_filter())
            else:
                images = make("images", np.uint8, (s, s, 3), 1, image_compression)
            images.attrs["codec"] = self.image_codec
            images.attrs["size"] = np.int64(s)
            if self.jpeg_quality is not None:
                images.attrs["quality"] = np.int64(self.jpeg_quality)
            f.create_group("maps")
            f.create_group("map_steps")
            # Map datasets are created at the first flush, when a coarser
            # grid (if any) is known; see _create_v2_map.
        make("label", np.int8, (), row_chunk)
        for name in STRING_FIELDS:
            make(name, h5py.string_dtype("utf-8"), (), row_chunk)
        make("frame_index", np.int32, (), row_chunk)
        make("box", np.int32, (4,), row_chunk)
        # 68x2 floats per face: a 1024-face chunk would be 557 KB even for a
        # tiny shard; mostly-NaN rows (no landmarks) compress very well.
        make("landmarks", np.float32, (N_LANDMARKS, 2), 64, "lzf")
        for name in self.extras:
            make(name, np.float32, (), row_chunk)

    # -- writing --------------------------------------------------------

    def __len__(self) -> int:
        """Records appended so far (written or buffered)."""
        return self._count

    def append(self, rec: FaceRecord) -> None:
        """Validate ``rec`` and add it to the shard (buffered)."""
        if self._closed:
            raise RuntimeError(f"shard writer for {self.path} is already closed")
        self._pending.append(self._convert(rec))
        self._count += 1
        if len(self._pending) >= self._buffer_size:
            self._flush()

    def _map_encoding(self, kind: str) -> str:
        if kind == "noise":
            return self.noise_storage
        return "uint8" if kind == "mask" else "uint8/255"

    def _map_filter(self, predictor: str, packing: str = "none") -> dict:
        if self._map_compression != "auto":
            return {"compression": self._map_compression}
        # Packed pairs are Huffman-coded well by plain Zstandard; bit-shuffle would split the nibbles apart.
        return _residual_filter() if predictor != "none" and packing == "none" else _v2_map_filter()

    def _candidates(self) -> list[tuple[str, str]]:
        """The (predictor, packing) pairs "auto" chooses among (one pair when both are forced)."""
        predictors = MAP_PREDICTORS if self.map_predictor == "auto" else (self.map_predictor,)
        packings = MAP_PACKINGS if self.map_packing == "auto" else (self.map_packing,)
        pairs = [(p, k) for p in predictors for k in packings]
        if self.map_predictor == "auto" and self.map_packing == "auto":
            # Nibbles pack small numbers: zigzagged residuals, not the plain integers
            # (negative noise and most continuous values would all be escapes).
            pairs.remove(("none", "nibbles"))
        return pairs

    def _choose_layout(self, kind: str, shape: tuple, sample: Optional[np.ndarray]) -> tuple[str, str]:
        """(predictor, packing) of a map stored at ``shape``: full-size continuous and scaled noise maps only.

        ``sample``: the stored integers of the first buffered faces, of which
        "auto" compresses :data:`AUTO_SAMPLE`, evenly spaced, in each
        candidate layout (the smallest wins; the first candidate on a tie or
        without faces).
        """
        if self.schema_version == 1 or self._map_encoding(kind) not in ("uint8/255", "scaled") \
                or tuple(shape) != map_shape(kind, self.size):
            return "none", "none"
        candidates = self._candidates()
        if len(candidates) == 1:
            return candidates[0]
        if sample is None or not len(sample):
            return candidates[0]
        sample = sample[::max(1, len(sample) // AUTO_SAMPLE)][:AUTO_SAMPLE]
        sizes = {}
        for predictor, packing in candidates:
            block = np.stack([pack_map(predict_map(face, kind, predictor), packing) for face in sample])
            sizes[predictor, packing] = _compressed_size(block, self._map_filter(predictor, packing))
        return min(candidates, key=lambda c: sizes[c])

    def _create_v2_map(self, name: str, kind: str, shape: tuple, sample: Optional[np.ndarray] = None) -> None:
        f = self._file
        encoding = self._map_encoding(kind)
        predictor, packing = self._layouts[name] = self._choose_layout(kind, shape, sample)
        compression = self._map_filter(predictor, packing)
        if encoding == "derived":
            # σ per face; the map itself is recomputed from the image on read.
            ds = self._dataset(f"maps/{name}", shape=(0,), maxshape=(None,), chunks=(256,), dtype=np.float32)
        else:
            dtype = np.int8 if kind == "noise" else np.uint8
            row = shape
            if packing != "none":  # flattened bytes, one row per face
                row, dtype = (nibbles_length(int(np.prod(shape))),), np.uint8
            ds = self._dataset(f"maps/{name}", shape=(0, *row), maxshape=(None, *row),
                                  chunks=(1, *row), dtype=dtype, **compression)
            if kind == "noise":
                self._dataset(f"map_steps/{name}", shape=(0,), maxshape=(None,), chunks=(256,), dtype=np.float32)
        ds.attrs["kind"] = kind
        ds.attrs["encoding"] = encoding
        if encoding != "derived":
            ds.attrs["predictor"] = predictor
            ds.attrs["packing"] = packing
        if kind == "continuous" and shape[0] != self.size:
            ds.attrs["grid"] = np.int64(shape[0])

    def _check_map_shape(self, name: str, kind: str, value) -> tuple:
        """The shape a record's map must have: (S, S[, 3]), or a continuous map's grid."""
        s = self.size
        full = map_shape(kind, s)
        if self.schema_version == 1 or kind != "continuous" or not isinstance(value, np.ndarray):
            return full
        shape = value.shape
        if len(shape) == 2 and shape[0] == shape[1] and 1 <= shape[0] < s:
            if self._grids.setdefault(name, shape[0]) != shape[0]:
                raise ValueError(f"maps[{name!r}] comes at grid {shape[0]} but earlier records used "
                                 f"{self._grids[name]}; one shard holds one grid per map")
            return shape
        if name in self._grids and shape == full:
            raise ValueError(f"maps[{name!r}] is full size but earlier records gave a {self._grids[name]} grid")
        return full

    def _convert(self, rec: FaceRecord) -> dict:
        if not isinstance(rec, FaceRecord):
            raise ValueError(f"expected a FaceRecord, got {type(rec).__name__}")
        s = self.size
        row: dict = {}
        image = _array(rec.image, "image", (s, s, 3), np.uint8, exact_dtype=True)

        if not isinstance(rec.maps, Mapping):
            raise ValueError(f"maps must be a dict of name -> array, got {type(rec.maps).__name__}")
        _check_declared("maps", rec.maps, self.maps)
        for name, kind in self.maps.items():
            values = rec.maps[name]
            shape = self._check_map_shape(name, kind, values)
            converted = _convert_map(values, name, kind, s, shape)
            if self.schema_version == 1:
                row[f"maps/{name}"] = converted
                continue
            encoding = self._map_encoding(kind)
            if encoding == "derived":
                params = rec.map_params.get(name) if isinstance(rec.map_params, Mapping) else None
                sigma = params.get("sigma") if isinstance(params, Mapping) else None
                if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not sigma > 0:
                    raise ValueError(f"maps[{name!r}] is derived on read and needs its sigma in "
                                     f"FaceRecord.map_params[{name!r}]['sigma'], got {params!r}")
                row[f"maps/{name}"] = np.float32(sigma)
            else:
                params = rec.map_params.get(name) if isinstance(rec.map_params, Mapping) else None
                given = params.get("step") if kind == "noise" and isinstance(params, Mapping) else None
                try:
                    # Integers as they are: the predictor is applied when the rows are written.
                    stored, step = encode_map(converted, kind, encoding, step=given)
                except ValueError as exc:
                    raise ValueError(f"maps[{name!r}]: {exc}") from None
                row[f"maps/{name}"] = stored
                if kind == "noise":
                    row[f"map_steps/{name}"] = np.float32(step)
        row["images"] = image if self.schema_version == 1 else \
            encode_image(image, self.image_codec, self.jpeg_quality)

        label = _int(rec.label, "label")
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label}")
        row["label"] = label
        for name in STRING_FIELDS:
            value = getattr(rec, name)
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a str, got {type(value).__name__}")
            row[name] = value
        if not rec.video_id:
            raise ValueError("video_id must not be empty")
        frame_index = _int(rec.frame_index, "frame_index")
        if not 0 <= frame_index <= np.iinfo(np.int32).max:
            raise ValueError(f"frame_index must be a non-negative int32, got {frame_index}")
        row["frame_index"] = frame_index

        box = np.asarray(rec.box)
        if box.shape != (4,) or not (np.issubdtype(box.dtype, np.integer)
                                     or (np.issubdtype(box.dtype, np.floating)
                                         and np.all(np.isfinite(box)) and np.all(box == np.round(box)))):
            raise ValueError(f"box must be 4 integers x0, y0, x1, y1, got {box.dtype} {box.shape}: {box!r}")
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box must have x1 > x0 and y1 > y0, got {[x0, y0, x1, y1]}")
        row["box"] = np.array([x0, y0, x1, y1], np.int32)

        if rec.landmarks is None:
            row["landmarks"] = np.full((N_LANDMARKS, 2), np.nan, np.float32)
        else:
            lm = np.asarray(rec.landmarks)
            if lm.shape != (N_LANDMARKS, 2) or not np.issubdtype(lm.dtype, np.number):
                raise ValueError(f"landmarks must be numbers of shape ({N_LANDMARKS}, 2) or None, "
                                 f"got {lm.dtype} {lm.shape}")
            if np.isinf(lm).any():
                raise ValueError("landmarks hold infinite values")
            row["landmarks"] = lm.astype(np.float32)

        if not isinstance(rec.extras, Mapping):
            raise ValueError(f"extras must be a dict of name -> float, got {type(rec.extras).__name__}")
        _check_declared("extras", rec.extras, self.extras)
        for name in self.extras:
            value = rec.extras[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"extras[{name!r}] must be a number, got {value!r}")
            row[name] = np.float32(value)
        return row

    def _flush(self) -> None:
        if not self._pending:
            return
        f = self._file
        rows = self._pending
        start = f["images"].shape[0]
        stop = start + len(rows)
        if self.schema_version == 2:
            for name, kind in self.maps.items():
                key = f"maps/{name}"
                if key not in f:
                    sample = np.stack([r[key] for r in rows]) if self._map_encoding(kind) != "derived" else None
                    self._create_v2_map(name, kind, np.shape(rows[0][key]), sample)
                predictor, packing = self._layouts[name]
                if predictor != "none" or packing != "none":
                    for r in rows:
                        r[key] = pack_map(predict_map(r[key], kind, predictor), packing)
        for key in rows[0]:
            # Datasets stay open for the writer's life: closing one flushes its
            # chunks from inside a destructor, where a write error (a full disk)
            # is only printed and leaves HDF5 broken; here it raises.
            ds = self._datasets.get(key)
            if ds is None:
                ds = self._datasets[key] = f[key]
            ds.resize(stop, axis=0)
            if ds.dtype.kind == "O":
                if h5py_vlen_bytes(ds):
                    # Encoded images one by one: h5py reads an object array of
                    # equal-length byte arrays as a 2-D array and refuses it.
                    # (Strings go in one write: per row costs 10x more.)
                    for i, r in enumerate(rows):
                        ds[start + i] = r[key]
                else:
                    ds[start:stop] = [r[key] for r in rows]
            else:
                ds[start:stop] = np.stack([np.asarray(r[key]) for r in rows]).astype(ds.dtype, copy=False)
        self._pending = []
        f.flush()  # a write error (a full disk) raises here, not later in a destructor

    # -- finishing ------------------------------------------------------

    def close(self) -> Path:
        """Write what is buffered, set the attrs and atomically rename to ``path``.

        Returns the final path. Calling it again returns the same path. A
        shard with zero records is valid.
        """
        if self._closed:
            if self._file is None and not self.path.exists():
                raise RuntimeError(f"shard writer for {self.path} was aborted")
            return self.path
        try:
            from ffmask import __version__

            self._flush()
            f = self._file
            if self.schema_version == 2:
                for name, kind in self.maps.items():  # an empty shard still declares its maps
                    if f"maps/{name}" not in f:
                        self._create_v2_map(name, kind, map_shape(kind, self.size))
            f.attrs["ffmask_version"] = __version__
            f.attrs["schema_version"] = np.int64(self.schema_version)
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["config"] = self._config
            # Flush first: a write error (a full disk) raises here with the file
            # still sane; failing inside close() leaves HDF5 unable to close it.
            f.flush()
            f.close()
            self._file = None
            _fsync_file(self.tmp_path)
            if self.replace:
                os.replace(self.tmp_path, self.path)
            else:
                _rename_unless_there(self.tmp_path, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything: close and delete the tmp file. Idempotent."""
        self._closed = True
        self._pending = []
        file, self._file = getattr(self, "_file", None), None
        if file is not None:
            _discard_writes(file)  # before the datasets close and flush their chunks
        self._datasets = {}
        if file is not None:
            try:
                file.close()
            except Exception:  # a half-written file may refuse to flush; it is deleted anyway
                pass
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:  # close() or abort() inside the block already finished it
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ShardWriter({str(self.path)!r}, size={self.size}, maps={self.maps}, {len(self)} records, {state})"


def _compressed_size(block: np.ndarray, compression: dict) -> int:
    """Bytes ``block`` (n, ...) takes in HDF5 one chunk per face under ``compression`` (an in-memory file)."""
    import io

    import h5py

    with h5py.File(io.BytesIO(), "w") as f:
        ds = f.create_dataset("x", data=block, chunks=(1, *block.shape[1:]), **compression)
        return int(ds.id.get_storage_size())


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an int, got {value!r}")
    return int(value)


def _array(value, what: str, shape: tuple, dtype, *, exact_dtype: bool = False) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(value).__name__}")
    if value.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {value.shape}")
    if exact_dtype and value.dtype != dtype:
        raise ValueError(f"{what} must be {np.dtype(dtype)}, got {value.dtype}")
    return value


def h5py_vlen_bytes(ds) -> bool:
    """A variable-length array dataset (encoded images), not a string one."""
    import h5py

    base = h5py.check_vlen_dtype(ds.dtype)
    return base is not None and base not in (str, bytes)


def _convert_map(value, name: str, kind: str, size: int, shape: Optional[tuple] = None) -> np.ndarray:
    what = f"maps[{name!r}] ({kind})"
    arr = _array(value, what, map_shape(kind, size) if shape is None else shape, None)
    if arr.dtype == np.bool_:
        if kind != "mask":
            raise ValueError(f"{what} is boolean; only mask maps may be")
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{what} must be numeric, got {arr.dtype}")
    if kind == "mask":
        # Any value other than 0 and 1 means the caller passed a probability
        # or a 0/255 image; storing it as-is would corrupt the mask.
        if not ((arr == 0) | (arr == 1)).all():
            raise ValueError(f"{what} must hold only 0 and 1 (or be boolean); got values in "
                             f"[{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    if kind == "continuous":
        return to_float16(np.clip(arr, 0.0, 1.0))
    peak = float(np.abs(arr).max()) if arr.size else 0.0
    if peak > _FLOAT16_MAX:
        raise ValueError(f"{what} holds |values| up to {peak:g}, beyond float16 range")
    return to_float16(arr)


def _discard_writes(file) -> None:
    """Point the descriptor of an h5py file being thrown away at /dev/null.

    Closing flushes HDF5's caches; after a failed write (a full disk) that
    flush fails again and HDF5 crashes the process (a segfault, seen with
    h5py 3 / HDF5 1.14). The file is deleted anyway, so its last writes can go
    nowhere.
    """
    try:
        fd = file.id.get_vfd_handle()
    except Exception:  # not the POSIX driver: nothing to redirect
        return
    if not isinstance(fd, int) or fd < 0:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _rename_unless_there(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` unless ``final`` exists; then delete ``tmp`` and keep it.

    A hard link fails when the name is taken, so checking and placing are one
    atomic step; on a file system without hard links the check and
    :func:`os.replace` are two (a race there needs two attempts finishing in
    the same instant, and each file is complete either way).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        pass  # another attempt's complete shard is in place: it stays
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if not final.exists():
            os.replace(tmp, final)
            return
    os.unlink(tmp)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
