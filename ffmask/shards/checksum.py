"""HDF5's Fletcher-32 chunk checksum, computed by HDF5's own C function (or NumPy).

Version 2 shards store every numeric dataset with HDF5's ``fletcher32``
filter: each chunk's stored bytes (after compression) are followed by a
4-byte checksum, and HDF5 refuses to return a chunk whose bytes no longer
match it (bit rot, a bad copy, a truncated transfer). :class:`RowReader`
(:mod:`ffmask.shards.chunks`) reads chunks without HDF5's filter pipeline,
so it checks the same sum here; on a mismatch it hands the row to HDF5,
whose own check then reports the damage.

The sum is HDF5's ``H5_checksum_fletcher32``: the data as big-endian 16-bit
words (an odd last byte padded with a zero), ``s1`` the sum of the words
and ``s2`` the sum of the running ``s1``, both modulo 65535 but with a
non-zero multiple of 65535 kept as 65535 (HDF5's end-around carry), stored
as ``s2 << 16 | s1`` in little-endian byte order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fletcher32", "fletcher32_numpy", "split_fletcher32", "hdf5_fletcher32", "prefix_sum_function",
           "explain_read_error"]

_BLOCK = 256  # words per row of the reshaped data: 256 * 65535 * rows stays far below 2**63
_SMALL = 96  # bytes: below this a Python loop beats NumPy's per-call overhead (a mask chunk is ~30 bytes)
_RANGES: dict = {}


def _arange(n: int) -> np.ndarray:
    out = _RANGES.get(n)
    if out is None:
        out = _RANGES[n] = np.arange(n, dtype=np.int64)
    return out


def _fold(s1: int, s2: int) -> int:
    if s1 == 0:  # every word is zero (then so is every running sum)
        return 0
    # End-around carry: HDF5 folds a non-zero sum into [1, 65535].
    return ((s2 % 65535 or 65535) << 16) | (s1 % 65535 or 65535)


def fletcher32_numpy(data) -> int:
    """HDF5's Fletcher-32 checksum of ``data``, computed with NumPy (see :func:`fletcher32`).

    Parameters
    ----------
    data : bytes-like
        Any length, including 0 and odd lengths.

    Returns
    -------
    int in [0, 2**32): ``s2 << 16 | s1`` exactly as HDF5 computes it.

    Notes
    -----
    With ``w_i`` the ``n`` words, ``s1 = sum w_i`` and ``s2 = sum (n - i) w_i``
    (``i`` from 0). Both are exact 64-bit integer sums here: the words are
    laid out in rows of 256, so ``sum i w_i`` is ``256 * (row index . row
    sums) + (column index . column sums)``.
    """
    b = memoryview(data).cast("B")
    if len(b) < _SMALL:
        s1 = s2 = 0
        for i in range(0, len(b) - 1, 2):
            s1 += (b[i] << 8) | b[i + 1]
            s2 += s1
        if len(b) % 2:
            s1 += b[-1] << 8
            s2 += s1
        return _fold(s1, s2)
    a = np.frombuffer(b, np.uint8)
    n = -(-len(a) // 2)
    rows = -(-n // _BLOCK)
    if len(a) != 2 * _BLOCK * rows:
        a = np.concatenate([a, np.zeros(2 * _BLOCK * rows - len(a), np.uint8)])
    words = a.view(">u2").astype(np.int32).reshape(rows, _BLOCK)
    row_sums = words.sum(axis=1, dtype=np.int64)
    column_sums = words.sum(axis=0, dtype=np.int64)
    s1 = int(row_sums.sum())
    weighted = _BLOCK * int(_arange(rows) @ row_sums) + int(_arange(_BLOCK) @ column_sums)
    return _fold(s1, n * s1 - weighted)


_C_SUM: dict = {}  # "fn": HDF5's function through ctypes, or None where it is unusable


def _self_test(fn) -> bool:
    """Whether ``fn`` (HDF5's function) gives :func:`fletcher32_numpy`'s sums on strings that exercise its folds."""
    samples = [b"", b"\x01", b"\x01\x02\x03", bytes(range(256)) * 3 + b"\x07", b"\xff" * 1000, b"\xff" * 1001,
               bytes(997), np.arange(40_001, dtype=np.uint32).astype(np.uint8).tobytes()]
    return all(fn(b, len(b)) == fletcher32_numpy(b) for b in samples)


def hdf5_fletcher32():
    """HDF5's ``H5_checksum_fletcher32(const void *, size_t) -> uint32`` of the library h5py uses, or None.

    Looked up once through h5py's own extension module (so the symbol
    resolves in the very HDF5 library h5py loaded) and kept only if it
    agrees with :func:`fletcher32_numpy` on a few strings. It is a pure
    function of its bytes (no HDF5 library state), so threads may call it
    at once without h5py's lock; ``ctypes`` releases the GIL around it.
    """
    if "fn" not in _C_SUM:
        fn = None
        try:
            import ctypes

            import h5py.h5

            fn = ctypes.CDLL(h5py.h5.__file__).H5_checksum_fletcher32
            fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_size_t]
            if not _self_test(fn):  # pragma: no cover - another HDF5 with another function of that name
                fn = None
        except (ImportError, OSError, AttributeError):  # pragma: no cover - not exported by this HDF5 build
            fn = None
        _C_SUM["fn"] = fn
    return _C_SUM["fn"]


def fletcher32(data) -> int:
    """HDF5's Fletcher-32 checksum of ``data`` (any bytes-like, any length, including 0 and odd).

    Returns an int in [0, 2**32): ``s2 << 16 | s1`` exactly as HDF5 computes
    it: HDF5's own function where usable (:func:`hdf5_fletcher32`), else
    :func:`fletcher32_numpy`.
    """
    fn = hdf5_fletcher32()
    if fn is None:
        return fletcher32_numpy(data)
    if isinstance(data, bytes):
        return fn(data, len(data))
    a = np.frombuffer(memoryview(data).cast("B"), np.uint8)  # keeps the buffer alive during the call
    return fn(a.ctypes.data, a.size) if a.size else 0


def _numpy_prefix_sum(data: bytes, n: int) -> int:
    return fletcher32_numpy(memoryview(data)[:n])


def prefix_sum_function():
    """A function ``(data: bytes, n) -> fletcher32(data[:n])`` without slicing ``data``.

    HDF5's own function where usable (see :func:`hdf5_fletcher32`), else the
    NumPy formulation; looked up once by a reader, then called per chunk.
    """
    fn = hdf5_fletcher32()
    return _numpy_prefix_sum if fn is None else fn


def split_fletcher32(chunk) -> tuple:
    """``(payload, ok)`` of a chunk stored with the ``fletcher32`` filter last.

    ``payload`` is a memoryview of the chunk without its 4 trailing checksum
    bytes; ``ok`` says whether they match :func:`fletcher32` of it (False
    for a chunk shorter than 4 bytes).
    """
    view = memoryview(chunk)
    if len(view) < 4:
        return view, False
    payload = view[:-4]
    stored = int.from_bytes(view[-4:], "little")
    fn = hdf5_fletcher32()
    if fn is not None and isinstance(chunk, bytes):  # what read_direct_chunk returns: no copy, no view
        return payload, stored == fn(chunk, len(chunk) - 4)
    return payload, stored == fletcher32(payload)


def explain_read_error(exc: BaseException) -> str:
    """``str(exc)`` of an HDF5 read error, with what HDF5's terse filter failure usually means."""
    text = str(exc)
    if "filter returned failure" in text:
        text += " - damaged data: a chunk fails its checksum or cannot be decompressed (a bad copy or disk?)"
    return text
