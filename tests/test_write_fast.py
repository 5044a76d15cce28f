"""The shard writer's faster encode paths give the bytes of the plain NumPy formulations.

``codec._zigzag`` doubles with an add instead of an int8 left shift, and
float32 maps become float16 (and back) through ``cv2.convertFp16`` instead of
NumPy casts. Stored records must not change: each is checked here against
the NumPy expression it replaced, on real maps of a real H.264 face pair and
on the float values where rounding is delicate (ties, subnormals, the
float16 limits).
"""

from __future__ import annotations

import numpy as np
import pytest
from _target_refs import compressed_pair

from ffmask import targets
from ffmask.shards import codec
from ffmask.shards.writer import _convert_map


@pytest.fixture(scope="module")
def pair():
    return compressed_pair(23, size=224)


def test_zigzag_is_the_shift_formula_on_every_byte_and_a_real_image(pair):
    values = np.arange(256, dtype=np.uint8)
    v = values.view(np.int8)
    np.testing.assert_array_equal(codec._zigzag(values), ((v << 1) ^ (v >> 7)).view(np.uint8))
    _, fake = pair
    residual = np.ascontiguousarray(fake.transpose(2, 0, 1))
    residual[:, 1:] -= residual[:, :-1].copy()
    r = residual.view(np.int8)
    got = codec._zigzag(residual)
    assert got.dtype == np.uint8 and got.shape == residual.shape
    np.testing.assert_array_equal(got, ((r << 1) ^ (r >> 7)).view(np.uint8))
    np.testing.assert_array_equal(codec._unzigzag(got), residual)


def _delicate_float32() -> np.ndarray:
    """float32 values at float16 rounding ties and limits, both signs."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float32)
    bits = h.view(np.uint32)
    # the float32 halfway between consecutive float16s (ties to even), and one ulp either side
    ties = (h[:-1].astype(np.float64) + np.diff(h.astype(np.float64)) / 2).astype(np.float32)
    near = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)),
                           (bits + 1).view(np.float32), (bits - 1).view(np.float32)])
    extra = np.array([0.0, -0.0, 65504.0, 65519.99, -65504.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
                      2.0 ** -14, np.finfo(np.float32).tiny], np.float32)
    out = np.concatenate([h, near, extra])
    out = out[np.isfinite(out) & (np.abs(out) < 65520)]
    return out[: out.size // 64 * 64].reshape(64, -1)


def test_to_float16_is_numpys_cast(pair):
    real, fake = pair
    maps = [targets.noise_map(fake, 5.0), targets.noise_map(fake, 10.0), targets.ssim_map(real, fake),
            targets.diff_map(real, fake), _delicate_float32()]
    for values in maps:
        assert values.dtype == np.float32
        got = codec.to_float16(values)
        assert got.dtype == np.float16 and got.shape == values.shape
        np.testing.assert_array_equal(got.view(np.uint16), values.astype(np.float16).view(np.uint16))
        back = codec.float16_to_float32(got)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back.view(np.uint32), got.astype(np.float32).view(np.uint32))
    # not float32 (float64 straight to float16 can differ from via float32): NumPy's cast
    x = np.array([[1 + 2.0 ** -11 + 2.0 ** -40]], np.float64)
    assert codec.to_float16(x) == x.astype(np.float16)


def test_every_float16_widens_exactly():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    got = codec.float16_to_float32(h)
    ref = h.astype(np.float32)
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[finite].view(np.uint32), ref[finite].view(np.uint32))
    assert np.isnan(got[np.isnan(ref)]).all()


def test_stored_maps_are_the_numpy_formulation(pair):
    real, fake = pair
    noise = targets.noise_map(fake, 5.0)
    ssim = targets.ssim_map(real, fake)
    stored16 = _convert_map(noise, "noise", "noise", 224)
    np.testing.assert_array_equal(stored16.view(np.uint16), noise.astype(np.float16).view(np.uint16))
    q, step = codec.encode_map(stored16, "noise", "scaled")
    x = stored16.astype(np.float32)
    span = float(x.max() - x.min())
    ref_step = span / codec.NOISE_LEVELS
    assert step == ref_step
    np.testing.assert_array_equal(q, np.rint(x / np.float32(ref_step)).astype(np.int8))
    c16 = _convert_map(ssim, "ssim", "continuous", 224)
    u8, _ = codec.encode_map(c16, "continuous", "uint8/255")
    ref = np.rint(np.clip(np.clip(ssim, 0, 1).astype(np.float16).astype(np.float32), 0, 1)
                  * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(u8, ref)
