"""Binary morphology of many masks at once, on rows packed into 64-bit words.

``hull``'s candidate features (:mod:`ffmask.targets.hull_features`) need the
inner and outer rim of every candidate mask: one erosion and one dilation
per candidate with the same small elliptic kernel. Packed 64 pixels to a
word, all candidates go through each step together, one NumPy operation
per kernel offset on 1/64 of the bytes, with the result of OpenCV's
:func:`cv2.dilate` / :func:`cv2.erode` (``BORDER_CONSTANT`` 0 for the
erosion) of each mask alone, bit for bit (``tests/test_bitmasks.py``).

Layout: bool masks (K, h, w) become uint64 (K, h, ceil(w / 64)) words,
little-endian in pixels (pixel ``x`` of a row is bit ``x % 64`` of word
``x // 64``); the bits beyond ``w`` are zero in every array made here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack", "unpack_float32", "row_runs", "dilate", "erode", "directional"]

_WORD = np.dtype("<u8")
#: byte value -> its 8 bits as float32 0 / 1, least significant first (:func:`unpack_float32`)
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32)


def pack(masks: np.ndarray) -> np.ndarray:
    """Bool or 0 / 1 uint8 masks (K, h, w) as packed rows: uint64 (K, h, ceil(w / 64))."""
    k, h, w = masks.shape
    nw = -(-w // 64)
    out = np.zeros((k, h, nw * 8), np.uint8)
    if w % 8 == 0:  # whole bytes per row: one flat packing (NumPy's per-row loop is ~6x slower)
        out[:, :, :w // 8] = np.packbits(masks.view(np.uint8), bitorder="little").reshape(k, h, w // 8)
    else:
        out[:, :, :-(-w // 8)] = np.packbits(masks.view(np.uint8), axis=2, bitorder="little")
    return out.view(_WORD)


def unpack_float32(words: np.ndarray, w: int, out: np.ndarray = None) -> np.ndarray:
    """Packed rows (K, h, nw) as float32 0 / 1 values (K, h * w), written into ``out`` when given."""
    k, h, nw = words.shape
    if out is None:
        out = np.empty((k, h * w), np.float32)
    nbytes = -(-w // 8)
    data = words.view(np.uint8)[:, :, :nbytes]
    if w % 8 == 0:  # every byte's 8 values straight into place (no uint8 copy to convert)
        np.take(_BYTE_BITS, data.reshape(-1), axis=0, out=out.reshape(-1, 8), mode="clip")  # (clip: unbuffered)
    else:
        out.reshape(k, h, w)[...] = np.take(_BYTE_BITS, data, axis=0).reshape(k, h, nbytes * 8)[:, :, :w]
    return out


def row_runs(kernel: np.ndarray) -> list[int]:
    """Per kernel row, the half-width ``a`` of its run of ones centred on the middle column (-1: empty row).

    Raises
    ------
    ValueError
        When the kernel is not square with odd sides, or a row is not one
        run centred on the middle column (every :func:`cv2.getStructuringElement`
        ellipse, cross and rectangle of odd size is).
    """
    kernel = np.asarray(kernel)
    n = kernel.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != n or n % 2 == 0:
        raise ValueError(f"kernel must be square with odd sides, got shape {kernel.shape}")
    r = n // 2
    runs = []
    for row in kernel != 0:
        on = np.flatnonzero(row)
        a = r - int(on[0]) if on.size else -1
        if on.size and not (on[-1] - r == a and on.size == 2 * a + 1):
            raise ValueError("every kernel row must be one run of ones centred on the middle column")
        runs.append(a)
    return runs


def _shifted(x: np.ndarray, s: int) -> np.ndarray:
    """Every row's pixels moved ``s`` columns right (s > 0) or left (s < 0), zeros shifted in; 0 < |s| < 64."""
    out = np.empty_like(x)
    if s > 0:
        np.left_shift(x, np.uint64(s), out=out)
        out[..., 1:] |= x[..., :-1] >> np.uint64(64 - s)
    else:
        np.right_shift(x, np.uint64(-s), out=out)
        out[..., :-1] |= x[..., 1:] << np.uint64(64 + s)
    return out


