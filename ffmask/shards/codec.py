"""How schema version 2 stores images and maps, and how readers undo it.

Every function here turns between the arrays users get (schema version 1
dtypes: images uint8 (S, S, 3), masks uint8 {0, 1} (S, S), continuous maps
float16 (S, S) in [0, 1], noise float16 (S, S, 3)) and what a v2 shard
holds. The choice of each encoding is recorded in the dataset's attributes,
so a reader never guesses:

``/images`` attrs ``codec``:
    ``delta`` lossless, the default: uint8 (N, 3, S, S) channel planes, each
              row minus the row above (mod 256), under Zstandard level 1;
              decoding is a cumulative sum down the rows;
    ``png``   lossless PNG bytes per face (vlen uint8 (N,)), the smallest;
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
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

__all__ = [
    "IMAGE_CODECS",
    "NOISE_LEVELS",
    "decode_image",
    "decode_image_chw",
    "decode_map",
    "encode_image",
    "encode_map",
    "upsample_grid",
]

IMAGE_CODECS = ("delta", "png", "jpeg", "blosc", "raw")
# Measured on 224 px faces of the bundled sample (CPU ms per face, 1 thread):
#   delta  76 KiB, encode 0.9, decode 0.4   <- default: fast to write and read
#   png    60 KiB, encode 3.5, decode 2.0   <- smallest
#   blosc 114 KiB, encode 1+,  decode 0.3
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
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def encode_image(image: np.ndarray, codec: str, quality: Optional[int] = None) -> np.ndarray:
    """uint8 (S, S, 3) RGB -> what ``/images`` stores for ``codec``.

    png/jpeg: uint8 (nbytes,) encoded bytes; blosc/raw: the image itself
    (the HDF5 filter compresses it).
    """
    if codec in ("blosc", "raw"):
        return image
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


def decode_image_chw(stored: np.ndarray, codec: str) -> np.ndarray:
    """The image as uint8 (3, S, S) channel planes, C-contiguous (what a torch reader wants)."""
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


def decode_image(stored: np.ndarray, codec: str) -> np.ndarray:
    """Inverse of :func:`encode_image`: uint8 (S, S, 3) RGB, C-contiguous (OpenCV needs that)."""
    if codec in ("blosc", "raw"):
        return stored
    if codec == "delta":
        return _undelta(stored, (1, 2, 0))
    bgr = cv2.imdecode(np.asarray(stored, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"corrupt {codec} image bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_map(values: np.ndarray, kind: str, encoding: str) -> tuple[np.ndarray, float]:
    """A validated map (float or bool) -> (stored array, per-face step or NaN).

    mask -> uint8 {0, 1}; continuous (``uint8/255``) -> uint8 round(255 x) of
    x clipped to [0, 1]; noise (``scaled``) -> int8 round(x / step) with
    step = range / NOISE_LEVELS (1.0 for an all-constant face).
    """
    if kind == "mask":
        return values.astype(np.uint8), float("nan")
    if kind == "continuous":
        x = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
        return np.rint(x * np.float32(255.0)).astype(np.uint8), float("nan")
    if encoding != "scaled":
        raise ValueError(f"noise encoding {encoding!r} stores no array")
    x = np.asarray(values, np.float32)
    span = float(x.max() - x.min()) if x.size else 0.0
    step = span / NOISE_LEVELS if span > 0 else 1.0
    # |x| / step <= span / step = NOISE_LEVELS < 127: always fits int8.
    return np.rint(x / np.float32(step)).astype(np.int8), step


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


def decode_map_float32(stored: np.ndarray, kind: str, encoding: str, *, size: int, step=None,
                       image: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`decode_map` widened to float32: ``decode_map(...).astype(np.float32)``, cheaper.

    Full-size uint8 continuous maps and masks go straight to float32 (one
    table lookup instead of a float16 lookup and a float16 -> float32 cast);
    every other encoding is decoded and then cast.
    """
    if kind == "continuous" and encoding == "uint8/255" and stored.shape[-1] == size:
        return np.take(_UINT8_TO_FLOAT32, stored)
    return decode_map(stored, kind, encoding, size=size, step=step, image=image).astype(np.float32)


def decode_map(stored: np.ndarray, kind: str, encoding: str, *, size: int, step=None,
               image: Optional[np.ndarray] = None) -> np.ndarray:
    """Inverse of :func:`encode_map` for one face or a block of faces.

    Returns the v1 dtype: uint8 masks, float16 continuous maps of side
    ``size``, float16 noise. ``step`` is the per-face step (scalar or (n,))
    of ``scaled`` noise, or σ for ``derived`` noise, whose ``image`` (uint8
    (S, S, 3) or (n, S, S, 3)) it is recomputed from.
    """
    if kind == "mask":
        return stored
    if kind == "continuous":
        if stored.shape[-1] == size:
            return _UINT8_TO_FLOAT16[stored]  # a table lookup: the same values, 5x faster than arithmetic
        return upsample_grid(stored.astype(np.float32) / np.float32(255.0), size).astype(np.float16)
    if encoding == "scaled":
        s = np.asarray(step, np.float32).reshape(np.shape(step) + (1,) * 3)
        return (stored.astype(np.float32) * s).astype(np.float16)
    if encoding == "derived":
        from ffmask.targets.noise import noise_map

        if image.ndim == 3:
            return noise_map(image, sigma=float(step)).astype(np.float16)
        return np.stack([noise_map(im, sigma=float(s)) for im, s in zip(image, np.atleast_1d(step))]).astype(np.float16)
    raise ValueError(f"unknown {kind} map encoding {encoding!r}")
