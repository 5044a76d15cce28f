"""Find shards and read faces from them by one global index (numpy, no torch).

:class:`ShardIndex` records only paths and row counts when built; HDF5 files
are opened on first read *in the current process* and reopened after a fork,
so an index can be pickled to DataLoader workers (fork or spawn) safely.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from ffmask.errors import FFMaskError
from ffmask.shards.checksum import explain_read_error
from ffmask.shards.layout import ShardLayout
from ffmask.shards.schema import FIXED_DATASETS, MAP_STEPS, READABLE_VERSIONS, STRING_FIELDS, infer_map_kind, shard_version
from ffmask.shards.writer import TMP_SUFFIX

PathLike = Union[str, Path]
SHARD_SUFFIX = ".h5"


def find_shards(paths: Union[PathLike, Sequence[PathLike]], *, allow_empty: bool = False) -> list[Path]:
    """Shard files named by ``paths``.

    ``paths`` is a directory (every ``*.h5`` directly in it, sorted by name;
    never the ``*.h5.tmp`` of an unfinished shard), a shard file, or a list
    of these. Duplicates are dropped, order is kept. A missing path, an
    explicitly named ``.tmp`` file, or no shard at all (unless
    ``allow_empty``) raises FFMaskError.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found.extend(sorted(q for q in p.glob("*" + SHARD_SUFFIX) if q.is_file()))
        elif p.is_file():
            if p.name.endswith(TMP_SUFFIX):
                raise FFMaskError(f"{p} is an unfinished shard (a run was interrupted or is still writing it)")
            found.append(p)
        elif p.exists():  # a device, a FIFO, a socket: nothing a shard can be
            raise FFMaskError(f"{p} is neither a shard file nor a directory of shards")
        else:
            raise FFMaskError(f"no such shard file or directory: {p}")
    unique = list(dict.fromkeys(q.resolve() for q in found))
    if not unique and not allow_empty:
        where = ", ".join(str(Path(p)) for p in paths) or "(no paths given)"
        tmp = [q for p in paths if Path(p).is_dir() for q in Path(p).glob("*" + SHARD_SUFFIX + TMP_SUFFIX)]
        hint = f" ({len(tmp)} unfinished *.h5.tmp file(s) there)" if tmp else ""
        raise FFMaskError(f"no shards (*.h5) in {where}{hint}")
    return unique


