"""Shards: atomic writer, schema check, manifest, ShardDataset under DataLoader workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from skimage import data

import ffmask
from ffmask.errors import FFMaskError
from ffmask.shards.schema import infer_map_kind
from ffmask.shards import (
    MAP_KINDS,
    SCHEMA_VERSION,
    FaceRecord,
    Manifest,
    ShardWriter,
    find_shards,
    summarize_shards,
    validate_shard,
)

S = 32
KINDS = {"mscc": "mask", "ssim": "continuous", "noise": "noise"}


def _face(i: int) -> np.ndarray:
    """A real face crop (skimage astronaut), shifted per i so faces differ."""
    photo = data.astronaut()
    crop = photo[20 + i : 240 + i, 140 + 2 * i : 360 + 2 * i]
    return cv2.resize(crop, (S, S), interpolation=cv2.INTER_AREA)


def make_record(i: int, *, label: int | None = None, video: str | None = None, landmarks=True) -> FaceRecord:
    rng = np.random.default_rng(i)
    label = i % 2 if label is None else label
    yy, xx = np.mgrid[:S, :S]
    mask = (((xx - 16) / (6 + i % 5)) ** 2 + ((yy - 16) / 9) ** 2 < 1) & (label == 1)
    return FaceRecord(
        image=_face(i),
        maps={
            "mscc": mask,  # bool in, uint8 {0,1} stored
            "ssim": rng.uniform(-0.2, 1.2, (S, S)).astype(np.float32),  # clipped to [0,1]
            "noise": rng.normal(0, 4, (S, S, 3)).astype(np.float32),
        },
        label=label,
        video_id=video or f"Deepfakes/{i:03d}_{i + 1:03d}",
        original_id=f"youtube/{i:03d}",
        manipulation="Deepfakes" if label == 1 else "original",
        compression="c23",
        split=("train", "val", "test")[i % 3],
        frame_index=10 * i,
        box=np.array([i, 2 * i, i + 100, 2 * i + 100]),
        landmarks=rng.uniform(0, 100, (68, 2)).astype(np.float32) if landmarks else None,
        extras={"focus_prob": 0.1 * (i % 10)},
    )


def write_shard(path: Path, records, *, maps=KINDS, extras=("focus_prob",), **kw) -> Path:
    # These tests pin the version-1 layout byte for byte; version 2 is tested in test_shards_v2.py.
    kw.setdefault("schema_version", 1)
    with ShardWriter(path, size=S, maps=maps, config={"run": "test", "out": path.parent}, extras=extras, **kw) as w:
        for r in records:
            w.append(r)
    return path


# -- writer ----------------------------------------------------------------


def test_round_trip_matches_schema(tmp_path):
    records = [make_record(i, landmarks=i != 3) for i in range(7)]
    path = write_shard(tmp_path / "a.h5", records)
    assert validate_shard(path) == []
    n = len(records)
    with h5py.File(path, "r") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (n, S, S, 3)
        assert f["images"].chunks == (1, S, S, 3)
        np.testing.assert_array_equal(f["images"][()], np.stack([r.image for r in records]))
        m = f["maps/mscc"]
        assert m.dtype == np.uint8 and m.shape == (n, S, S) and m.attrs["kind"] == "mask"
        np.testing.assert_array_equal(m[()], np.stack([r.maps["mscc"] for r in records]).astype(np.uint8))
        c = f["maps/ssim"]
        assert c.dtype == np.float16 and c.shape == (n, S, S)
        expected = np.clip(np.stack([r.maps["ssim"] for r in records]), 0, 1).astype(np.float16)
        np.testing.assert_array_equal(c[()], expected)
        assert c[()].min() == 0 and c[()].max() == 1  # values outside [0,1] were really clipped
        z = f["maps/noise"]
        assert z.dtype == np.float16 and z.shape == (n, S, S, 3)
        np.testing.assert_array_equal(z[()], np.stack([r.maps["noise"] for r in records]).astype(np.float16))
        assert f["label"].dtype == np.int8
        assert f["label"][()].tolist() == [r.label for r in records]
        for name in ("video_id", "original_id", "manipulation", "compression", "split"):
            assert h5py.check_string_dtype(f[name].dtype).encoding == "utf-8"
            assert f[name].asstr()[()].tolist() == [getattr(r, name) for r in records]
        assert f["frame_index"].dtype == np.int32
        assert f["frame_index"][()].tolist() == [r.frame_index for r in records]
        assert f["box"].dtype == np.int32 and f["box"].shape == (n, 4)
        np.testing.assert_array_equal(f["box"][()], np.stack([r.box for r in records]))
        lm = f["landmarks"][()]
        assert f["landmarks"].dtype == np.float32 and lm.shape == (n, 68, 2)
        assert np.isnan(lm[3]).all() and not np.isnan(np.delete(lm, 3, axis=0)).any()
        np.testing.assert_array_equal(lm[0], records[0].landmarks)
        assert f["focus_prob"].dtype == np.float32
        np.testing.assert_allclose(f["focus_prob"][()], [r.extras["focus_prob"] for r in records], rtol=1e-6)
        assert f.attrs["schema_version"] == 1 and SCHEMA_VERSION == 2
        assert f.attrs["ffmask_version"] == ffmask.__version__
        created = datetime.fromisoformat(f.attrs["created"])
        assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
        assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 600
        assert json.loads(f.attrs["config"]) == {"run": "test", "out": str(tmp_path)}


def test_zero_record_shard_is_valid(tmp_path):
    path = write_shard(tmp_path / "empty.h5", [])
    assert path.exists() and validate_shard(path) == []
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (0, S, S, 3)


def test_buffer_boundaries_keep_every_record(tmp_path):
    records = [make_record(i) for i in range(11)]
    path = write_shard(tmp_path / "b.h5", records, buffer=4)
    with h5py.File(path, "r") as f:
        assert f["frame_index"][()].tolist() == [r.frame_index for r in records]
        np.testing.assert_array_equal(f["images"][()], np.stack([r.image for r in records]))


def _replace(rec: FaceRecord, **changes) -> FaceRecord:
    values = dict(rec.__dict__)
    values["maps"] = dict(rec.maps)
    values.update(changes)
    return FaceRecord(**values)


def _bad_maps(rec, **maps):
    merged = dict(rec.maps)
    merged.update(maps)
    return {k: v for k, v in merged.items() if v is not None}


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: _replace(r, image=r.image.astype(np.float32)), "image"),
        (lambda r: _replace(r, image=r.image[:-1]), "image"),
        (lambda r: _replace(r, maps=_bad_maps(r, mscc=np.full((S, S), 2, np.uint8))), "mscc"),
        (lambda r: _replace(r, maps=_bad_maps(r, mscc=np.full((S, S), 0.5))), "mscc"),
        (lambda r: _replace(r, maps=_bad_maps(r, ssim=np.full((S, S), np.nan))), "ssim"),
        (lambda r: _replace(r, maps=_bad_maps(r, ssim=np.zeros((S, S), bool))), "ssim"),
        (lambda r: _replace(r, maps=_bad_maps(r, noise=np.zeros((S, S)))), "noise"),
        (lambda r: _replace(r, maps=_bad_maps(r, noise=np.full((S, S, 3), 1e6))), "noise"),
        (lambda r: _replace(r, maps=_bad_maps(r, ssim=None)), "ssim"),
        (lambda r: _replace(r, maps=_bad_maps(r, extra=np.zeros((S, S)))), "extra"),
        (lambda r: _replace(r, label=2), "label"),
        (lambda r: _replace(r, label=True), "label"),
        (lambda r: _replace(r, video_id=""), "video_id"),
        (lambda r: _replace(r, split=None), "split"),
        (lambda r: _replace(r, frame_index=-1), "frame_index"),
        (lambda r: _replace(r, box=np.array([0, 0, 10])), "box"),
        (lambda r: _replace(r, box=np.array([10, 0, 5, 10])), "box"),
        (lambda r: _replace(r, landmarks=np.zeros((5, 2))), "landmarks"),
        (lambda r: _replace(r, extras={}), "extras"),
        (lambda r: _replace(r, extras={"focus_prob": 0.5, "other": 1.0}), "extras"),
        (lambda r: _replace(r, extras={"focus_prob": "high"}), "focus_prob"),
    ],
)
def test_append_rejects_bad_records_naming_the_field(tmp_path, change, field):
    good = make_record(1)
    w = ShardWriter(tmp_path / "v.h5", size=S, maps=KINDS, config={}, extras=["focus_prob"])
    w.append(good)
    with pytest.raises(ValueError, match=field):
        w.append(change(good))
    w.append(make_record(2))  # the writer is still usable and the bad record left no trace
    path = w.close()
    with h5py.File(path, "r") as f:
        assert f["frame_index"][()].tolist() == [10, 20]
    assert validate_shard(path) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size"),
        ({"maps": {"m": "heatmap"}}, "kind"),
        ({"maps": {"a/b": "mask"}}, "name"),
        ({"extras": ["label"]}, "clashes"),
        ({"extras": "focus_prob"}, "sequence"),
        ({"map_compression": "zstd"}, "map_compression"),
        ({"config": ["not", "a", "dict"]}, "config"),
    ],
)
def test_writer_rejects_bad_arguments(tmp_path, kwargs, message):
    args = {"size": S, "maps": KINDS, "config": {}}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ShardWriter(tmp_path / "x.h5", **args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("map_compression", [None, "gzip"])
def test_other_compressions_round_trip(tmp_path, map_compression):
    records = [make_record(i) for i in range(3)]
    path = write_shard(tmp_path / "c.h5", records, map_compression=map_compression, image_compression="lzf")
    assert validate_shard(path) == []
    with h5py.File(path, "r") as f:
        assert f["maps/mscc"].compression == map_compression and f["images"].compression == "lzf"
        np.testing.assert_array_equal(f["images"][()], np.stack([r.image for r in records]))


# -- atomicity ---------------------------------------------------------------


def test_final_file_appears_only_on_close(tmp_path):
    final = tmp_path / "s.h5"
    w = ShardWriter(final, size=S, maps=KINDS, config={}, extras=["focus_prob"], buffer=1)
    for i in range(3):
        w.append(make_record(i))
        assert not final.exists() and w.tmp_path.exists()
    assert w.tmp_path == tmp_path / "s.h5.tmp"
    assert w.close() == final
    assert final.exists() and not w.tmp_path.exists()
    assert w.close() == final  # idempotent
    with pytest.raises(RuntimeError):
        w.append(make_record(4))


def test_abort_and_exception_remove_the_tmp_file(tmp_path):
    w = ShardWriter(tmp_path / "a.h5", size=S, maps=KINDS, config={}, extras=["focus_prob"])
    w.append(make_record(0))
    w.abort()
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(KeyError):
        with ShardWriter(tmp_path / "b.h5", size=S, maps=KINDS, config={}, extras=["focus_prob"]) as w:
            w.append(make_record(0))
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_explicit_close_or_abort_inside_with_block(tmp_path):
    with ShardWriter(tmp_path / "c.h5", size=S, maps=KINDS, config={}, extras=["focus_prob"]) as w:
        w.append(make_record(0))
        w.close()
    with ShardWriter(tmp_path / "a.h5", size=S, maps=KINDS, config={}, extras=["focus_prob"]) as w:
        w.append(make_record(0))
        w.abort()  # e.g. nothing worth keeping
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]
    with pytest.raises(RuntimeError, match="aborted"):
        w.close()


def test_map_names_with_method_arguments(tmp_path):
    rec = make_record(1)
    rec.maps = {"diff@0.1": rec.maps["mscc"], "noise@10": rec.maps["noise"]}
    path = write_shard(tmp_path / "m.h5", [rec], maps={"diff@0.1": "mask", "noise@10": "noise"})
    assert validate_shard(path) == []
    from ffmask import ShardDataset

    item = ShardDataset(path, maps=["diff@0.1", "noise@10"])[0]
    np.testing.assert_array_equal(item["maps"]["diff@0.1"].numpy(), rec.maps["diff@0.1"])


def test_a_killed_writer_leaves_no_shard(tmp_path):
    # The process dies (no close, no abort, no cleanup) after writing records.
    script = textwrap.dedent(
        f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_shards import make_record, KINDS
        from ffmask.shards import ShardWriter
        w = ShardWriter({str(tmp_path / "k.h5")!r}, size=32, maps=KINDS, config={{}},
                        extras=["focus_prob"], buffer=2)
        for i in range(5):
            w.append(make_record(i))
        os._exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["k.h5.tmp"]
    assert list(tmp_path.glob("*.h5")) == []
    with pytest.raises(FFMaskError, match="unfinished"):
        find_shards(tmp_path)
    # A rerun overwrites the stale tmp and completes.
    write_shard(tmp_path / "k.h5", [make_record(0)])
    assert [p.name for p in tmp_path.iterdir()] == ["k.h5"]
    assert validate_shard(tmp_path / "k.h5") == []


# -- validate_shard ----------------------------------------------------------


@pytest.fixture()
def good_shard(tmp_path):
    return write_shard(tmp_path / "g.h5", [make_record(i) for i in range(4)])


def _corrupt(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: f["maps/mscc"].__setitem__((1, 3, 3), 2), "other than 0 and 1"),
        (lambda f: f["label"].resize(3, axis=0), "/label has 3 rows"),
        (lambda f: f["maps/noise"].resize(5, axis=0), "/maps/noise has 5 rows"),
        (lambda f: f.attrs.__delitem__("created"), "'created' missing"),
        (lambda f: f.attrs.__setitem__("schema_version", 3), "schema_version"),
        (lambda f: f.attrs.__setitem__("config", "{not json"), "config"),
        (lambda f: f.__delitem__("box"), "/box missing"),
        (lambda f: f["maps/ssim"].__setitem__((0, 0, 0), 1.5), "outside [0, 1]"),
        (lambda f: f["label"].__setitem__(0, 7), "/label holds values [7]"),
        (lambda f: (f.__delitem__("frame_index"), f.create_dataset("frame_index", data=np.zeros(4, np.int64))),
         "frame_index has dtype int64"),
        (lambda f: (f.__delitem__("split"), f.create_dataset("split", data=np.zeros(4))), "/split has dtype"),
    ],
)
def test_validate_shard_catches_corruption(good_shard, damage, expected):
    _corrupt(good_shard, damage)
    problems = validate_shard(good_shard)
    assert any(expected in p for p in problems), problems


def test_validate_shard_reports_unreadable_files(tmp_path):
    bogus = tmp_path / "x.h5"
    bogus.write_bytes(b"this is not HDF5")
    assert "not a readable HDF5 file" in validate_shard(bogus)[0]
    assert "no such file" in validate_shard(tmp_path / "missing.h5")[0]


# -- manifest ----------------------------------------------------------------


def test_manifest_last_entry_wins_and_converts_numpy(tmp_path):
    m = Manifest(tmp_path / "manifest.jsonl")
    assert m.load() == {}
    m.append_many([
        {"video_id": "a", "status": "skipped", "reason": "unreadable video", "faces": np.int64(0)},
        {"video_id": "b", "status": "ok", "reason": "", "faces": np.int32(20), "score": np.float32(0.5),
         "shard": tmp_path / "s.h5"},
    ])
    m.append_many([{"video_id": "a", "status": "ok", "reason": "", "faces": 7}])
    loaded = Manifest(tmp_path).load()  # a directory means its manifest.jsonl
    assert loaded["a"] == {"video_id": "a", "status": "ok", "reason": "", "faces": 7}
    assert loaded["b"]["faces"] == 20 and loaded["b"]["score"] == 0.5 and loaded["b"]["shard"] == str(tmp_path / "s.h5")
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 3


def test_manifest_append_is_one_fsynced_write(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    m = Manifest(tmp_path / "manifest.jsonl")
    m.append_many([{"video_id": str(i), "status": "ok", "reason": ""} for i in range(3)])
    assert synced == [str(tmp_path / "manifest.jsonl")]


def test_manifest_ignores_a_torn_final_line_and_repairs_it(tmp_path):
    path = tmp_path / "manifest.jsonl"
    m = Manifest(path)
    m.append_many([{"video_id": "a", "status": "ok", "reason": ""}, {"video_id": "b", "status": "ok", "reason": ""}])
    with open(path, "a") as fh:
        fh.write('{"video_id": "c", "status": "o')  # killed mid-write
    assert set(m.load()) == {"a", "b"}
    m.append_many([{"video_id": "c", "status": "skipped", "reason": "no face"}])
    assert m.load()["c"]["status"] == "skipped"
    assert [json.loads(line)["video_id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_manifest_rejects_a_malformed_middle_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"video_id": "a", "status": "ok", "reason": ""}\nGARBAGE\n'
                    '{"video_id": "b", "status": "ok", "reason": ""}\n')
    with pytest.raises(FFMaskError, match="line 2"):
        Manifest(path).load()


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"status": "ok", "reason": ""}, "video_id"),
        ({"video_id": "a", "status": "done", "reason": ""}, "status"),
        ({"video_id": "a", "status": "skipped", "reason": ""}, "needs a reason"),
        ({"video_id": "a", "status": "ok", "reason": "why"}, "reason"),
        ({"video_id": "a", "status": "ok", "reason": "", "x": object()}, "JSON"),
    ],
)
def test_manifest_rejects_bad_entries_and_writes_nothing(tmp_path, entry, message):
    m = Manifest(tmp_path / "manifest.jsonl")
    with pytest.raises(ValueError, match=message):
        m.append_many([{"video_id": "fine", "status": "ok", "reason": ""}, entry])
    assert not m.path.exists()


# -- reading -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """Two shards (3 + 4 faces) and a stale .tmp that must be ignored."""
    d = tmp_path_factory.mktemp("shards")
    write_shard(d / "shard-00001.h5", [make_record(i) for i in range(3, 7)])
    write_shard(d / "shard-00000.h5", [make_record(i) for i in range(3)])
    (d / "shard-00002.h5.tmp").write_bytes(b"partial")
    return d


def test_find_shards(shard_dir, tmp_path):
    files = find_shards(shard_dir)
    assert [p.name for p in files] == ["shard-00000.h5", "shard-00001.h5"]
    assert find_shards([files[1], shard_dir]) == [files[1], files[0]]
    with pytest.raises(FFMaskError, match="no such"):
        find_shards(tmp_path / "nope")
    with pytest.raises(FFMaskError, match="no shards"):
        find_shards(tmp_path)
    with pytest.raises(FFMaskError, match="unfinished"):
        find_shards(shard_dir / "shard-00002.h5.tmp")
    with pytest.raises(FFMaskError, match="neither a shard file nor a directory"):
        find_shards("/dev/null")  # it exists: "no such file" would send the user looking for a typo


def test_shard_dataset_item(shard_dir):
    from ffmask import ShardDataset

    ds = ShardDataset(shard_dir, maps=["mscc", "ssim", "noise"])
    assert len(ds) == 7 and ds.maps == KINDS and ds.extras == ("focus_prob",)
    np.testing.assert_array_equal(ds.labels, [i % 2 for i in range(7)])
    rec = make_record(4)
    item = ds[4]
    assert item["image"].dtype.is_floating_point is False and tuple(item["image"].shape) == (3, S, S)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), rec.image)
    assert str(item["maps"]["mscc"].dtype) == "torch.float32" and tuple(item["maps"]["mscc"].shape) == (S, S)
    np.testing.assert_array_equal(item["maps"]["mscc"].numpy(), rec.maps["mscc"].astype(np.float32))
    np.testing.assert_array_equal(item["maps"]["ssim"].numpy(),
                                  np.clip(rec.maps["ssim"], 0, 1).astype(np.float16).astype(np.float32))
    assert tuple(item["maps"]["noise"].shape) == (3, S, S)
    np.testing.assert_array_equal(item["maps"]["noise"].permute(1, 2, 0).numpy(),
                                  rec.maps["noise"].astype(np.float16).astype(np.float32))
    assert str(item["label"].dtype) == "torch.int64" and item["label"].ndim == 0 and int(item["label"]) == 0
    assert item["meta"] == {"video_id": rec.video_id, "original_id": rec.original_id,
                            "manipulation": "original", "compression": "c23", "split": rec.split,
                            "frame_index": 40}
    assert float(item["focus_prob"]) == pytest.approx(0.4)
    assert ds[-1]["meta"]["frame_index"] == 60
    with pytest.raises(IndexError, match="face index 7 out of range"):
        ds[7]
    with pytest.raises(IndexError, match="face index -8 out of range"):  # the index given, not a shifted one
        ds[-8]
    assert "meta" not in ShardDataset(shard_dir, return_meta=False)[0]
    flipped = ShardDataset(shard_dir, maps=["mscc"], transform=lambda s: {**s, "image": s["image"].flip(-1)})[4]
    np.testing.assert_array_equal(flipped["image"].permute(1, 2, 0).numpy(), rec.image[:, ::-1])


def test_missing_map_names_shard_and_available_maps(shard_dir):
    from ffmask import ShardDataset

    with pytest.raises(FFMaskError, match=r"shard-00000\.h5 has no map 'focus'.*mscc, noise, ssim"):
        ShardDataset(shard_dir, maps=["mscc", "focus"])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_return_every_face_once(shard_dir, context):
    import torch
    from torch.utils.data import DataLoader

    from ffmask import ShardDataset

    ds = ShardDataset(shard_dir, maps=["mscc", "noise"])
    ds[0]  # the parent opens a file first: workers must not reuse that handle
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context=context, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        assert batch["image"].dtype == torch.uint8 and tuple(batch["image"].shape[1:]) == (3, S, S)
        assert tuple(batch["maps"]["noise"].shape[1:]) == (3, S, S)
        for vid, frame, label, image in zip(batch["meta"]["video_id"], batch["meta"]["frame_index"].tolist(),
                                            batch["label"].tolist(), batch["image"]):
            i = frame // 10
            assert vid == make_record(i).video_id and label == i % 2
            np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), make_record(i).image)
            seen.append(i)
    assert sorted(seen) == list(range(7))


def test_summarize_shards_counts_independently(shard_dir):
    records = [make_record(i) for i in range(7)]
    Manifest(shard_dir / "manifest.jsonl").append_many([
        {"video_id": "x", "status": "ok", "reason": ""},
        {"video_id": "y", "status": "skipped", "reason": "no face"},
        {"video_id": "z", "status": "skipped", "reason": "no face"},
    ])
    s = summarize_shards(shard_dir)
    labels = np.array([r.label for r in records])
    assert (s["shards"], s["faces"], s["real"], s["fake"], s["unknown"]) == (2, 7, 4, 3, 0)
    assert s["unfinished"] == 1 and s["videos"] == 7
    assert s["bytes"] == sum(p.stat().st_size for p in shard_dir.glob("*.h5"))
    assert s["by_split"] == {"train": 3, "val": 2, "test": 2}
    assert s["by_manipulation"] == {"Deepfakes": 3, "original": 4}
    masks = np.stack([r.maps["mscc"] for r in records])
    any_pos = masks.reshape(7, -1).any(1)
    assert s["maps"]["mscc"]["coverage"] == pytest.approx(any_pos.mean())
    assert s["maps"]["mscc"]["fake_coverage"] == pytest.approx(any_pos[labels == 1].mean())
    assert s["maps"]["mscc"]["area"] == pytest.approx(masks.mean())
    ssim = np.clip(np.stack([r.maps["ssim"] for r in records]), 0, 1).astype(np.float16).astype(np.float64)
    assert s["maps"]["ssim"]["mean"] == pytest.approx(ssim.mean(), rel=1e-6)
    assert s["maps"]["noise"]["kind"] == "noise" and s["maps"]["noise"]["faces"] == 7
    assert s["extras"]["focus_prob"] == pytest.approx(np.mean([0.1 * i for i in range(7)]), rel=1e-6)
    assert s["manifest"]["ok"] == 1 and s["manifest"]["skipped_by_reason"] == {"no face": 2}
    (shard_dir / "manifest.jsonl").unlink()


def test_every_map_kind_is_stored_as_the_schema_says(tmp_path):
    # Schema version 1 (DESIGN.md): masks uint8 {0,1} (N,S,S); continuous float16
    # (N,S,S); noise float16 (N,S,S,3); a reader recognises each kind even
    # without its attr. (Version 2's encodings: tests/test_shards_v2.py.)
    stored = {"mask": (np.uint8, (2, 8, 8)), "continuous": (np.float16, (2, 8, 8)),
              "noise": (np.float16, (2, 8, 8, 3))}
    assert set(MAP_KINDS) == set(stored)
    rng = np.random.default_rng(0)
    maps = {"m": rng.random((8, 8)) > 0.5, "c": rng.random((8, 8)).astype(np.float32),
            "n": rng.normal(0, 3, (8, 8, 3)).astype(np.float32)}
    path = tmp_path / "kinds.h5"
    with ShardWriter(path, size=8, maps={"m": "mask", "c": "continuous", "n": "noise"}, config={},
                     schema_version=1) as w:
        for _ in range(2):
            w.append(FaceRecord(image=np.zeros((8, 8, 3), np.uint8), maps=maps, label=1, video_id="v",
                                original_id="", manipulation="", compression="", split="", frame_index=0,
                                box=np.array([0, 0, 8, 8]), landmarks=None))
    with h5py.File(path, "r+") as f:
        for name, kind in (("m", "mask"), ("c", "continuous"), ("n", "noise")):
            ds = f["maps"][name]
            assert (ds.dtype, ds.shape) == (np.dtype(stored[kind][0]), stored[kind][1])
            del ds.attrs["kind"]
            assert infer_map_kind(ds) == kind
        np.testing.assert_array_equal(f["maps/m"][0], maps["m"].astype(np.uint8))
        np.testing.assert_allclose(f["maps/n"][1], maps["n"], rtol=1e-3, atol=1e-3)
