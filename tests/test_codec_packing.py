"""Map packing "nibbles" and the compact HDF5 layout of schema 2: exact, recorded, and read as before.

Expected packed bytes are written out by hand (or built with a plain Python
loop), not with ffmask.shards.codec; shards are compared with shards of the
earlier layouts through the public readers (ShardIndex, ShardDataset).
"""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

from ffmask.errors import FFMaskError
from ffmask.shards import ShardIndex, validate_shard
from ffmask.shards import codec
from ffmask.shards.convert import convert_shard
from tests._target_refs import face_crop
from tests.test_codec import S, _assert_same_reads, _reads, _records, _write


def _loop_pack(values) -> list[int]:
    """pack_nibbles as the docstring states it, one value at a time."""
    v = [int(x) for x in np.asarray(values, np.uint8).reshape(-1)]
    capped = [min(x, 15) for x in v] + ([0] if len(v) % 2 else [])
    out = [capped[i] << 4 | capped[i + 1] for i in range(0, len(capped), 2)]
    out += [x - 15 for x in v if x >= 15]
    return out + [0] * ((len(v) + 1) // 2 + len(v) - len(out))


def test_nibbles_layout_is_the_documented_one():
    values = np.array([3, 200, 15, 0, 14, 16, 255], np.uint8)  # an odd count: the last nibble is padding
    packed = codec.pack_nibbles(values)
    # pairs (3,15) (15,0) (14,15) (15,pad); excesses of 200, 15, 16, 255; then zeros up to 4 + 7 bytes
    assert packed.tolist() == [0x3F, 0xF0, 0xEF, 0xF0, 185, 0, 1, 240, 0, 0, 0]
    assert codec.nibbles_length(7) == 11 and codec.nibbles_length(0) == 0


def _adversarial():
    rng = np.random.default_rng(11)
    real = codec.encode_image(face_crop(224), "gradient")  # a real face's zigzagged residual
    yield "real residual (3, 224, 224)", real
    yield "all 0", np.zeros((16, 16), np.uint8)
    yield "all 255", np.full((16, 16, 3), 255, np.uint8)
    yield "all 15 (every value an escape)", np.full((7, 9), 15, np.uint8)
    yield "all 14", np.full((7, 9), 14, np.uint8)
    yield "random bytes", rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    yield "small values", np.minimum(rng.geometric(0.3, (37, 37, 3)) - 1, 255).astype(np.uint8)
    yield "1 value", np.array([[200]], np.uint8)
    yield "2 values", np.array([15, 1], np.uint8)
    yield "int8 noise", rng.integers(-128, 128, (5, 5, 3), dtype=np.int8)


@pytest.mark.parametrize("name, values", list(_adversarial()), ids=lambda v: v if isinstance(v, str) else "")
def test_nibbles_are_exact_on_any_bytes(name, values):
    packed = codec.pack_nibbles(values)
    assert packed.dtype == np.uint8 and packed.shape == (codec.nibbles_length(values.size),)
    if values.size < 5000:
        assert packed.tolist() == _loop_pack(values.view(np.uint8))
    back = codec.unpack_nibbles(packed, values.shape)
    assert back.dtype == np.uint8 and back.shape == values.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, values.view(np.uint8))
    block = codec.unpack_map(np.stack([packed, packed]), "nibbles", values.shape, values.dtype)
    assert block.dtype == values.dtype and block.shape == (2, *values.shape)
    np.testing.assert_array_equal(block[1], values)


