"""Fletcher-32 chunk checksums: ours equals HDF5's, and a damaged chunk is an error on every read path."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pytest

from ffmask.shards import checksum
from ffmask.shards.checksum import fletcher32, fletcher32_numpy, hdf5_fletcher32, split_fletcher32
from ffmask.shards.chunks import RowReader


@pytest.fixture(params=["hdf5", "numpy"])
def engine(request, monkeypatch):
    """Run a test with HDF5's own checksum function (the default where h5py's HDF5 exports it) and
    with the NumPy formulation (the fallback)."""
    if request.param == "hdf5":
        assert hdf5_fletcher32() is not None, "h5py's HDF5 no longer exports H5_checksum_fletcher32"
    else:
        monkeypatch.setitem(checksum._C_SUM, "fn", None)
    return request.param


def _stored_sums(path, name):
    """(payload, HDF5's stored checksum) of every chunk of dataset ``name``."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        out = []
        for row in range(ds.shape[0]):
            _, chunk = ds.id.read_direct_chunk((row,) + (0,) * (ds.ndim - 1))
            out.append((chunk[:-4], int.from_bytes(chunk[-4:], "little")))
    return out


@pytest.mark.parametrize("length", [1, 2, 3, 31, 95, 96, 97, 255, 256, 511, 512, 513, 1001, 40_000, 70_001])
def test_fletcher32_equals_the_sum_hdf5_stores(tmp_path, length, engine):
    rng = np.random.default_rng(length)
    rows = [rng.integers(0, 256, length, dtype=np.uint8),
            np.zeros(length, np.uint8),  # HDF5 keeps 0 for all-zero data
            np.full(length, 255, np.uint8),  # sums that are multiples of 65535: HDF5 keeps 65535, not 0
            (np.arange(length) % 7 == 0).astype(np.uint8)]
    path = tmp_path / "sums.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=np.stack(rows), chunks=(1, length), fletcher32=True)
    sums = _stored_sums(path, "raw")
    assert [fletcher32(payload) for payload, _ in sums] == [stored for _, stored in sums]
    assert [fletcher32_numpy(payload) for payload, _ in sums] == [stored for _, stored in sums]
    assert [fletcher32(memoryview(payload)) for payload, _ in sums] == [stored for _, stored in sums]
    for payload, stored in sums:  # bytes (what read_direct_chunk gives) and other buffers, intact and damaged
        chunk = payload + stored.to_bytes(4, "little")
        assert split_fletcher32(chunk)[1] and split_fletcher32(bytearray(chunk))[1]
        bad = bytearray(chunk)
        bad[len(bad) // 2] ^= 0x10
        assert not split_fletcher32(bytes(bad))[1] and not split_fletcher32(bad)[1]


def test_fletcher32_of_compressed_chunks_and_of_nothing(tmp_path, engine):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 40, (6, 96, 96, 3)).astype(np.uint8)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("blosc", data=data, chunks=(1, 96, 96, 3), fletcher32=True,
                         **hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
        f.create_dataset("zstd", data=data, chunks=(1, 96, 96, 3), fletcher32=True, **hdf5plugin.Zstd(1))
    for name in ("blosc", "zstd"):
        sums = _stored_sums(path, name)
        assert len({s for _, s in sums}) == len(sums)  # a real spread of values, not one constant
        assert [fletcher32(p) for p, _ in sums] == [s for _, s in sums]
    assert fletcher32(b"") == 0
    assert split_fletcher32(b"\x01\x02") == (memoryview(b"\x01\x02"), False)


def _damage(path, name, row):
    """Flip 32 bytes in the middle of chunk ``row`` of dataset ``name`` (a bad copy, bit rot)."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info_by_coord((row,) + (0,) * (f[name].ndim - 1))
    data = bytearray(path.read_bytes())
    start = info.byte_offset + info.size // 2
    for i in range(start, start + 32):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("codec", ["blosc", "zstd"])
def test_a_damaged_checked_chunk_is_an_error_through_both_paths(tmp_path, codec, engine):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 30, (4, 64, 64)).astype(np.uint8)
    compression = (hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
                   if codec == "blosc" else hdf5plugin.Zstd(1))
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("m", data=data, chunks=(1, 64, 64), fletcher32=True, **compression)
    with h5py.File(path, "r") as f:
        reader = RowReader(f["m"])
        assert reader.codec == codec and reader.checked
        assert all(np.array_equal(reader(i), data[i]) for i in range(4))
    _damage(path, "m", 2)
    for direct in (True, False):
        with h5py.File(path, "r") as f:
            reader = RowReader(f["m"], direct=direct)
            assert np.array_equal(reader(1), data[1]) and np.array_equal(reader(3), data[3])
            with pytest.raises(OSError):
                reader(2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from ffmask.annotate import annotate
    from ffmask.pipeline import JobSpec
    from ffmask.synth.tree import build_synth

    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    out = tmp_path_factory.mktemp("run") / "out"
    annotate("ff++", root, out, JobSpec(methods=("mscc", "ssim", "noise"), frames=2, size=64),
             videos_per_shard=2, jobs=1)
    return out


def test_every_numeric_dataset_of_a_written_shard_is_checksummed(run_dir):
    from ffmask.shards import find_shards

    with h5py.File(find_shards(run_dir)[0], "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        unchecked = [n for n in names if f[n].dtype.kind in "iuf" and not f[n].fletcher32]
        assert not unchecked and "images" in names and "maps/noise" in names


def test_a_damaged_chunk_of_a_real_shard_is_an_error_everywhere_it_is_read(run_dir, tmp_path):
    """A flipped byte run (bit rot, a bad copy) used to read back as other noise values, silently."""
    import shutil
    import subprocess
    import sys

    from ffmask import ShardDataset
    from ffmask.errors import FFMaskError
    from ffmask.shards import ShardIndex, find_shards

    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    path = find_shards(damaged)[0]
    with h5py.File(path, "r") as f:
        n = f["label"].shape[0]
    _damage(path, "maps/noise", 1)
    for direct in (True, False):
        index = ShardIndex(damaged, maps=["mscc", "noise"], direct=direct)
        index.read(0)  # the other faces still read
        with pytest.raises(FFMaskError, match=f"cannot read face 1 of shard {path}"):
            index.read(1)
    with pytest.raises(FFMaskError):
        ShardDataset(damaged, maps=["noise"])[1]
    assert n >= 2
    p = subprocess.run([sys.executable, "-m", "ffmask", "info", str(damaged)], capture_output=True, text=True,
                       env={**__import__("os").environ, "COLUMNS": "200"})
    assert p.returncode == 1 and path.name in p.stdout + p.stderr and "Traceback" not in p.stderr, p.stdout + p.stderr


def test_convert_adds_checksums_to_a_v2_shard_written_without_them(tmp_path, monkeypatch):
    from ffmask.annotate import annotate
    from ffmask.pipeline import JobSpec
    from ffmask.shards import ShardIndex, find_shards
    from ffmask.shards.convert import convert_shard
    from ffmask.shards.writer import ShardWriter
    from ffmask.synth.tree import build_synth

    root = tmp_path / "ff++"
    build_synth(root, seed=3, identities=2, frames=3, compressions=("c23",), manipulations=("Deepfakes",))
    out = tmp_path / "out"
    with monkeypatch.context() as m:  # the writer as it was before checksums
        m.setattr(ShardWriter, "_dataset", lambda self, name, **kw: self._file.create_dataset(name, **kw))
        annotate("ff++", root, out, JobSpec(methods=("mscc", "ssim", "noise"), frames=1, size=48),
                 videos_per_shard=4, jobs=1)
    (path,) = find_shards(out)
    with h5py.File(path, "r") as f:
        assert not f["images"].fletcher32 and not f["maps/noise"].fletcher32
    index = ShardIndex(out, maps=["mscc", "ssim", "noise"])
    before = [index.read(i, geometry=True) for i in range(len(index))]
    assert convert_shard(path).converted
    with h5py.File(path, "r") as f:
        assert f["images"].fletcher32 and f["maps/noise"].fletcher32 and f["box"].fletcher32
    index = ShardIndex(out, maps=["mscc", "ssim", "noise"])
    after = [index.read(i, geometry=True) for i in range(len(index))]
    for a, b in zip(before, after):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["box"], b["box"])
        assert all(np.array_equal(a["maps"][k], b["maps"][k]) for k in a["maps"])
    assert not convert_shard(path).converted  # now left alone
