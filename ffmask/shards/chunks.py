"""Read one face's row of an HDF5 dataset, bypassing HDF5's filter pipeline where it can.

Shards store images and maps one face per chunk. Reading a row through
h5py (or through ``DatasetID.read`` with ready dataspaces) makes HDF5 find
the chunk, run its filter pipeline and copy the result out; for a small
face that costs more than the decompression itself. :class:`RowReader`
instead fetches the chunk's stored bytes (``read_direct_chunk``) and
decompresses them here when the dataset's pipeline is a single filter
this module knows:

``Blosc`` (HDF5 filter 32001, what ``hdf5plugin.Blosc`` writes)
    decompressed by ``blosc2``, whose C-Blosc2 library reads Blosc1
    chunks; one thread, as HDF5's filter uses.
``Zstd`` (HDF5 filter 32015, what ``hdf5plugin.Zstd`` writes: one
    Zstandard frame) decompressed by ``zstandard``.

Either may be followed by HDF5's ``fletcher32`` checksum filter (what the
writer adds to every numeric dataset of a version 2 shard): its sum is
checked here (:mod:`ffmask.shards.checksum`) before decompressing, and a
chunk that fails it is handed to HDF5, whose own check then reports the
damage as an error instead of returning other values.

Anything else (another filter, several filters, no filter, a chunk HDF5
stored unfiltered, a missing package, a chunk of another shape or
decompressed size) is read through HDF5 as before, so every row comes back
the same either way, bit for bit; ``tests/test_read_fast.py`` compares the
two paths on every layout the writer makes.
"""

from __future__ import annotations

import threading

import numpy as np

from ffmask.shards.checksum import prefix_sum_function

__all__ = ["BLOSC_FILTER", "ZSTD_FILTER", "FLETCHER32_FILTER", "RowReader", "direct_codecs"]

BLOSC_FILTER = 32001
ZSTD_FILTER = 32015
FLETCHER32_FILTER = 3  # H5Z_FILTER_FLETCHER32
# Imported on first use (blosc2 takes ~0.3 s to import); False when not installed.
_CODECS: dict = {}
_LOCAL = threading.local()


def _blosc2():
    if "blosc2" not in _CODECS:
        try:
            import blosc2
        except ImportError:  # pragma: no cover - a dependency; the HDF5 path reads without it
            blosc2 = False
        _CODECS["blosc2"] = blosc2
        if blosc2:  # one thread, as HDF5's filter decompresses (and as a DataLoader worker should)
            _CODECS["blosc2_dparams"] = {"nthreads": 1}  # a dict: blosc2 converts a DParams on every call
    return _CODECS["blosc2"]


def _zstd():
    """This thread's Zstandard decompressor (one object must not serve two threads at once), or False."""
    if "zstd" not in _CODECS:
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a dependency; the HDF5 path reads without it
            _CODECS["zstd"] = False
        else:
            _CODECS["zstd"] = zstandard
            _CODECS["zstd_error"] = zstandard.ZstdError
    if not _CODECS["zstd"]:
        return False
    dctx = getattr(_LOCAL, "zstd", None)
    if dctx is None:
        dctx = _LOCAL.zstd = _CODECS["zstd"].ZstdDecompressor()
    return dctx


def direct_codecs() -> dict[int, bool]:
    """HDF5 filter id -> whether this process can decompress its chunks itself."""
    return {BLOSC_FILTER: bool(_blosc2()), ZSTD_FILTER: bool(_zstd())}


def _filters(ds) -> list[int]:
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


class RowReader:
    """``ds[row]`` for a numeric dataset ``ds`` (N, ...), as a new writable C-contiguous array.

    Parameters
    ----------
    ds : h5py.Dataset of a fixed numeric dtype, at least 1-D.
    direct : decompress chunks here when the layout allows (see the
        module docstring); False reads every row through HDF5's pipeline.

    Attributes: ``shape`` (a row's shape), ``dtype``, ``n`` (rows) and
    ``codec`` ("blosc", "zstd" or None: the path rows are read by).
    """

    def __init__(self, ds, direct: bool = True):
        from h5py import h5s

        self.ds = ds
        self.id = ds.id
        self.shape = tuple(ds.shape[1:])
        self.dtype = ds.dtype
        self.n = int(ds.shape[0])
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._file_space = self.id.get_space()
        self._memory_space = h5s.create_simple(self.shape or (1,))
        self._origin = (0,) * len(self.shape)
        self._lock = threading.Lock()  # the file space's selection is shared: one select-and-read at a time
        self.checked = False  # chunks end with a Fletcher-32 sum, verified before decompressing
        self.codec = self._direct_codec(ds) if direct else None

    def _direct_codec(self, ds):
        if ds.chunks != (1, *self.shape) or not self.nbytes or self.dtype.kind not in "iuf":
            return None
        filters = _filters(ds)
        if filters[-1:] == [FLETCHER32_FILTER]:
            filters, self.checked = filters[:-1], True
        if self.checked:
            self._sum = prefix_sum_function()
        if filters == [BLOSC_FILTER] and _blosc2():
            self._blosc2, self._dparams = _blosc2(), _CODECS["blosc2_dparams"]
            return "blosc"
        if filters == [ZSTD_FILTER] and _zstd():
            return "zstd"
        return None

    def __call__(self, row: int) -> np.ndarray:
        if not 0 <= row < self.n:
            return self.ds[row]  # h5py's own error (or its negative indexing)
        if self.codec is not None:
            out = self._direct(row)
            if out is not None:
                return out
        return self._hdf5(row)

    def _hdf5(self, row: int) -> np.ndarray:
        """The row through HDF5's filter pipeline, with dataspaces made once per dataset."""
        out = np.empty(self.shape, self.dtype)
        with self._lock:
            self._file_space.select_hyperslab((row, *self._origin), (1, *self.shape))
            self.id.read(self._memory_space, self._file_space, out)
        return out

    def _direct(self, row: int):
        """The row from its chunk's stored bytes, or None when HDF5 must read it."""
        try:
            mask, chunk = self.id.read_direct_chunk((row, *self._origin))
        except (OSError, ValueError, RuntimeError):  # e.g. a chunk never written: HDF5 gives the fill value
            return None
        if mask:  # HDF5 skipped a filter for this chunk: the bytes are not what the pipeline says
            return None
        if self.checked:
            n = len(chunk) - 4
            # A chunk failing its sum: HDF5 reads it again and raises its own checksum error.
            if n < 0 or int.from_bytes(chunk[n:], "little") != self._sum(chunk, n):
                return None
            chunk = memoryview(chunk)[:n]
        if self.codec == "blosc":
            # Blosc's 16-byte header: version, versionlz, flags, typesize, nbytes (int32 LE), ...
            if len(chunk) < 16 or int.from_bytes(chunk[4:8], "little", signed=True) != self.nbytes:
                return None
            out = np.empty(self.shape, self.dtype)
            try:
                self._blosc2.decompress2(chunk, dst=out, dparams=self._dparams)
            except (RuntimeError, ValueError):
                return None
            return out
        try:
            raw = _zstd().decompress(chunk)
        except _CODECS["zstd_error"]:  # e.g. a frame that does not record its size: HDF5 reads it
            return None
        if len(raw) != self.nbytes:
            return None
        out = np.empty(self.shape, self.dtype)
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
        return out