def _morph(words: np.ndarray, w: int, kernel: np.ndarray, dilation: bool) -> np.ndarray:
    runs = row_runs(kernel)
    if max(runs) >= 64:
        raise ValueError("kernel rows longer than 127 pixels are not supported")
    op = np.bitwise_or if dilation else np.bitwise_and
    k, h, nw = words.shape
    r = len(runs) // 2
    # rows of runs: wide[a] = the op over the row's pixels x - a ... x + a
    wide = {0: words}
    for a in range(1, max(max(runs), 0) + 1):
        step = op(wide[a - 1], _shifted(words, a))
        wide[a] = op(step, _shifted(words, -a), out=step)
    out = None
    for dy in sorted(range(-r, r + 1), key=abs):  # the centre row first (a copy), then the others into it
        a = runs[dy + r]
        if a < 0:
            continue
        src = wide[a]
        if out is None:
            if dy != 0:  # a kernel without its centre row: start from the neutral element
                out = np.zeros_like(words) if dilation else np.full_like(words, np.uint64(2 ** 64 - 1))
            else:
                out = src.copy()
                continue
        lo, hi = max(0, -dy), h - max(0, dy)  # output rows whose row y + dy is inside the image
        if lo < hi:
            op(out[:, lo:hi], src[:, lo + dy:hi + dy], out=out[:, lo:hi])
        if not dilation:  # rows beyond the image are 0 (BORDER_CONSTANT 0)
            out[:, :lo] = 0
            out[:, max(hi, lo):] = 0
    if out is None:
        out = np.zeros_like(words)
    if w % 64:  # spill beyond the last column (dilation) or ones of the neutral start: cleared
        out[..., -1] &= np.uint64((1 << (w % 64)) - 1)
    return out


def dilate(words: np.ndarray, w: int, kernel: np.ndarray) -> np.ndarray:
    """Each packed mask dilated by ``kernel`` (rows as :func:`row_runs`), as ``cv2.dilate`` with its default border.

    Parameters
    ----------
    words : ndarray of uint64, shape (K, h, nw)
        Packed masks (:func:`pack`) of width ``w``, zero beyond it.
    w : int
        Mask width, pixels.
    kernel : ndarray, shape (n, n)
        Structuring element, non-zero where it acts.

    Returns
    -------
    ndarray of uint64, shape (K, h, nw)
    """
    return _morph(words, w, kernel, True)


def erode(words: np.ndarray, w: int, kernel: np.ndarray) -> np.ndarray:
    """Each packed mask eroded by ``kernel``, as ``cv2.erode`` with ``BORDER_CONSTANT`` 0 (outside is background).

    Parameters and result as :func:`dilate`.
    """
    return _morph(words, w, kernel, False)


def directional(words: np.ndarray, w: int, r: int, *, dilate: bool, downstream: bool,
                out: np.ndarray = None) -> np.ndarray:
    """Each packed mask dilated or eroded towards one side by an (r + 1) x (r + 1) square, as
    :func:`ffmask.targets.hull_candidates.directional_morph` (OpenCV, zero border) gives it, bit for bit.

    Parameters
    ----------
    words : ndarray of uint64, shape (K, h, nw)
        Packed masks (:func:`pack`) of width ``w``, zero beyond it.
    w : int
    r : int
        Reach in pixels, 1 <= r < 64.
    dilate, downstream : bool
        A dilation grows each mask down and right (``downstream``) or up and
        left; an erosion removes its bottom / right or top / left band of
        ``r`` pixels.
    out : ndarray of uint64, shape (K, h, nw), optional
        Written and returned when given.

    Returns
    -------
    ndarray of uint64, shape (K, h, nw)
    """
    if not 1 <= r < 64:
        raise ValueError(f"reach must be from 1 to 63 pixels, got {r}")
    op = np.bitwise_or if dilate else np.bitwise_and
    # each output pixel reads the square on one side of it: up / left for a downstream dilation or an upstream
    # erosion, down / right otherwise; the square is separable, rows first, then columns
    from_above = dilate == downstream
    k, h, nw = words.shape
    rows = words.copy()
    for dy in range(1, r + 1):
        lo, hi = (dy, h) if from_above else (0, h - dy)  # output rows whose row y -/+ dy is inside the image
        if lo < hi:
            src = words[:, lo - dy:hi - dy] if from_above else words[:, lo + dy:hi + dy]
            op(rows[:, lo:hi], src, out=rows[:, lo:hi])
        if not dilate:  # rows beyond the image are 0
            rows[:, :lo] = 0
            rows[:, hi:] = 0
    if out is None:
        out = rows.copy()
    else:
        out[...] = rows
    for dx in range(1, r + 1):  # reading dx columns left is moving the row dx columns right
        op(out, _shifted(rows, dx if from_above else -dx), out=out)
    if w % 64:  # spill beyond the last column cleared
        out[..., -1] &= np.uint64((1 << (w % 64)) - 1)
    return out
