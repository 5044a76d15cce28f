"""How schema version 2 stores images and maps, and how readers undo it.

Every function here turns between the arrays users get (schema version 1
dtypes: images uint8 (S, S, 3), masks uint8 {0, 1} (S, S), continuous maps
float16 (S, S) in [0, 1], noise float16 (S, S, 3)) and what a v2 shard
holds. The choice of each encoding is recorded in the dataset's attributes,
so a reader never guesses:

``/images`` attrs ``codec``:
    ``gradient`` lossless, the default: uint8 (N, 3, S, S) channel planes of
              the reversible colour transform (R - G, G, B - G, mod 256)
              minus the gradient prediction left + up - upleft (mod 256),
              zigzag-mapped (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) under Blosc
              (Zstandard level 1, bit-shuffle); decoding is a 2-D running
              sum (``cv2.integral``) and two plane additions;
    ``delta`` lossless, the default before: uint8 (N, 3, S, S) channel planes,
              each row minus the row above (mod 256), under Zstandard level 1;
              decoding is a cumulative sum down the rows;
    ``png``   lossless PNG bytes per face (vlen uint8 (N,)), ~40 % larger than gradient;
    ``jpeg``  lossy JPEG bytes, attr ``quality`` records the quality;
    ``blosc`` uint8 (N, S, S, 3) under Blosc(lz4hc, bit-shuffle), lossless
              and the fastest to read; ``raw`` uncompressed (or v1 filters).
``/maps/<name>`` attrs ``kind`` and ``encoding``:
    ``mask``      uint8 {0, 1}, Zstandard;
    ``uint8/255`` continuous maps as uint8 k = round(255 x), read as
                  float16(k / 255): lossless for ``diff`` (its values are
                  exactly k / 255), error <= 1/510 otherwise. A map stored
                  at a coarser grid g < S (``focus``: the model's 14 x 14)
                  has attr ``grid`` = g and is upsampled bilinearly on read
                  (pixel centres aligned, as ``torch`` ``align_corners=False``);
    ``scaled``    noise as int8 q with a per-face step in ``/map_steps/<name>``
                  (float32 (N,)); value = q * step, step = (max - min) / 50 over
                  the face, so the error is <= 1 % of the face's range;
    ``derived``   noise not stored: ``/map_steps/<name>`` holds each face's σ
                  and readers recompute ``noise_map(image, σ)`` from the
                  (lossless) image, exactly the value that was written.
``/maps/<name>`` attr ``predictor`` (absent in older shards: ``none``):
    ``none``      the integers above as they are (masks, grid maps);
    ``gradient``  the integers minus the gradient prediction left + up -
                  upleft (mod 256), zigzag-mapped, under Blosc (Zstandard,
                  bit-shuffle): full-size continuous maps, and scaled noise
                  after the colour transform of the images (c0 - c1, c1,
                  c2 - c1). Exactly lossless on the stored integers; the
                  decoded map is the same as with ``none``.
``/maps/<name>`` attr ``packing`` (absent in older shards: ``none``):
    ``none``      the (predicted) integers in the map's own shape;
    ``nibbles``   the same bytes, flattened, packed two to a byte
                  (:func:`pack_nibbles`): uint8 (N, L) with L =
                  :func:`nibbles_length` of the face's value count, under
                  Zstandard level 1. Byte-level codecs cannot code the
                  zigzagged residual's 2-3 bits per value near its entropy
                  (Zstandard alone finds spurious short matches in it,
                  bit-shuffle codes bit planes independently); a pair per
                  byte is coded by Zstandard's Huffman literals within ~1 %
                  of the residual's order-0 entropy. Exact on any bytes.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

__all__ = [
    "DEFAULT_IMAGE_CODEC",
    "IMAGE_CODECS",
    "MAP_PACKINGS",
    "MAP_PREDICTORS",
    "NOISE_LEVELS",
    "UINT8_255_VALUES",
    "gradient_encode",
    "gradient_decode",
    "decode_image",
    "decode_image_chw",
    "decode_map",
    "decode_map_float32",
    "encode_image",
    "encode_map",
    "nibbles_length",
    "pack_map",
    "pack_nibbles",
    "predict_map",
    "unpack_map",
    "unpack_nibbles",
    "unpredict_map",
    "upsample_grid",
]

IMAGE_CODECS = ("gradient", "delta", "png", "jpeg", "blosc", "raw")
DEFAULT_IMAGE_CODEC = "gradient"
# The order in which a shard's maps may be predicted (see the module docstring).
MAP_PREDICTORS = ("none", "gradient")
# How a map's (predicted) bytes are laid out in the dataset (see the module docstring).
MAP_PACKINGS = ("none", "nibbles")
# A value >= _NIBBLE_ESCAPE is stored as the nibble 15 and its excess in the tail.
_NIBBLE_ESCAPE = 15
# Measured on 100 of the demo's 224 px faces (docs/shards.md, CPU ms per face):
#   gradient 41 KiB, write 0.7, read + decode 0.41  <- default: the smallest lossless, as fast to read as delta
#   delta    65 KiB, write 1.6, read + decode 0.40
#   png      58 KiB, write 5.2, read + decode 2.1
#   blosc   108 KiB, write 7.5, read + decode 0.23
#   jpeg q95 14 KiB (lossy), decode 0.9
# The noise step is the face's range / NOISE_LEVELS, so rounding errs by at
# most range / (2 * NOISE_LEVELS) = 1 % of the range.
NOISE_LEVELS = 50
# PNG with zlib's run-length strategy: on 224 px face crops (the sample
# data, benchmarks/bench_shards.py) it is both the smallest (58 KiB vs 65 at
# level 1 default strategy) and the fastest to encode and decode.
# float16(k / 255) for every uint8 k, computed as the float32 the writer divided.
_UINT8_TO_FLOAT16 = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float16)
# The same values widened: what a reader that wants float32 gets, in one table lookup.
_UINT8_TO_FLOAT32 = _UINT8_TO_FLOAT16.astype(np.float32)
#: float32 (256,): the value readers return for a stored k of a full-size ``uint8/255``
#: map, float16(k / 255) widened (not k / 255 in float32: they differ in the low bits).
UINT8_255_VALUES = _UINT8_TO_FLOAT32
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def to_float16(values: np.ndarray) -> np.ndarray:
    """``values.astype(np.float16)``, through OpenCV's SIMD conversion for float32 images.

    ``cv2.convertFp16`` rounds to nearest even as NumPy does and gives the
    same float16 for every float32 bit pattern (checked exhaustively, NaNs
    aside, which stay NaN), ~25x faster than NumPy's cast of a 224 px noise
    map. Other dtypes and shapes go through NumPy (float64 straight to
    float16 is not float64 -> float32 -> float16).
    """
    if values.dtype == np.float32 and values.ndim in (2, 3) and values.size and _CONVERT_FP16 is not None:
        return _CONVERT_FP16(np.ascontiguousarray(values)).view(np.float16)
    return values.astype(np.float16)


def float16_to_float32(values: np.ndarray) -> np.ndarray:
    """``np.asarray(values, np.float32)``; float16 images widened by OpenCV (exact either way)."""
    if values.dtype == np.float16 and values.ndim in (2, 3) and values.size and _CONVERT_FP16 is not None:
        return _CONVERT_FP16(np.ascontiguousarray(values).view(np.int16))
    return np.asarray(values, np.float32)


# OpenCV 4's float16 conversion (a later OpenCV may drop it: NumPy then).
_CONVERT_FP16 = getattr(cv2, "convertFp16", None)


def encode_image(image: np.ndarray, codec: str, quality: Optional[int] = None) -> np.ndarray:
    """uint8 (S, S, 3) RGB -> what ``/images`` stores for ``codec``.

    png/jpeg: uint8 (nbytes,) encoded bytes; blosc/raw: the image itself
    (the HDF5 filter compresses it).
    """
    if codec in ("blosc", "raw"):
        return image
    if codec == "gradient":
        return _image_gradient(image)
    if codec == "delta":
        planes = np.ascontiguousarray(image.transpose(2, 0, 1))
        out = planes.copy()
        out[:, 1:] -= planes[:, :-1]  # uint8 arithmetic wraps: exact mod 256
        return out
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if codec == "png":
        ok, buf = cv2.imencode(".png", bgr, _PNG_PARAMS)
    elif codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        raise ValueError(f"image codec must be one of {IMAGE_CODECS}, got {codec!r}")
    if not ok:  # pragma: no cover - OpenCV fails only on invalid input, checked before
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {codec}")
    return buf.reshape(-1)


def _image_gradient(image: np.ndarray) -> np.ndarray:
    """The "gradient" codec's stored planes of a uint8 (S, S, 3) RGB image: uint8 (3, S, S).

    That is ``gradient_encode(_rct(planes, axis=0), rows=1)`` of the image's
    channel planes, computed in fewer passes: ``cv2.split`` de-interleaves the
    channels (instead of a transposed copy), and the colour transform and
    both differences are written straight into preallocated planes (no
    temporary per step). uint8 arithmetic wraps, so every value is the same
    mod 256. One 224 px face encoded again and again (warm memory): 0.35 ->
    0.05 ms; in an annotate run, where every face's planes are fresh memory,
    2.6 -> 1.9 % of a task's time (py-spy).
    """
    red, green, blue = cv2.split(image)
    x = np.empty((3,) + green.shape, np.uint8)
    np.subtract(red, green, out=x[0])  # _rct: (R - G, G, B - G)
    x[1] = green
    np.subtract(blue, green, out=x[2])
    down = np.empty_like(x)  # x minus the row above (the first row as it is)
    down[:, 0] = x[:, 0]
    np.subtract(x[:, 1:], x[:, :-1], out=down[:, 1:])
    out = np.empty_like(x)  # down minus the column to the left (the first column as it is)
    out[:, :, 0] = down[:, :, 0]
    np.subtract(down[:, :, 1:], down[:, :, :-1], out=out[:, :, 1:])
    return _zigzag(out)


def decode_image_chw(stored: np.ndarray, codec: str, *, overwrite: bool = False) -> np.ndarray:
    """The image as uint8 (3, S, S) channel planes, C-contiguous (what a torch reader wants).

    ``overwrite``: ``stored`` is a scratch array the caller drops (a row just
    read), so "gradient" may decode in it instead of allocating a copy.
    """
    if codec == "gradient":
        residual = _unrct(_unzigzag(stored, overwrite=overwrite), axis=0)
        out = np.empty(residual.shape, np.uint8)
        for c in range(residual.shape[0]):
            out[c] = _integral(residual[c])  # int32 -> uint8 keeps the low byte: the sum mod 256
        return out
    if codec == "delta":
        return _undelta(stored, (0, 1, 2))
    return np.ascontiguousarray(decode_image(stored, codec).transpose(2, 0, 1))


def _undelta(stored: np.ndarray, order: tuple) -> np.ndarray:
    """Running sum down the rows of "delta" planes (3, S, S), as ``stored.transpose(order)``.

    The same as ``np.cumsum(stored, axis=-2).transpose(order)``, C-contiguous,
    about a third faster: NumPy adds whole rows when the summed axis is the
    outermost of the views it walks.
    """
    out = np.empty(tuple(stored.shape[i] for i in order), np.uint8)
    rows_first = (1, 0, 2) if order == (0, 1, 2) else (0, 1, 2)  # out viewed with the rows outermost
    source = stored.transpose(1, 0, 2) if order == (0, 1, 2) else stored.transpose(order)
    np.cumsum(source, axis=0, dtype=np.uint8, out=out.transpose(rows_first))
    return out


def decode_image(stored: np.ndarray, codec: str, *, overwrite: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_image`: uint8 (S, S, 3) RGB, C-contiguous (OpenCV needs that).

    ``overwrite`` as in :func:`decode_image_chw`.
    """
    if codec in ("blosc", "raw"):
        return stored
    if codec == "gradient":
        residual = np.ascontiguousarray(_unrct(_unzigzag(stored, overwrite=overwrite), axis=0).transpose(1, 2, 0))
        return _integral(residual).astype(np.uint8)
    if codec == "delta":
        return _undelta(stored, (1, 2, 0))
    if codec not in ("png", "jpeg"):
        raise ValueError(f"unknown image codec {codec!r} (this ffmask reads {', '.join(IMAGE_CODECS)})")
    bgr = cv2.imdecode(np.asarray(stored, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"corrupt {codec} image bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _zigzag(residual: np.ndarray) -> np.ndarray:
    """uint8 residuals read as int8 -> uint8 0, -1, 1, -2, 2, ... as 0, 1, 2, 3, 4, ...

    Small residuals of either sign become small numbers whose high bits are
    zero, which Blosc's bit-shuffle then packs into runs of zero bytes. A
    bijection of the 256 byte values.
    """
    u = residual.view(np.uint8)
    # v << 1 is u + u mod 256: NumPy adds uint8 with SIMD but shifts int8
    # left with scalar code (~8x slower); v >> 7 (0 or -1) is already fast.
    out = np.add(u, u)
    np.bitwise_xor(out, (residual.view(np.int8) >> 7).view(np.uint8), out=out)
    return out


def _unzigzag(stored: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Inverse of :func:`_zigzag`: uint8 -> uint8 (a new C-contiguous array).

    With ``overwrite`` a writable C-contiguous uint8 ``stored`` is decoded in
    place and returned (one temporary instead of two: ~20 % of a 224 px
    image's decoding).
    """
    stored = np.asarray(stored, np.uint8)
    sign = np.bitwise_and(stored, 1)
    if overwrite and stored.flags.writeable and stored.flags.c_contiguous:
        out = np.right_shift(stored, 1, out=stored)
    else:
        out = np.right_shift(stored, 1)
    np.negative(sign, out=sign)  # 0 -> 0, 1 -> 255 (uint8 wraps)
    np.bitwise_xor(out, sign, out=out)
    return out


def _rct(planes: np.ndarray, axis: int) -> np.ndarray:
    """Reversible colour transform of 3 channels along ``axis``: (c0 - c1, c1, c2 - c1) mod 256.

    For RGB that is (R - G, G, B - G), JPEG-LS's and lossless JPEG 2000's
    simplest decorrelation; uint8 arithmetic wraps, so it is exact.
    """
    out = np.array(planes, np.uint8, copy=True)
    base = np.take(planes, 1, axis=axis)
    for c in (0, 2):
        index = [slice(None)] * planes.ndim
        index[axis] = c
        out[tuple(index)] -= base
    return out


def _unrct(residual: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`_rct` (in place on ``residual``, which it returns)."""
    if axis == 0:  # channel planes (3, S, S): what images decode through, without building index tuples
        residual[0] += residual[1]
        residual[2] += residual[1]
        return residual
    index = [slice(None)] * residual.ndim
    index[axis] = 1
    base = residual[tuple(index)]
    for c in (0, 2):
        index[axis] = c
        residual[tuple(index)] += base
    return residual


def gradient_encode(values: np.ndarray, rows: int = 0) -> np.ndarray:
    """uint8 values -> zigzag of ``x - left - up + upleft`` (mod 256), the same shape.

    ``rows`` is the axis of the rows; the next axis holds the columns (so
    (S, S), (S, S, C) with ``rows=0``, or (C, S, S) with ``rows=1``). Pixels
    outside the array count as 0, so the first row and column are
    differences along one axis only and pixel (0, 0) is kept as it is.
    The residual is the mixed second difference, whose 2-D running sum
    (:func:`gradient_decode`) gives ``values`` back exactly.
    """
    x = np.asarray(values)
    if x.dtype != np.uint8:
        raise ValueError(f"gradient_encode needs uint8 values, got {x.dtype}")
    down = x.copy()
    below, above = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    below[rows], above[rows] = slice(1, None), slice(None, -1)
    down[tuple(below)] -= x[tuple(above)]
    out = down.copy()
    right, left = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    right[rows + 1], left[rows + 1] = slice(1, None), slice(None, -1)
    out[tuple(right)] -= down[tuple(left)]
    return _zigzag(out)


def gradient_decode(stored: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gradient_encode` with ``rows=0``: uint8 (H, W) or (H, W, C), C <= 4."""
    return _integral(_unzigzag(stored)).astype(np.uint8)


def _integral(residual: np.ndarray) -> np.ndarray:
    """2-D running sum of uint8 (H, W[, C]) as int32 (H, W[, C]); its low byte is the sum mod 256.

    ``cv2.integral`` (SIMD, ~15 µs for 224 x 224) instead of two
    ``np.cumsum`` (~600 µs): NumPy's running sum along a row is scalar code.
    Its int32 never overflows for S <= 2896 (255 S² < 2³¹), and a cast of
    the int32 to uint8 keeps the low byte, the sum mod 256, either way.
    """
    return cv2.integral(np.ascontiguousarray(residual), sdepth=cv2.CV_32S)[1:, 1:]


def predict_map(stored: np.ndarray, kind: str, predictor: str) -> np.ndarray:
    """One face's stored integers (uint8 (S, S), or int8 (S, S, 3) noise) -> what ``predictor`` stores."""
    if predictor == "none":
        return stored
    _check_predictor(predictor)
    if kind == "noise":
        return gradient_encode(_rct(stored.view(np.uint8), axis=2), rows=0).view(np.int8)
    return gradient_encode(stored, rows=0)


def unpredict_map(stored: np.ndarray, kind: str, predictor: str, *, overwrite: bool = False) -> np.ndarray:
    """Inverse of :func:`predict_map` for one face or a block (n, ...) of faces.

    ``overwrite``: one face's ``stored`` may be decoded in place (see :func:`_unzigzag`).
    """
    if predictor == "none":
        return stored
    _check_predictor(predictor)
    stored = np.asarray(stored)
    if stored.ndim > (3 if kind == "noise" else 2):
        return np.stack([unpredict_map(face, kind, predictor) for face in stored]) if len(stored) else stored
    if kind == "noise":
        return _integral(_unrct(_unzigzag(stored.view(np.uint8), overwrite), axis=2)).astype(np.int8)
    return _integral(_unzigzag(stored, overwrite)).astype(np.uint8)


def nibbles_length(count: int) -> int:
    """Bytes of one face's :func:`pack_nibbles` array for ``count`` values: the pairs, then room for every escape.

    ``ceil(count / 2)`` pair bytes followed by ``count`` bytes, enough for
    the worst case (every value an escape); the unused tail is zero, which
    Zstandard stores in a few bytes.
    """
    return (int(count) + 1) // 2 + int(count)


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """uint8 values (any shape, read flat in C order) -> uint8 (:func:`nibbles_length`,).

    Values v0, v1, ... are paired into bytes ``min(v0, 15) << 4 | min(v1, 15)``
    (a zero nibble pads an odd count); each value >= 15 then has its excess
    ``v - 15`` appended after the pairs, in order; the rest is zero. Meant
    for zigzagged prediction residuals (mostly < 15), exact for any bytes.
    """
    v = np.ascontiguousarray(values).reshape(-1)
    if v.dtype != np.uint8:
        v = v.view(np.uint8)
    n = v.size
    n_pairs = (n + 1) // 2
    out = np.zeros(nibbles_length(n), np.uint8)
    if n == 0:
        return out
    capped = np.empty(2 * n_pairs, np.uint8)
    capped[-1] = 0  # the pad nibble of an odd count
    # OpenCV's SIMD min is ~8x NumPy's on uint8 (a 2-D view: OpenCV reads short 1-D arrays as scalars).
    capped[:n] = cv2.min(v.reshape(1, -1), _NIBBLE_ESCAPE).reshape(-1) if n >= 16 else np.minimum(v, _NIBBLE_ESCAPE)
    # Little-endian pairs as uint16 (v0 | v1 << 8): v0 << 4 | v1 in the low byte.
    both = capped.view("<u2")
    out[:n_pairs] = (both << 4) | (both >> 8)  # the cast keeps the low byte
    big = v >= _NIBBLE_ESCAPE
    if big.any():
        excess = v[big] - np.uint8(_NIBBLE_ESCAPE)
        out[n_pairs:n_pairs + excess.size] = excess
    return out


def unpack_nibbles(stored: np.ndarray, shape: tuple) -> np.ndarray:
    """Inverse of :func:`pack_nibbles`: uint8 (L,) -> uint8 ``shape`` (a new C-contiguous array).

    Raises ValueError when ``stored`` has not the length ``shape`` packs to.
    """
    stored = np.asarray(stored, np.uint8).reshape(-1)
    n = int(np.prod(shape))
    if stored.size != nibbles_length(n):
        raise ValueError(f"packed map has {stored.size} bytes, expected {nibbles_length(n)} for shape {tuple(shape)}")
    n_pairs = (n + 1) // 2
    if n == 0:
        return np.zeros(shape, np.uint8)
    pairs = stored[:n_pairs].reshape(1, -1)
    # High and low nibbles interleaved by OpenCV (one pass) instead of a NumPy gather (~3x slower).
    out = cv2.merge([np.right_shift(pairs, 4), np.bitwise_and(pairs, 15)]).reshape(-1)[:n]
    escapes = _escapes(out)
    if escapes.size:
        out[escapes] += stored[n_pairs:n_pairs + escapes.size]
    return out.reshape(shape)


def _escapes(values: np.ndarray) -> np.ndarray:
    """Indices of the nibble-15 values, ascending: ``np.flatnonzero(values == 15)``, ~30 % faster.

    Escapes are rare (< 1 % of a face's values), so the search runs over
    8-value words first and looks inside the few words that hold one.
    """
    n = values.size
    found = np.zeros((n + 7) // 8 * 8, np.bool_)
    np.equal(values, _NIBBLE_ESCAPE, out=found[:n])
    words = np.flatnonzero(found.view(np.uint64) != 0)
    if not words.size:
        return words
    inside = found.reshape(-1, 8)[words]
    return (words[:, None] * 8 + np.arange(8))[inside]


def pack_map(stored: np.ndarray, packing: str) -> np.ndarray:
    """One face's (predicted) map integers -> what ``packing`` stores (``none``: unchanged)."""
    if packing == "none":
        return stored
    _check_packing(packing)
    return pack_nibbles(stored)


def unpack_map(stored: np.ndarray, packing: str, shape: tuple, dtype) -> np.ndarray:
    """Inverse of :func:`pack_map` for one face (L,) or a block (n, L): per-face ``shape`` of ``dtype``."""
    if packing == "none":
        return stored
    _check_packing(packing)
    stored = np.asarray(stored)
    if stored.ndim == 2:
        out = np.empty((len(stored), *shape), dtype)
        for i, face in enumerate(stored):
            out[i] = unpack_nibbles(face, shape).view(dtype)
        return out
    return unpack_nibbles(stored, shape).view(dtype)


def _check_packing(packing) -> None:
    if packing not in MAP_PACKINGS:
        raise ValueError(f"unknown map packing {packing!r} (this ffmask reads {', '.join(MAP_PACKINGS)})")


def _check_predictor(predictor) -> None:
    if predictor not in MAP_PREDICTORS:
        raise ValueError(f"unknown map predictor {predictor!r} (this ffmask reads {', '.join(MAP_PREDICTORS)})")


def encode_map(values: np.ndarray, kind: str, encoding: str, predictor: str = "none",
               step: Optional[float] = None) -> tuple[np.ndarray, float]:
    """A validated map (float or bool) -> (stored array, per-face step or NaN).

    mask -> uint8 {0, 1}; continuous (``uint8/255``) -> uint8 round(255 x) of
    x clipped to [0, 1]; noise (``scaled``) -> int8 round(x / step) with
    step = range / NOISE_LEVELS (1.0 for an all-constant face), or the
    ``step`` given (a shard being re-encoded keeps its integers and steps;
    ValueError if a value would need more than int8). With
    ``predictor="gradient"`` those integers are stored as their zigzagged
    prediction residual (:func:`predict_map`), same dtype and shape.
    """
    if kind == "mask":
        return predict_map(values.astype(np.uint8), kind, predictor), float("nan")
    if kind == "continuous":
        x = np.clip(float16_to_float32(values), 0.0, 1.0)
        return predict_map(np.rint(x * np.float32(255.0)).astype(np.uint8), kind, predictor), float("nan")
    if encoding != "scaled":
        raise ValueError(f"noise encoding {encoding!r} stores no array")
    x = float16_to_float32(values)
    if step is None:
        span = float(x.max() - x.min()) if x.size else 0.0
        step = span / NOISE_LEVELS if span > 0 else 1.0
        # |x| / step <= span / step = NOISE_LEVELS < 127: always fits int8.
        q = np.rint(x / np.float32(step))
    else:
        step = float(np.float32(step))
        if not np.isfinite(step) or step <= 0:
            raise ValueError(f"a noise step must be a positive number, got {step!r}")
        q = np.rint(x / np.float32(step))
        if q.size and np.abs(q).max() > 127:
            raise ValueError(f"noise values up to {np.abs(x).max():g} need more than int8 at step {step:g}")
    return predict_map(q.astype(np.int8), kind, predictor), step


def _scaled_values(step) -> np.ndarray:
    """float16(q * step) for every int8 q, indexed by q's byte (``q.view(np.uint8)``).

    The same float32 product and float16 rounding as the block path of
    :func:`decode_map`, computed for the 256 possible q instead of per pixel.
    """
    q = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float32)
    return (q * np.float32(step)).astype(np.float16)


def upsample_grid(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of float32 (..., g, g) maps to (..., size, size).

    Pixel centres aligned (``cv2.INTER_LINEAR``, the same sampling as
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``),
    clipped to [0, 1].
    """
    grid = np.asarray(grid, np.float32)
    if grid.ndim == 2:
        return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return np.stack([upsample_grid(g, size) for g in grid])


def _lookup(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[values]`` for uint8 ``values`` (H, W[, C <= 4]) and a 256-entry float32 ``table``.

    ``cv2.LUT`` gives the same values as ``np.take`` at about a quarter of its
    time (0.02 against 0.08 ms for 224 x 224); other shapes go through NumPy.
    """
    values = np.ascontiguousarray(values, np.uint8)
    if values.ndim == 2 or (values.ndim == 3 and values.shape[2] <= 4):
        return cv2.LUT(values, table)
    return np.take(table, values)


def decode_map_float32(stored: np.ndarray, kind: str, encoding: str, *, size: int, step=None,
                       image: Optional[np.ndarray] = None, predictor: str = "none",
                       overwrite: bool = False) -> np.ndarray:
    """:func:`decode_map` widened to float32: ``decode_map(...).astype(np.float32)``, cheaper.

    Full-size uint8 continuous maps and masks go straight to float32 (one
    table lookup instead of a float16 lookup and a float16 -> float32 cast);
    every other encoding is decoded and then cast. ``overwrite`` as in
    :func:`decode_map`.
    """
    if kind == "continuous" and encoding == "uint8/255" and stored.shape[-1] == size:
        return _lookup(unpredict_map(stored, kind, predictor, overwrite=overwrite), _UINT8_TO_FLOAT32)
    if kind == "noise" and encoding == "scaled" and np.ndim(step) == 0:
        q = unpredict_map(stored, kind, predictor, overwrite=overwrite)
        return _lookup(q.view(np.uint8), _scaled_values(step).astype(np.float32))
    return decode_map(stored, kind, encoding, size=size, step=step, image=image,
                      predictor=predictor, overwrite=overwrite).astype(np.float32)


def decode_map(stored: np.ndarray, kind: str, encoding: str, *, size: int, step=None,
               image: Optional[np.ndarray] = None, predictor: str = "none", overwrite: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_map` for one face or a block of faces.

    Returns the v1 dtype: uint8 masks, float16 continuous maps of side
    ``size``, float16 noise. ``step`` is the per-face step (scalar or (n,))
    of ``scaled`` noise, or σ for ``derived`` noise, whose ``image`` (uint8
    (S, S, 3) or (n, S, S, 3)) it is recomputed from. ``predictor`` is the
    map's ``predictor`` attr, undone first (see :func:`unpredict_map`).
    With ``overwrite`` one face's ``stored`` (a row just read, which the
    caller drops) may be decoded in place.
    """
    if encoding != "derived":
        stored = unpredict_map(stored, kind, predictor, overwrite=overwrite)
    if kind == "mask":
        return stored
    if kind == "continuous":
        if stored.shape[-1] == size:
            return _UINT8_TO_FLOAT16[stored]  # a table lookup: the same values, 5x faster than arithmetic
        return upsample_grid(stored.astype(np.float32) / np.float32(255.0), size).astype(np.float16)
    if encoding == "scaled":
        if np.ndim(step) == 0:  # one face: 256 possible values, looked up (~8x faster than the arithmetic)
            return np.take(_scaled_values(step), np.asarray(stored, np.int8).view(np.uint8))
        s = np.asarray(step, np.float32).reshape(np.shape(step) + (1,) * 3)
        return (stored.astype(np.float32) * s).astype(np.float16)
    if encoding == "derived":
        from ffmask.targets.noise import noise_map

        if image.ndim == 3:
            return to_float16(noise_map(image, sigma=float(step)))
        return np.stack([noise_map(im, sigma=float(s)) for im, s in zip(image, np.atleast_1d(step))]).astype(np.float16)
    raise ValueError(f"unknown {kind} map encoding {encoding!r}")