def test_unpacking_checks_the_length():
    packed = codec.pack_nibbles(np.arange(10, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 15"):
        codec.unpack_nibbles(packed[:-1], (10,))
    with pytest.raises(ValueError, match="unknown map packing 'rle'"):
        codec.unpack_map(packed, "rle", (10,), np.uint8)


def _smooth_records():
    """Faces whose noise is spatially correlated, like the demo's (crops upscaled from video frames)."""
    import cv2

    records = _records()
    for rec in records:
        small = rec.maps["noise"][::3, ::3].astype(np.float32)
        rec.maps["noise"] = cv2.resize(small, (S, S), interpolation=cv2.INTER_LINEAR)
    return records


@pytest.fixture(scope="module")
def smooth():
    return _smooth_records()


@pytest.fixture
def plain(tmp_path, smooth):
    """The same faces in the plainest layout: every map's integers as they are."""
    return _write(tmp_path / "plain.h5", smooth, map_predictor="none", map_packing="none")


@pytest.mark.parametrize("predictor, packing", list(itertools.product(("none", "gradient"), ("none", "nibbles"))))
def test_every_layout_reads_what_was_written(tmp_path, smooth, plain, predictor, packing):
    path = _write(tmp_path / "x.h5", smooth, map_predictor=predictor, map_packing=packing)
    assert validate_shard(path) == []
    n_values = {"ssim": S * S, "diff": S * S, "noise": S * S * 3}
    with h5py.File(path) as f:
        for name, n in n_values.items():
            ds = f["maps"][name]
            assert (ds.attrs["predictor"], ds.attrs["packing"]) == (predictor, packing)
            if packing == "nibbles":
                assert ds.dtype == np.uint8 and ds.shape == (len(smooth), codec.nibbles_length(n))
        for name in ("mscc", "focus"):  # masks and grid maps are never predicted or packed
            assert (f["maps"][name].attrs["predictor"], f["maps"][name].attrs["packing"]) == ("none", "none")
    _assert_same_reads(_reads(plain), _reads(path))  # bit for bit, float16 and ShardDataset float32 alike


def test_auto_keeps_the_smallest_layout(tmp_path, smooth):
    keys = ["maps/ssim", "maps/diff", "maps/noise"]

    def sizes(path):
        with h5py.File(path) as f:
            return {k: (f[k].id.get_storage_size(), f[k].attrs["predictor"], f[k].attrs["packing"]) for k in keys}

    forced = {(p, k): sizes(_write(tmp_path / f"{p}-{k}.h5", smooth, map_predictor=p, map_packing=k))
              for p, k in (("none", "none"), ("gradient", "none"), ("gradient", "nibbles"))}
    auto = sizes(_write(tmp_path / "auto.h5", smooth))
    for key in keys:  # one buffer of faces, all of them sampled: auto stored exactly the smallest
        assert auto[key][0] == min(s[key][0] for s in forced.values()), (key, auto, forced)
    # The correlated noise's residual, packed, beats its bit-shuffled residual and its plain integers.
    assert auto["maps/noise"][1:] == ("gradient", "nibbles")
    assert forced["gradient", "nibbles"]["maps/noise"][0] < 0.97 * forced["gradient", "none"]["maps/noise"][0]


def test_writer_rejects_an_unknown_packing(tmp_path, smooth):
    with pytest.raises(ValueError, match="map_packing must be one of"):
        _write(tmp_path / "x.h5", smooth, map_packing="rle")


@pytest.fixture
def earlier_v2(tmp_path, smooth, monkeypatch):
    """A shard as the previous default wrote it: gradient images and residuals, bit-shuffled, no packing
    attr, in HDF5's default (oldest) file format."""
    real_file = h5py.File

    def default_format(name, mode="r", *args, libver=None, **kwargs):
        return real_file(name, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(h5py, "File", default_format)
        path = _write(tmp_path / "earlier.h5", smooth, map_predictor="gradient", map_packing="none")
    with h5py.File(path, "r+") as f:
        for ds in f["maps"].values():
            del ds.attrs["packing"]
    return path


def test_earlier_v2_shards_read_and_convert_bit_for_bit(earlier_v2, plain):
    assert validate_shard(earlier_v2) == []
    before = _reads(earlier_v2)
    _assert_same_reads(_reads(plain), before)
    result = convert_shard(earlier_v2)  # written before packings existed: re-encoded so that auto may pack
    assert result.converted and result.bytes_after < result.bytes_before
    with h5py.File(earlier_v2) as f:
        assert f["maps/noise"].attrs["packing"] == "nibbles"
    assert validate_shard(earlier_v2) == []
    _assert_same_reads(before, _reads(earlier_v2))
    assert not convert_shard(earlier_v2).converted  # already as asked: left alone
    assert convert_shard(earlier_v2, map_packing="none").converted
    with h5py.File(earlier_v2) as f:
        assert {ds.attrs["packing"] for ds in f["maps"].values()} == {"none"}
    _assert_same_reads(before, _reads(earlier_v2))


@pytest.mark.parametrize("damage, problem", [
    (lambda f: f["maps/noise"].attrs.__setitem__("packing", "rle"), "unknown packing 'rle'"),
])
def test_unknown_packing_is_a_one_line_error(tmp_path, smooth, damage, problem):
    path = _write(tmp_path / "u.h5", smooth, map_packing="nibbles")
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(FFMaskError, match=problem):
        ShardIndex(path, ["noise"])
    with pytest.raises(FFMaskError, match=problem):
        convert_shard(path)
    assert any("packing 'rle'" in p for p in validate_shard(path))


def test_a_packed_map_of_the_wrong_length_is_reported(tmp_path, smooth):
    path = _write(tmp_path / "w.h5", smooth, map_packing="nibbles")
    with h5py.File(path, "r+") as f:
        data, attrs = f["maps/ssim"][:, :-1], dict(f["maps/ssim"].attrs)
        del f["maps/ssim"]
        f["maps/ssim"] = data
        f["maps/ssim"].attrs.update(attrs)
    assert any("/maps/ssim" in p and "packed nibbles" in p for p in validate_shard(path))


def test_hdf5_bookkeeping_per_face_is_small(tmp_path, smooth):
    """One chunk per face per dataset: HDF5 1.10's chunk indexes take ~290 bytes a face here, B-trees ~780."""
    def overhead(n):
        path = _write(tmp_path / f"m{n}.h5", (smooth * 32)[:n])
        with h5py.File(path) as f:
            stored = []
            f.visititems(lambda _, obj: stored.append(obj.id.get_storage_size())
                         if isinstance(obj, h5py.Dataset) else None)
        return path.stat().st_size - sum(stored)

    per_face = (overhead(96) - overhead(32)) / 64
    assert per_face < 400, per_face


def test_cli_convert_error_is_the_last_line(tmp_path, earlier_v2, monkeypatch, capsys):
    """A failing shard after a converted one: its one-line error is all that is printed (no progress bar)."""
    from ffmask.cli import main

    folder = tmp_path / "shards"
    folder.mkdir()
    earlier_v2.rename(folder / "shard-00000.h5")
    (folder / "shard-00001.h5").write_bytes(b"not an HDF5 file")
    monkeypatch.setattr("sys.argv", ["ffmask", "shards", "convert", str(folder)])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    assert exit_.value.code == 2
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "shard-00001.h5" in lines[0], lines
    with h5py.File(folder / "shard-00000.h5") as f:  # the first shard was converted before the failure
        assert f["maps/noise"].attrs["packing"] == "nibbles"
