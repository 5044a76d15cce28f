"""Schema version 2: compact storage, the same arrays for readers, v1 -> v2 conversion."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ffmask.errors import FFMaskError
from ffmask.shards import ShardIndex, ShardWriter, summarize_shards, validate_shard
from ffmask.shards.convert import convert_shard
from ffmask.shards.reader import ShardDataset
from ffmask.targets import diff_map, noise_map
from tests._target_refs import face_crop, make_fake
from tests.test_shards import make_record, write_shard

S = 32
KINDS = {"mscc": "mask", "ssim": "continuous", "noise": "noise"}


def _v2(path, records, **kw):
    kw.setdefault("schema_version", 2)
    return write_shard(path, records, **kw)


@pytest.fixture
def pair_of_shards(tmp_path):
    records = [make_record(i, landmarks=i != 2) for i in range(9)]
    return records, write_shard(tmp_path / "v1.h5", records), _v2(tmp_path / "v2.h5", records)


def test_v2_is_valid_and_readers_get_v1_arrays(pair_of_shards):
    records, v1, v2 = pair_of_shards
    assert validate_shard(v1) == [] and validate_shard(v2) == []
    with h5py.File(v2) as f:
        assert f.attrs["schema_version"] == 2 and f["images"].attrs["codec"] == "gradient"
        assert f["maps/ssim"].attrs["predictor"] in ("none", "gradient")  # "auto": the smaller on these faces
        assert f["maps/mscc"].attrs["predictor"] == "none"
        assert f["maps/ssim"].dtype == np.uint8 and f["maps/noise"].dtype == np.int8
    a, b = ShardIndex(v1, list(KINDS)), ShardIndex(v2, list(KINDS))
    assert len(a) == len(b) == len(records) and a.size == b.size == S and a.extras == b.extras
    for i, rec in enumerate(records):
        fa, fb = a.read(i, geometry=True), b.read(i, geometry=True)
        assert fa.keys() == fb.keys()
        np.testing.assert_array_equal(fb["image"], rec.image)  # the default codec is lossless
        for name in KINDS:
            assert fa["maps"][name].dtype == fb["maps"][name].dtype
            assert fa["maps"][name].shape == fb["maps"][name].shape
        np.testing.assert_array_equal(fb["maps"]["mscc"], fa["maps"]["mscc"])
        ssim = np.clip(rec.maps["ssim"], 0, 1)
        assert np.abs(fb["maps"]["ssim"].astype(np.float32) - ssim).max() <= 1 / 510 + 1e-3
        noise = rec.maps["noise"]
        err = np.abs(fb["maps"]["noise"].astype(np.float32) - noise).max()
        assert err <= 0.01 * (noise.max() - noise.min()) + 0.01  # 1 % of the range (+ float16 rounding)
        for key in ("label", "video_id", "frame_index", "focus_prob", "split"):
            assert fa[key] == fb[key]
        np.testing.assert_array_equal(fa["landmarks"], fb["landmarks"])
        np.testing.assert_array_equal(fa["box"], fb["box"])


def test_shard_dataset_samples_have_the_same_types(pair_of_shards):
    _, v1, v2 = pair_of_shards
    a, b = ShardDataset(v1, ["mscc", "ssim", "noise"]), ShardDataset(v2, ["mscc", "ssim", "noise"])
    sa, sb = a[3], b[3]
    assert sa.keys() == sb.keys()
    assert torch.equal(sa["image"], sb["image"]) and sb["image"].dtype == torch.uint8
    for name in ("mscc", "ssim", "noise"):
        assert sa["maps"][name].dtype == sb["maps"][name].dtype == torch.float32
        assert sa["maps"][name].shape == sb["maps"][name].shape
    assert sb["maps"]["noise"].shape == (3, S, S)
    assert sa["meta"] == sb["meta"]


def test_diff_maps_are_stored_losslessly(tmp_path):
    real = face_crop(S)
    fake = make_fake(real, seed=1)
    rec = make_record(1)
    rec.maps = {"diff": diff_map(real, fake)}
    path = _v2(tmp_path / "d.h5", [rec], maps={"diff": "continuous"})
    v1 = write_shard(tmp_path / "d1.h5", [rec], maps={"diff": "continuous"})
    got = ShardIndex(path, ["diff"]).read(0)["maps"]["diff"]
    np.testing.assert_array_equal(got, ShardIndex(v1, ["diff"]).read(0)["maps"]["diff"])


def test_grid_maps_are_upsampled_like_torch_on_read(tmp_path):
    rng = np.random.default_rng(0)
    grids = [rng.uniform(0, 1, (4, 4)).astype(np.float32) for _ in range(3)]
    records = []
    for i, g in enumerate(grids):
        rec = make_record(i)
        rec.maps = {"focus": g}
        records.append(rec)
    path = _v2(tmp_path / "g.h5", records, maps={"focus": "continuous"})
    assert validate_shard(path) == []
    with h5py.File(path) as f:
        assert f["maps/focus"].shape == (3, 4, 4) and f["maps/focus"].attrs["grid"] == 4
    index = ShardIndex(path, ["focus"])
    for i, g in enumerate(grids):
        stored = np.rint(g * 255) / 255  # what uint8 keeps
        ref = F.interpolate(torch.from_numpy(stored).float()[None, None], size=(S, S), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
        got = index.read(i)["maps"]["focus"]
        assert got.shape == (S, S) and got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), ref, atol=1e-3)


def test_a_shard_holds_one_grid_per_map(tmp_path):
    a, b = make_record(0), make_record(1)
    a.maps, b.maps = {"focus": np.zeros((4, 4), np.float32)}, {"focus": np.zeros((8, 8), np.float32)}
    with pytest.raises(ValueError, match="grid"):
        _v2(tmp_path / "x.h5", [a, b], maps={"focus": "continuous"})
    assert not (tmp_path / "x.h5").exists()


def test_derived_noise_is_recomputed_exactly(tmp_path):
    records = []
    for i in range(3):
        rec = make_record(i)
        sigma = 5.0 if i else 10.0
        rec.maps = {"noise": noise_map(rec.image, sigma=sigma)}
        rec.map_params = {"noise": {"sigma": sigma}}
        records.append(rec)
    path = _v2(tmp_path / "n.h5", records, maps={"noise": "noise"}, noise_storage="derived")
    assert validate_shard(path) == []
    index = ShardIndex(path, ["noise"])
    for i, rec in enumerate(records):
        np.testing.assert_array_equal(index.read(i, image=False)["maps"]["noise"],
                                      rec.maps["noise"].astype(np.float16))
    rec = make_record(0)
    rec.maps = {"noise": rec.maps["noise"]}
    with pytest.raises(ValueError, match="sigma"):
        _v2(tmp_path / "m.h5", [rec], maps={"noise": "noise"}, noise_storage="derived")
    with pytest.raises(ValueError, match="lossless"):
        ShardWriter(tmp_path / "j.h5", size=S, maps={"noise": "noise"}, config={}, image_codec="jpeg",
                    noise_storage="derived")


def test_jpeg_only_when_asked_and_quality_recorded(tmp_path):
    records = [make_record(i) for i in range(3)]
    path = _v2(tmp_path / "j.h5", records, image_codec="jpeg", jpeg_quality=90)
    assert validate_shard(path) == []
    with h5py.File(path) as f:
        assert f["images"].attrs["codec"] == "jpeg" and f["images"].attrs["quality"] == 90
    image = ShardIndex(path).read(1)["image"]
    assert image.dtype == np.uint8 and image.shape == (S, S, 3)
    assert 0 < np.abs(image.astype(int) - records[1].image).mean() < 8
    with pytest.raises(ValueError, match="jpeg_quality"):
        ShardWriter(tmp_path / "q.h5", size=S, maps={}, config={}, jpeg_quality=90)


@pytest.mark.parametrize("codec", ["png", "blosc", "raw"])
def test_pixel_codecs_round_trip(tmp_path, codec):
    records = [make_record(i) for i in range(3)]
    path = _v2(tmp_path / "p.h5", records, image_codec=codec)
    assert validate_shard(path) == []
    index = ShardIndex(path, ["mscc"])
    for i, rec in enumerate(records):
        np.testing.assert_array_equal(index.read(i)["image"], rec.image)


def test_summary_agrees_between_versions(pair_of_shards):
    _, v1, v2 = pair_of_shards
    a, b = summarize_shards(v1), summarize_shards(v2)
    assert a["faces"] == b["faces"] and a["maps"].keys() == b["maps"].keys()
    assert a["maps"]["mscc"] == b["maps"]["mscc"]
    assert b["maps"]["ssim"]["mean"] == pytest.approx(a["maps"]["ssim"]["mean"], abs=2e-3)
    assert b["maps"]["noise"]["mean_abs"] == pytest.approx(a["maps"]["noise"]["mean_abs"], rel=0.02)


@pytest.mark.parametrize("damage, expected", [
    (lambda f: f["maps/mscc"].__setitem__((1, 3, 3), 2), "other than 0 and 1"),
    (lambda f: f["maps/ssim"].attrs.__setitem__("encoding", "float16"), "matching no map layout"),
    (lambda f: f["images"].attrs.__setitem__("codec", "gif"), "codec"),
    (lambda f: f["map_steps"].__delitem__("noise"), "map_steps/noise is missing"),
    (lambda f: f.attrs.__setitem__("schema_version", 3), "schema_version"),
])
def test_validate_catches_v2_corruption(pair_of_shards, damage, expected):
    _, _, v2 = pair_of_shards
    with h5py.File(v2, "r+") as f:
        damage(f)
    problems = validate_shard(v2)
    assert any(expected in p for p in problems), problems


def test_unknown_version_is_refused_by_readers(pair_of_shards):
    _, _, v2 = pair_of_shards
    with h5py.File(v2, "r+") as f:
        f.attrs["schema_version"] = 7
    with pytest.raises(FFMaskError, match="schema version 7"):
        ShardIndex(v2)


def test_convert_rewrites_v1_as_v2_with_the_same_reads(pair_of_shards, tmp_path):
    records, v1, _ = pair_of_shards
    before = ShardIndex(v1, list(KINDS))
    expected = [before.read(i, geometry=True) for i in range(len(records))]
    before.close()
    result = convert_shard(v1)
    assert result.converted and result.faces == len(records) and result.bytes_after < result.bytes_before
    assert validate_shard(v1) == [] and not v1.with_name(v1.name + ".tmp").exists()
    with h5py.File(v1) as f:
        assert f.attrs["schema_version"] == 2
    after = ShardIndex(v1, list(KINDS))
    for i, exp in enumerate(expected):
        got = after.read(i, geometry=True)
        np.testing.assert_array_equal(got["image"], exp["image"])
        np.testing.assert_array_equal(got["maps"]["mscc"], exp["maps"]["mscc"])
        assert np.abs(got["maps"]["ssim"].astype(np.float32) - exp["maps"]["ssim"]).max() <= 1 / 510 + 1e-3
        noise = exp["maps"]["noise"].astype(np.float32)
        assert np.abs(got["maps"]["noise"] - noise).max() <= 0.01 * np.ptp(noise) + 0.01
        assert (got["label"], got["video_id"], got["focus_prob"]) == (exp["label"], exp["video_id"], exp["focus_prob"])
        np.testing.assert_array_equal(got["landmarks"], exp["landmarks"])
    assert not convert_shard(v1).converted  # already v2: left alone


def test_a_failed_conversion_leaves_the_v1_shard(pair_of_shards, monkeypatch):
    _, v1, _ = pair_of_shards
    original = v1.read_bytes()
    import ffmask.shards.convert as convert

    def boom(*a, **k):
        raise RuntimeError("disk gone")
        yield  # pragma: no cover

    monkeypatch.setattr(convert, "_records", boom)
    with pytest.raises(RuntimeError):
        convert.convert_shard(v1)
    assert v1.read_bytes() == original and not v1.with_name(v1.name + ".tmp").exists()


def test_cli_convert_directory(pair_of_shards, tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    _, v1, v2 = pair_of_shards
    result = CliRunner().invoke(app, ["shards", "convert", str(tmp_path)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "converted" in result.output and "already version 2" in result.output
    for p in (v1, v2):
        with h5py.File(p) as f:
            assert f.attrs["schema_version"] == 2
    bad = CliRunner().invoke(app, ["shards", "convert", str(tmp_path), "--image-codec", "jpeg"])
    assert bad.exit_code != 0 and "jpeg-quality" in bad.output


@pytest.mark.parametrize("codec", ["delta", "gradient"])
def test_residual_codecs_are_exact_on_any_bytes(tmp_path, codec):
    """Row differences and gradient residuals wrap mod 256: random bytes (0/255 neighbours) come back bit for bit."""
    rng = np.random.default_rng(3)
    records = [make_record(i) for i in range(2)]
    records[0].image = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    records[1].image = np.where(rng.random((S, S, 3)) < 0.5, 0, 255).astype(np.uint8)
    path = _v2(tmp_path / "r.h5", records, image_codec=codec)
    with h5py.File(path) as f:
        assert f["images"].attrs["codec"] == codec and f["images"].shape == (2, 3, S, S)
    index = ShardIndex(path)
    for i, rec in enumerate(records):
        got = index.read(i)["image"]
        assert got.dtype == np.uint8 and got.shape == (S, S, 3) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, rec.image)


@pytest.mark.parametrize("codec", ["gradient", "delta", "png", "raw"])
def test_float32_reads_hold_the_v1_values(pair_of_shards, tmp_path, codec):
    """ShardDataset's float32 maps (read without the float16 detour) are the v1
    float16 values widened: a mask's {0, 1} from the records, a continuous map
    as the float16 reader gives it (within half a step of the record); images
    are the records'."""
    records, v1, _ = pair_of_shards
    v2 = _v2(tmp_path / f"{codec}.h5", records, image_codec=codec)
    ds = ShardDataset(v2, ["mscc", "ssim", "noise"], return_meta=False)
    index = ShardIndex(v2, ["mscc", "ssim", "noise"])
    for i in (0, 4, 8, 3):
        rec, sample = records[i], ds[i]
        np.testing.assert_array_equal(sample["image"].numpy(), rec.image.transpose(2, 0, 1))
        np.testing.assert_array_equal(sample["maps"]["mscc"].numpy(), rec.maps["mscc"].astype(np.float32))
        plain = index.read(i)  # the v1 dtypes, through the float16 path
        assert plain["maps"]["ssim"].dtype == np.float16
        np.testing.assert_array_equal(sample["maps"]["ssim"].numpy(), plain["maps"]["ssim"].astype(np.float32))
        assert np.abs(sample["maps"]["ssim"].numpy() - np.clip(rec.maps["ssim"], 0, 1)).max() <= 1 / 510 + 1e-3
        np.testing.assert_array_equal(sample["maps"]["noise"].numpy(),
                                      plain["maps"]["noise"].astype(np.float32).transpose(2, 0, 1))
        assert sample["maps"]["ssim"].dtype == torch.float32
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_undelta_is_a_running_sum_down_the_rows():
    from ffmask.shards.codec import _undelta

    stored = np.random.default_rng(3).integers(0, 256, (3, 17, 11), dtype=np.uint8)
    planes = stored.astype(np.int64).cumsum(axis=1) % 256
    chw, hwc = _undelta(stored, (0, 1, 2)), _undelta(stored, (1, 2, 0))
    assert chw.dtype == hwc.dtype == np.uint8 and chw.flags.c_contiguous and hwc.flags.c_contiguous
    np.testing.assert_array_equal(chw, planes)
    np.testing.assert_array_equal(hwc, planes.transpose(1, 2, 0))
