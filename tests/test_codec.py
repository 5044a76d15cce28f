"""The "gradient" image codec and map predictor of schema 2: exactly lossless, recorded, and read as before.

Reference values here are computed independently of ffmask.shards.codec: the
residual with padded int64 arithmetic and an explicit zigzag table, the
decoding with two int64 running sums (no OpenCV).
"""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ffmask.errors import FFMaskError
from ffmask.shards import ShardIndex, ShardWriter, validate_shard
from ffmask.shards import codec
from ffmask.shards.convert import convert_shard
from ffmask.shards.reader import ShardDataset
from ffmask.targets import diff_map, noise_map
from tests._target_refs import face_crop, make_fake
from tests.test_shards import make_record

S = 48
KINDS = {"mscc": "mask", "ssim": "continuous", "diff": "continuous", "noise": "noise", "focus": "continuous"}


def _reference_residual(x: np.ndarray) -> np.ndarray:
    """x - left - up + upleft mod 256 over the first two axes (zero outside), zigzagged: int64 arithmetic."""
    p = np.pad(x.astype(np.int64), [(1, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2))
    r = (p[1:, 1:] - p[1:, :-1] - p[:-1, 1:] + p[:-1, :-1]) % 256
    signed = np.where(r >= 128, r - 256, r)
    return np.where(signed >= 0, 2 * signed, -2 * signed - 1).astype(np.uint8)


def _reference_decode(z: np.ndarray) -> np.ndarray:
    signed = np.where(z % 2 == 0, z.astype(np.int64) // 2, -(z.astype(np.int64) + 1) // 2)
    return (np.cumsum(np.cumsum(signed, axis=0), axis=1) % 256).astype(np.uint8)


def _adversarial_images():
    rng = np.random.default_rng(7)
    face = face_crop(224)
    yield "face 224", face
    yield "face 37 (odd)", np.ascontiguousarray(face_crop(37))
    yield "all 0", np.zeros((16, 16, 3), np.uint8)
    yield "all 255", np.full((16, 16, 3), 255, np.uint8)
    yield "random", rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    yield "0/255 checker", (np.indices((9, 9)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    yield "1 px", np.array([[[255, 0, 128]]], np.uint8)
    yield "1 x 5", rng.integers(0, 256, (1, 5, 3), dtype=np.uint8)
    yield "5 x 1", rng.integers(0, 256, (5, 1, 3), dtype=np.uint8)


@pytest.mark.parametrize("name, image", list(_adversarial_images()), ids=lambda v: v if isinstance(v, str) else "")
def test_gradient_codec_is_exact_and_is_the_documented_residual(name, image):
    stored = codec.encode_image(image, "gradient")
    assert stored.dtype == np.uint8 and stored.shape == (3, *image.shape[:2])
    # Colour transform (R - G, G, B - G) then the gradient residual of each plane.
    rgb = image.astype(np.int64)
    planes = np.stack([(rgb[..., 0] - rgb[..., 1]) % 256, rgb[..., 1], (rgb[..., 2] - rgb[..., 1]) % 256])
    for c in range(3):
        np.testing.assert_array_equal(stored[c], _reference_residual(planes[c].astype(np.uint8)))
    hwc, chw = codec.decode_image(stored, "gradient"), codec.decode_image_chw(stored, "gradient")
    assert hwc.dtype == chw.dtype == np.uint8 and hwc.flags.c_contiguous and chw.flags.c_contiguous
    np.testing.assert_array_equal(hwc, image)
    np.testing.assert_array_equal(chw, image.transpose(2, 0, 1))


def test_zigzag_orders_residuals_by_magnitude():
    values = np.arange(256, dtype=np.uint8)  # as int8: 0..127, -128..-1
    z = codec._zigzag(values)
    assert sorted(z.tolist()) == list(range(256))  # a bijection
    signed = values.view(np.int8).astype(int)
    assert z[signed == 0] == 0 and z[signed == -1] == 1 and z[signed == 1] == 2 and z[signed == -128] == 255
    np.testing.assert_array_equal(codec._unzigzag(z), values)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (13, 7), (64, 64)])
def test_gradient_decode_is_two_running_sums(shape):
    z = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(codec.gradient_decode(z), _reference_decode(z))
    np.testing.assert_array_equal(codec.gradient_encode(codec.gradient_decode(z)), z)


def test_map_predictors_are_exact_on_every_integer():
    rng = np.random.default_rng(0)
    k = rng.integers(0, 256, (5, 31, 31), dtype=np.uint8)
    k[0], k[1] = 0, 255
    q = rng.integers(-128, 128, (5, 31, 31, 3), dtype=np.int8)
    q[0], q[1] = -128, 127
    for kind, stored_ints in (("continuous", k), ("noise", q)):
        stored = np.stack([codec.predict_map(face, kind, "gradient") for face in stored_ints])
        assert stored.dtype == stored_ints.dtype and stored.shape == stored_ints.shape
        np.testing.assert_array_equal(codec.unpredict_map(stored, kind, "gradient"), stored_ints)  # a block
        np.testing.assert_array_equal(codec.unpredict_map(stored[2], kind, "gradient"), stored_ints[2])
    # Noise channels are decorrelated as the image's: (c0 - c1, c1, c2 - c1), then the gradient.
    u = q[3].view(np.uint8).astype(np.int64)
    rct = np.stack([(u[..., 0] - u[..., 1]) % 256, u[..., 1], (u[..., 2] - u[..., 1]) % 256], -1).astype(np.uint8)
    np.testing.assert_array_equal(codec.predict_map(q[3], "noise", "gradient").view(np.uint8),
                                  _reference_residual(rct))
    with pytest.raises(ValueError, match="unknown map predictor"):
        codec.unpredict_map(k[0], "continuous", "median")


# -- shards on disk ---------------------------------------------------------


def _records(n=4):
    """Real face crops with real maps: the astronaut, a fake of it, its noise residual, a 7 x 7 grid map."""
    real = face_crop(S)
    records = []
    for i in range(n):
        rec = make_record(i)
        fake = make_fake(real, seed=i)
        rec.image = fake if i % 2 else real
        rec.maps = {
            "mscc": diff_map(real, fake) > 0.1,
            "ssim": np.random.default_rng(i).uniform(-0.1, 1.1, (S, S)).astype(np.float32),
            "diff": diff_map(real, rec.image),
            "noise": noise_map(rec.image, sigma=5.0),
            "focus": np.random.default_rng(10 + i).uniform(0, 1, (7, 7)).astype(np.float32),
        }
        records.append(rec)
    return records


def _write(path, records, **kw):
    with ShardWriter(path, size=S, maps=KINDS, config={}, extras=("focus_prob",), **kw) as w:
        for r in records:
            w.append(r)
    return path


def _reads(path):
    index = ShardIndex(path, list(KINDS))
    ds = ShardDataset(path, list(KINDS), return_meta=False)
    return [(index.read(i, geometry=True), ds[i]) for i in range(len(index))]


def _assert_same_reads(a, b):
    for (fa, sa), (fb, sb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa["image"], fb["image"])
        assert torch.equal(sa["image"], sb["image"]) and sa["image"].dtype == sb["image"].dtype == torch.uint8
        for name in KINDS:
            x, y = fa["maps"][name], fb["maps"][name]
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
            assert sa["maps"][name].dtype == sb["maps"][name].dtype == torch.float32
            assert torch.equal(sa["maps"][name], sb["maps"][name])


@pytest.fixture(scope="module")
def records():
    return _records()


@pytest.fixture
def old_shard(tmp_path, records):
    """A shard as an earlier ffmask wrote it: "delta" images, plain maps, no predictor or packing attrs."""
    path = _write(tmp_path / "old.h5", records, image_codec="delta", map_predictor="none", map_packing="none")
    with h5py.File(path, "r+") as f:
        for ds in f["maps"].values():
            for attr in ("predictor", "packing"):
                if attr in ds.attrs:
                    del ds.attrs[attr]
    return path


@pytest.mark.parametrize("image_codec", ["gradient", "delta", "png", "blosc", "raw"])
@pytest.mark.parametrize("map_predictor", ["gradient", "none"])
def test_every_codec_and_predictor_reads_what_was_written(tmp_path, records, old_shard, image_codec, map_predictor):
    path = _write(tmp_path / "x.h5", records, image_codec=image_codec, map_predictor=map_predictor)
    assert validate_shard(path) == []
    with h5py.File(path) as f:
        assert f["images"].attrs["codec"] == image_codec
        predictors = {name: f["maps"][name].attrs["predictor"] for name in KINDS}
    assert predictors == {"mscc": "none", "ssim": map_predictor, "diff": map_predictor, "noise": map_predictor,
                          "focus": "none"}  # masks and grid maps are never predicted
    reads = _reads(path)
    for rec, (face, _) in zip(records, reads):
        np.testing.assert_array_equal(face["image"], rec.image)
    _assert_same_reads(reads, _reads(old_shard))  # the same arrays, bit for bit, as the old layout


def _storage(path, keys):
    with h5py.File(path) as f:
        return {k: (f[k].id.get_storage_size(), f[k].attrs.get("predictor")) for k in keys}


def test_gradient_images_are_smaller_than_delta_on_real_faces(tmp_path, records):
    sizes = {c: _storage(_write(tmp_path / f"{c}.h5", records, image_codec=c), ["images"])["images"][0]
             for c in ("delta", "gradient")}
    assert sizes["gradient"] < 0.9 * sizes["delta"], sizes


def test_auto_predictor_keeps_the_smaller_per_map(tmp_path):
    """A smooth map (spatially correlated) is predicted; i.i.d. values are not (the residual is larger)."""
    rng = np.random.default_rng(5)
    records = _records(3)
    for rec in records:
        rec.maps["ssim"] = cv2.GaussianBlur(rng.uniform(0, 1, (S, S)).astype(np.float32), (0, 0), 3) * 4 - 1.5
        rec.maps["diff"] = rng.normal(0.5, 0.03, (S, S)).astype(np.float32)  # i.i.d.: differences are wider
    keys = ["maps/ssim", "maps/diff", "maps/noise"]
    sizes = {p: _storage(_write(tmp_path / f"{p}.h5", records, map_predictor=p), keys)
             for p in ("none", "gradient", "auto")}
    assert sizes["auto"]["maps/ssim"][1] == "gradient" and sizes["auto"]["maps/diff"][1] == "none"
    for key in keys:  # the shard is one buffer: auto measured exactly what it stores
        assert sizes["auto"][key][0] == min(sizes["none"][key][0], sizes["gradient"][key][0]), (key, sizes)


def test_derived_noise_has_no_predictor(tmp_path, records):
    for rec in records:
        rec.map_params = {"noise": {"sigma": 5.0}}
    path = _write(tmp_path / "d.h5", records, noise_storage="derived", map_predictor="gradient")
    with h5py.File(path) as f:
        assert "predictor" not in f["maps/noise"].attrs and f["maps/ssim"].attrs["predictor"] == "gradient"
    index = ShardIndex(path, ["noise"])
    for i, rec in enumerate(records):
        np.testing.assert_array_equal(index.read(i)["maps"]["noise"], rec.maps["noise"].astype(np.float16))


def test_convert_reencodes_an_old_v2_shard_bit_for_bit(old_shard):
    before = _reads(old_shard)
    size = old_shard.stat().st_size
    result = convert_shard(old_shard)
    assert result.converted and result.bytes_after < size
    assert validate_shard(old_shard) == [] and not old_shard.with_name(old_shard.name + ".tmp").exists()
    with h5py.File(old_shard) as f:
        assert f["images"].attrs["codec"] == "gradient"
        assert f["maps/focus"].shape == (4, 7, 7)  # the model's grid stays a grid
    _assert_same_reads(before, _reads(old_shard))  # noise too: its integers and steps are kept
    assert not convert_shard(old_shard).converted  # already as asked: left alone
    assert convert_shard(old_shard, map_predictor="gradient").converted
    with h5py.File(old_shard) as f:
        assert f["maps/noise"].attrs["predictor"] == f["maps/ssim"].attrs["predictor"] == "gradient"
    _assert_same_reads(before, _reads(old_shard))
    back = convert_shard(old_shard, image_codec="delta", map_predictor="none")
    assert back.converted
    _assert_same_reads(before, _reads(old_shard))


def test_cli_convert_reencodes_v2(old_shard):
    from ffmask.cli import app

    result = CliRunner().invoke(app, ["shards", "convert", str(old_shard)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    with h5py.File(old_shard) as f:
        assert f["images"].attrs["codec"] == "gradient"


@pytest.mark.parametrize("damage, message", [
    (lambda f: f["images"].attrs.__setitem__("codec", "webp"), "unknown codec 'webp'"),
    (lambda f: f["maps/ssim"].attrs.__setitem__("predictor", "median"), "unknown predictor 'median'"),
])
def test_unknown_codec_or_predictor_is_a_one_line_error(tmp_path, records, damage, message, monkeypatch, capsys):
    path = _write(tmp_path / "u.h5", records, map_predictor="gradient")
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(FFMaskError, match=message):
        ShardIndex(path, ["ssim"])
    with pytest.raises(FFMaskError, match=message):
        convert_shard(path)
    assert validate_shard(path)  # reported, not raised
    from ffmask.cli import main

    monkeypatch.setattr("sys.argv", ["ffmask", "info", str(path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    # info: the summary, then the shard under its problems, exit 1 (tests/test_faults_shards.py)
    assert exit_.value.code == 1 and message in out and "Traceback" not in err
    for command in (["shards", "convert", str(path)],):
        monkeypatch.setattr("sys.argv", ["ffmask", *command])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and "Traceback" not in err
        assert [line for line in err.splitlines() if line.startswith("Error:")] == [err.strip().splitlines()[-1]]


def test_corrupt_residual_bytes_are_a_one_line_error(tmp_path, records):
    path = _write(tmp_path / "c.h5", records)
    with h5py.File(path) as f:
        chunk = f["images"].id.get_chunk_info(1)
    with open(path, "r+b") as fh:  # overwrite face 1's compressed image with garbage
        fh.seek(chunk.byte_offset)
        fh.write(np.random.default_rng(0).integers(0, 256, chunk.size, dtype=np.uint8).tobytes())
    index = ShardIndex(path, ["ssim"])
    np.testing.assert_array_equal(index.read(0)["image"], records[0].image)  # the other faces still read
    with pytest.raises(FFMaskError, match="cannot read face 1"):
        index.read(1)


def test_one_face_noise_lookup_is_the_documented_product():
    """A face's scaled noise is read through a 256-entry table: the same float16(q * step) as the arithmetic."""
    rng = np.random.default_rng(2)
    q = rng.integers(-128, 128, (9, 11, 3), dtype=np.int8)
    for step in (0.0123, 0.5, 1.0, 3.7e-3, 2.9):
        expected = (q.astype(np.float32) * np.float32(step)).astype(np.float16)
        got = codec.decode_map(q, "noise", "scaled", size=9, step=np.float32(step))
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, expected)
        got32 = codec.decode_map_float32(q, "noise", "scaled", size=9, step=np.float32(step))
        assert got32.dtype == np.float32
        np.testing.assert_array_equal(got32, expected.astype(np.float32))