def open_h5(path: Path):
    """Open a shard read-only; an unreadable file or an unknown schema version becomes FFMaskError."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FFMaskError(f"cannot open shard {path}: {exc}") from exc
    version = shard_version(f)
    if version not in READABLE_VERSIONS:
        f.close()
        raise FFMaskError(f"shard {path} has schema version {version}; this ffmask reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))} (upgrade ffmask)")
    return f


def shard_extras(f) -> list[str]:
    """Names of the optional per-face scalar datasets of an open shard."""
    import h5py

    return [
        name
        for name, obj in f.items()
        if name not in FIXED_DATASETS and name not in STRING_FIELDS and name not in ("maps", MAP_STEPS)
        and isinstance(obj, h5py.Dataset) and obj.ndim == 1 and np.issubdtype(obj.dtype, np.number)
    ]


def shard_map_kinds(f) -> dict[str, str]:
    """map name -> kind for an open shard."""
    maps = f.get("maps")
    if maps is None:
        return {}
    return {name: infer_map_kind(ds) for name, ds in maps.items()}


def _options(image, geometry, channels_first, float32, meta, compact, names) -> tuple:
    """The read options of :meth:`ShardIndex.read` and the map ``names`` to read, as a tuple; ``float32`` and
    ``compact`` exclude each other."""
    if float32 and compact:
        raise ValueError("read maps either as float32 or compact, not both")
    return image, geometry, channels_first, float32, meta, compact, names


class ShardIndex:
    """Faces of one or more shards, addressed by a global index.

    Parameters
    ----------
    paths : see :func:`find_shards`.
    maps : map names every face must provide; a shard lacking one raises
        FFMaskError naming the shard and the maps it has.
    max_open : HDF5 files kept open at once per process (least recently
        used are closed), so thousands of shards do not exhaust descriptors.
        Threads may share one index: a file another thread is still reading
        is closed when that read ends, not under it (so up to one more file
        per reading thread can be open for a moment).
    direct : decompress a face's Blosc and Zstandard chunks in Python
        (``blosc2``, ``zstandard``) instead of through HDF5's filter
        pipeline, which is slower for one small chunk; the arrays are the
        same either way (see :mod:`ffmask.shards.chunks`). False reads
        everything through HDF5, as before.

    Attributes: ``paths`` (list[Path]), ``counts`` (int64 per shard),
    ``labels`` (int8 (N,), every face's label, for samplers), ``map_kinds``
    (requested name -> kind), ``map_forms`` (requested name -> the form
    ``compact=True`` reads it in, the same in every shard: ``"uint8"``,
    ``"uint8/255"`` or ``"float16"``, see :meth:`read`), ``extras``
    (per-face scalars present in every shard), ``size`` (crop side of the
    first non-empty shard, or None), ``shard_sizes`` (tuple of the crop
    side per shard, None for an empty one: shards of runs at other
    ``--size`` can be read together, a consumer needing one side checks it).
    """

    def __init__(self, paths, maps: Sequence[str] = (), *, max_open: int = 64, direct: bool = True):
        if isinstance(maps, str):
            maps = [m for m in maps.split(",") if m]
        maps = list(dict.fromkeys(maps))
        self.paths = find_shards(paths)
        self.max_open = max(1, int(max_open))
        self.direct = bool(direct)
        counts, labels, kinds_seen, forms_seen = [], [], {}, {}
        extras: list[str] | None = None
        sizes: list[Optional[int]] = []  # crop side per shard; None: an empty shard
        for path in self.paths:
            with open_h5(path) as f:
                if "images" not in f or "label" not in f:
                    raise FFMaskError(f"{path} is not an ffmask shard (no /images or /label); "
                                      "check it with `ffmask info`")
                n = int(f["images"].shape[0])
                kinds = shard_map_kinds(f)
                missing = [m for m in maps if m not in kinds]
                if missing:
                    available = ", ".join(sorted(kinds)) or "none"
                    raise FFMaskError(f"shard {path} has no map {', '.join(map(repr, missing))} "
                                      f"(available maps: {available})")
                for m in maps:
                    if kinds[m] is None:
                        raise FFMaskError(f"shard {path}: map {m!r} has an unknown layout "
                                          f"{f['maps'][m].dtype} {f['maps'][m].shape}")
                    if kinds_seen.setdefault(m, kinds[m]) != kinds[m]:
                        raise FFMaskError(f"map {m!r} is {kinds_seen[m]} in one shard but {kinds[m]} in {path}")
                names = shard_extras(f)
                extras = names if extras is None else [e for e in extras if e in names]
                try:
                    layout = ShardLayout(f)  # checks the image codec and map predictors once
                except ValueError as exc:
                    raise FFMaskError(f"shard {path}: {exc}") from None
                sizes.append(int(layout.size) if n else None)
                if n:  # an empty (v1) shard has no faces to read, whatever its maps' forms
                    for m in maps:
                        forms_seen.setdefault(m, set()).add(layout.compact_form(m))
                counts.append(n)
                labels.append(np.asarray(f["label"][()], dtype=np.int8))
        self.counts = np.asarray(counts, dtype=np.int64)
        self.shard_sizes = tuple(sizes)
        self.size = next((side for side in sizes if side is not None), None)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int8)
        self.map_kinds = {m: kinds_seen[m] for m in maps}
        # One form per map for all shards: float16 where shards differ (float16(k / 255) is the value either way).
        self.map_forms = {m: (next(iter(forms_seen[m])) if len(forms_seen.get(m, ())) == 1 else
                              "uint8" if kinds_seen[m] == "mask" else "float16") for m in maps}
        self.extras = tuple(extras or ())
        self._reset()

    # -- process-local state --------------------------------------------

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()  # threads of one process share the open files
        self._starts = self.offsets.tolist()  # Python ints: bisect finds a face's shard without a NumPy call
        self._handles: OrderedDict[int, object] = OrderedDict()
        self._layouts: dict[int, ShardLayout] = {}
        self._meta: dict[int, dict] = {}
        self._readers: dict[int, int] = {}  # id(open file) -> reads in progress on it
        self._retired: dict[int, object] = {}  # id -> file dropped from _handles while being read

    def __getstate__(self) -> dict:
        # Open HDF5 handles must never cross a pickle (spawn) boundary.
        state = self.__dict__.copy()
        for key in ("_pid", "_lock", "_starts", "_handles", "_layouts", "_meta", "_stale", "_readers",
                    "_retired"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("direct", True)  # an index pickled before the option existed
        self.__dict__.update(state)
        self._reset()

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            # Forked: the inherited handles share HDF5 state with the parent.
            # Forget them (no close: closing would act on the parent's file
            # state) and open fresh ones in this process.
            self._stale = (self._handles, self._retired, getattr(self, "_stale", None))
            self._reset()

    def _file(self, shard: int):
        """(open file, its ShardLayout) of ``shard``, opening it if needed.

        The caller must :meth:`_done` with the file when it stops reading it:
        until then no other thread's :meth:`_file` or :meth:`close` closes it.
        """
        with self._lock:
            handles = self._handles
            if shard in handles:
                handles.move_to_end(shard)
                f, layout = handles[shard], self._layouts[shard]
            else:
                f = open_h5(self.paths[shard])
                layout = self._layouts[shard] = ShardLayout(f, direct=self.direct)
                handles[shard] = f
            self._readers[id(f)] = self._readers.get(id(f), 0) + 1
            while len(handles) > self.max_open:
                old_shard, old = handles.popitem(last=False)
                self._layouts.pop(old_shard, None)
                self._close_when_free(old)
            return f, layout

    def _close_when_free(self, f) -> None:
        """Close ``f`` (no longer in ``_handles``) now, or when its last read ends. Holds the lock."""
        if self._readers.get(id(f)):
            self._retired[id(f)] = f
        else:
            f.close()

    def _done(self, f) -> None:
        """End one read of ``f`` (from :meth:`_file`); closes it if it was dropped meanwhile."""
        with self._lock:
            left = self._readers[id(f)] - 1
            if left:
                self._readers[id(f)] = left
                return
            del self._readers[id(f)]
            if self._retired.pop(id(f), None) is not None:
                f.close()

    def close(self) -> None:
        """Close this process's open files (they reopen on the next read; a file
        another thread is reading closes when that read ends)."""
        self._check_process()
        with self._lock:
            for f in self._handles.values():
                self._close_when_free(f)
            self._handles.clear()
            self._layouts.clear()

    # -- reading --------------------------------------------------------

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row in that shard) of global face ``index`` (negative counts from the end)."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"face index must be an int, got {type(index).__name__}")
        given = int(index)
        index = given + n if given < 0 else given
        if not 0 <= index < n:
            raise IndexError(f"face index {given} out of range for {n} faces")
        shard = bisect_right(self._starts, index) - 1
        return shard, index - self._starts[shard]

    def _columns(self, shard: int, f) -> dict:
        """The per-face columns of ``shard`` (read once), ``f`` its open file (held by the caller)."""
        meta = self._meta.get(shard)
        if meta is None:
            meta = {"label": f["label"][()].astype(np.int64), "frame_index": f["frame_index"][()].astype(np.int64)}
            for name in STRING_FIELDS:
                # Fixed-width bytes: far smaller than a list of str objects.
                meta[name] = np.asarray(f[name][()].tolist(), dtype=np.bytes_) if f[name].shape[0] else None
            for name in self.extras:
                meta[name] = f[name][()].astype(np.float32)
            self._meta[shard] = meta
        return meta

    def read(self, index: int, *, image: bool = True, geometry: bool = False, channels_first: bool = False,
             float32: bool = False, meta: bool = True, compact: bool = False) -> dict:
        """Face ``index`` as numpy values, maps in their stored dtype.

        Returns {"image": uint8 (S,S,3) (if image), "maps": {name: uint8
        (S,S) | float16 (S,S) | float16 (S,S,3)}, "label": int, "video_id",
        "original_id", "manipulation", "compression", "split": str,
        "frame_index": int, each extra: float, and with ``geometry`` "box":
        int32 (4,), "landmarks": float32 (68,2)}. With ``channels_first`` the
        image is uint8 (3,S,S) instead (decoded straight to planes). With
        ``float32`` every map is float32 instead, holding the same values
        (what :class:`ShardDataset` returns). With ``compact`` every map is in
        its ``map_forms`` form instead, not widened: ``"uint8"`` masks uint8
        (S,S) {0, 1}; ``"uint8/255"`` continuous maps the stored uint8 (S,S)
        k, whose value is ``codec.UINT8_255_VALUES[k]`` = float16(k / 255);
        ``"float16"`` maps (other continuous maps, noise (S,S,3)) as without
        it. With ``meta=False`` the string fields and ``frame_index`` are
        left out.
        """
        self._check_process()
        shard, row = self.locate(index)
        options = _options(image, geometry, channels_first, float32, meta, compact, self.map_names())
        face, = self._read_rows(shard, [row], options)
        return face

    def read_many(self, indices: Sequence[int], *, image: bool = True, geometry: bool = False,
                  channels_first: bool = False, float32: bool = False, meta: bool = True,
                  compact: bool = False) -> list[dict]:
        """``[self.read(i, ...) for i in indices]``: the same dicts of the same arrays, in the order given.

        Faces are read as :meth:`iter_many` reads them (shard by shard, each
        shard's in row order) and put back in the order given. Every array
        is a new one, also for an index given twice. A damaged face raises
        the same FFMaskError as :meth:`read` (naming the shard and face);
        with several, the first in that reading order is named.
        """
        out: list = [None] * len(indices)
        faces = self.iter_many(indices, image=image, geometry=geometry, channels_first=channels_first,
                               float32=float32, meta=meta, compact=compact)
        with closing(faces):
            for k, face in faces:
                out[k] = face
        return out

    def iter_many(self, indices: Sequence[int], *, image: bool = True, geometry: bool = False,
                  channels_first: bool = False, float32: bool = False, meta: bool = True,
                  compact: bool = False, maps: Optional[Sequence[str]] = None) -> Iterator[tuple[int, dict]]:
        """``(k, self.read(indices[k], ...))`` for every position k, in reading order.

        Faces are read shard by shard, each shard's in row order (the order
        its chunks lie in the file), so a shard is looked up and held once
        per call instead of once per face; each face is yielded as soon as
        it is decoded (a caller that copies it into a batch and drops it
        keeps one face's arrays alive, not a batch's). Every index is
        checked (IndexError, TypeError) before any face is read. Errors as
        :meth:`read_many`. ``maps``: which of the index's maps to read
        (default all of them; a face's ``"maps"`` then holds only those, and
        the others are not decoded); a name the index lacks is a ValueError.
        """
        self._check_process()
        located = [self.locate(i) for i in indices]  # every index checked before any read
        groups: dict[int, list[int]] = {}
        for k, (shard, _) in enumerate(located):
            groups.setdefault(shard, []).append(k)
        options = _options(image, geometry, channels_first, float32, meta, compact, self.map_names(maps))
        for shard, ks in groups.items():
            ks.sort(key=lambda k: located[k][1])
            rows = self._read_rows(shard, [located[k][1] for k in ks], options)
            try:
                for k, face in zip(ks, rows):
                    yield k, face
            finally:
                rows.close()  # the shard's file is released now, also when the caller stops early

    def map_names(self, maps: Optional[Sequence[str]] = None) -> tuple[str, ...]:
        """The names of ``maps`` (default: all the index's maps), once each, in order; ValueError
        naming any the index lacks."""
        names = tuple(self.map_kinds) if maps is None else tuple(dict.fromkeys(maps))
        unknown = [m for m in names if m not in self.map_kinds]
        if unknown:
            raise ValueError(f"map(s) {', '.join(map(repr, unknown))} not among this index's maps "
                             f"({', '.join(self.map_kinds) or 'none'})")
        return names

    def _read_rows(self, shard: int, rows: list, options: tuple) -> Iterator[dict]:
        """Faces ``rows`` of ``shard`` one by one (see :meth:`read`; ``options`` its keyword values in order).

        A generator: the shard's file is held (not closed by another
        thread) from the first face until the last is yielded or the
        generator is closed.
        """
        image, geometry, channels_first, float32, meta, compact, names = options
        row = rows[0]
        f = None
        try:
            f, layout = self._file(shard)
            cols = self._columns(shard, f)
            labels, frames = cols["label"], cols["frame_index"]
            if compact:
                forms = self.map_forms
                def read_map(name, row, image):  # noqa: E306
                    return layout.map_compact(name, row, forms[name], image=image)
            else:
                read_map = layout.map_float32 if float32 else layout.map
            need_face = image or any(layout.encodings[name] == "derived" for name in names)
            for row in rows:
                try:
                    out: dict = {}
                    face = None
                    if image and channels_first:
                        out["image"] = layout.image_chw(row)
                        face = out["image"].transpose(1, 2, 0)
                    elif need_face:
                        face = layout.image(row)
                        if image:
                            out["image"] = face
                    out["maps"] = {name: read_map(name, row, image=face) for name in names}
                    if geometry:
                        out["box"] = f["box"][row]
                        out["landmarks"] = f["landmarks"][row]
                except (OSError, KeyError, ValueError) as exc:
                    raise FFMaskError(f"cannot read face {row} of shard {self.paths[shard]}: "
                                      f"{explain_read_error(exc)}") from exc
                out["label"] = int(labels[row])
                if meta:
                    for name in STRING_FIELDS:
                        out[name] = cols[name][row].decode("utf-8")
                    out["frame_index"] = int(frames[row])
                for name in self.extras:
                    out[name] = float(cols[name][row])
                yield out
        except (OSError, KeyError, ValueError) as exc:  # opening the file or reading its columns
            raise FFMaskError(f"cannot read face {row} of shard {self.paths[shard]}: "
                              f"{explain_read_error(exc)}") from exc
        finally:
            if f is not None:
                self._done(f)
