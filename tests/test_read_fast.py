"""The fast read path (chunks decompressed in Python) returns exactly what HDF5's filter pipeline gives.

Every layout the writer makes is read twice, through ``ShardIndex(direct=True)``
(the default: Blosc and Zstandard chunks fetched with ``read_direct_chunk`` and
decompressed by ``blosc2`` / ``zstandard``) and ``ShardIndex(direct=False)``
(every row through h5py and HDF5's filters, the path before), and every array
of every face is compared byte for byte, with its dtype and shape. The raw
rows are also compared with plain ``h5py`` ``ds[row]`` reads.
"""

from __future__ import annotations

import pickle
import threading

import h5py
import hdf5plugin
import numpy as np
import pytest
import torch

from ffmask.errors import FFMaskError
from ffmask.shards import ShardIndex
from ffmask.shards.chunks import BLOSC_FILTER, ZSTD_FILTER, RowReader, direct_codecs
from ffmask.shards.reader import ShardDataset
from ffmask.targets import diff_map, noise_map
from tests._target_refs import make_fake
from tests.test_shards import S, make_record, write_shard

MAPS = {"mscc": "mask", "ssim": "continuous", "noise": "noise", "diff": "continuous", "focus": "continuous"}


def _records(n=7):
    records = []
    for i in range(n):
        rec = make_record(i, landmarks=i != 2)
        fake = make_fake(rec.image, seed=i) if i % 2 else rec.image
        rec.maps["diff"] = diff_map(rec.image, fake)  # values k/255: stored losslessly
        rec.maps["focus"] = np.random.default_rng(i).uniform(0, 1, (4, 4)).astype(np.float32)  # a grid
        sigma = 3.0 + i
        rec.maps["noise"] = noise_map(rec.image, sigma=sigma)
        rec.map_params = {"noise": {"sigma": sigma}}
        records.append(rec)
    return records


def _write(path, records, **kw):
    kw.setdefault("schema_version", 2)
    return write_shard(path, records, maps=MAPS, **kw)


def _same(a, b, where):
    """Equal type, dtype, shape and bytes (NaN-safe), recursing into dicts."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), f"{where}: {np.count_nonzero(a != b)} values differ"
        assert a.flags.writeable and b.flags.writeable, where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.numpy().tobytes() == b.numpy().tobytes(), where
    else:
        assert a == b, where


def _compare_paths(path, maps, *, expect_direct):
    """Every read mode of every face, fast path vs HDF5 path; returns the fast index."""
    fast, slow = ShardIndex(path, maps), ShardIndex(path, maps, direct=False)
    assert len(fast) == len(slow) > 0
    for i in range(len(fast)):
        for kw in ({"geometry": True}, {"channels_first": True, "float32": True}, {"image": False},
                   {"float32": True, "meta": False}, {"channels_first": True}):
            _same(fast.read(i, **kw), slow.read(i, **kw), f"{path.name} face {i} {kw}")
    readers = {}
    for layout in fast._layouts.values():
        for reader in layout._rows.values():
            if reader:
                readers[reader.ds.name] = reader.codec
    if expect_direct:  # the comparison above is not HDF5 against itself
        assert direct_codecs() == {BLOSC_FILTER: True, ZSTD_FILTER: True}, "blosc2/zstandard missing: make setup"
        maps_read = {v for k, v in readers.items() if k.startswith("/maps/")}
        assert maps_read and maps_read <= {"blosc", "zstd"}, readers  # images: see the callers
    else:
        assert set(readers.values()) == {None}, readers
    return fast


@pytest.mark.parametrize("kw", [
    {},  # the default: gradient images, "auto" predictors and packing, scaled noise
    {"map_predictor": "gradient", "map_packing": "nibbles"},
    {"map_predictor": "gradient", "map_packing": "none"},
    {"map_predictor": "none", "map_packing": "none", "image_codec": "delta"},
    {"noise_storage": "derived", "image_codec": "blosc"},
])
def test_v2_layouts_read_the_same_through_both_paths(tmp_path, kw):
    records = _records()
    path = _write(tmp_path / "s.h5", records, **kw)
    fast = _compare_paths(path, list(MAPS), expect_direct=True)
    assert fast._layouts[0]._rows[id(fast._layouts[0]._images)].codec in ("blosc", "zstd")  # delta: Zstd
    ref = ShardIndex(path, list(MAPS), direct=False)
    # and the v1 arrays users always got: lossless image, masks, diff exactly
    for i, rec in enumerate(records):
        face = fast.read(i)
        np.testing.assert_array_equal(face["image"], rec.image)
        np.testing.assert_array_equal(face["maps"]["mscc"], rec.maps["mscc"].astype(np.uint8))
        np.testing.assert_array_equal(face["maps"]["diff"], rec.maps["diff"].astype(np.float16))
        assert face["maps"]["focus"].shape == (S, S) and face["maps"]["noise"].dtype == np.float16
        _same(ShardDataset(path, list(MAPS))[i]["maps"]["ssim"],
              torch.from_numpy(ref.read(i, float32=True)["maps"]["ssim"]), f"dataset face {i}")


@pytest.mark.parametrize("codec", ["png", "jpeg", "raw"])
def test_other_image_codecs_and_v1_files_read_the_same(tmp_path, codec):
    """Images HDF5 stores unfiltered or as variable-length bytes, and v1 files (lzf maps,
    raw images): nothing for the fast path to take, read as before."""
    records = _records(4)
    extra = {"jpeg_quality": 90} if codec == "jpeg" else {}
    path = _write(tmp_path / f"{codec}.h5", records, image_codec=codec, **extra)
    _compare_paths(path, list(MAPS), expect_direct=True)  # the maps still are Zstd / Blosc
    for rec in records:
        rec.maps["focus"] = np.kron(rec.maps["focus"], np.ones((S // 4, S // 4), np.float32))  # v1: full size
    v1 = _write(tmp_path / "v1.h5", records, schema_version=1)
    _compare_paths(v1, list(MAPS), expect_direct=False)
    with h5py.File(v1) as f:
        assert f.attrs.get("schema_version", 1) == 1


def test_row_reader_gives_h5py_rows_byte_for_byte(tmp_path):
    path = _write(tmp_path / "s.h5", _records(5))
    with h5py.File(path) as f:
        names = ["images", *(f"maps/{m}" for m in f["maps"])]
        for name in names:
            ds = f[name]
            reader = RowReader(ds)
            assert reader.codec == {BLOSC_FILTER: "blosc", ZSTD_FILTER: "zstd"}[ds.id.get_create_plist().get_filter(0)[0]]
            for row in range(ds.shape[0]):
                got, want = reader(row), ds[row]
                assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), name
                assert got.flags.writeable and got.flags.c_contiguous
            with pytest.raises(IndexError):
                reader(ds.shape[0])


def test_unusual_chunks_fall_back_to_hdf5(tmp_path):
    """A chunk HDF5 stored without its filter, a chunk never written, a corrupt Blosc header
    and a two-filter pipeline: each row still comes back as h5py reads it (or as its error)."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4, (4, 16, 16), dtype=np.uint8)
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        z = f.create_dataset("z", shape=(5, 16, 16), chunks=(1, 16, 16), dtype=np.uint8, **hdf5plugin.Zstd())
        z[:4] = data
        z.id.write_direct_chunk((2, 0, 0), data[2].tobytes(), filter_mask=1)  # stored raw, filter skipped
        b = f.create_dataset("b", data=data, chunks=(1, 16, 16),
                             **hdf5plugin.Blosc(cname="zstd", shuffle=hdf5plugin.Blosc.BITSHUFFLE))
        two = f.create_dataset("two", data=data, chunks=(1, 16, 16), shuffle=True, compression="gzip")
    with h5py.File(path, "r+") as f:  # a Blosc chunk claiming another size: not ours to decode
        mask, chunk = f["b"].id.read_direct_chunk((1, 0, 0))
        bad = bytearray(chunk)
        bad[4:8] = (10 ** 6).to_bytes(4, "little")
        f["b"].id.write_direct_chunk((1, 0, 0), bytes(bad))
    with h5py.File(path) as f:
        z, b, two = RowReader(f["z"]), RowReader(f["b"]), RowReader(f["two"])
        assert (z.codec, b.codec, two.codec) == ("zstd", "blosc", None)
        for row in range(4):
            np.testing.assert_array_equal(z(row), data[row])
            np.testing.assert_array_equal(two(row), data[row])
        np.testing.assert_array_equal(z(4), np.zeros((16, 16), np.uint8))  # never written: the fill value
        np.testing.assert_array_equal(b(0), data[0])
        with pytest.raises(OSError):  # HDF5's own Blosc filter refuses the damaged chunk too
            b(1)


def test_a_damaged_chunk_is_a_one_line_error(tmp_path):
    path = _write(tmp_path / "s.h5", _records(3))
    with h5py.File(path, "r+") as f:
        ds = f["images"]
        mask, chunk = ds.id.read_direct_chunk((1, 0, 0, 0))
        ds.id.write_direct_chunk((1, 0, 0, 0), chunk[:16] + bytes(len(chunk) - 16))  # header kept, body zeroed
    index = ShardIndex(path, ["mscc"])
    index.read(0)
    with pytest.raises(FFMaskError, match="cannot read face 1"):
        index.read(1)


def test_threads_and_pickles_read_the_same(tmp_path):
    path = _write(tmp_path / "s.h5", _records(6))
    slow = ShardIndex(path, list(MAPS), direct=False)
    want = [slow.read(i, channels_first=True, float32=True) for i in range(6)]
    fast = pickle.loads(pickle.dumps(ShardIndex(path, list(MAPS))))
    assert fast.direct
    got: dict = {}

    def work(k):
        for rep in range(3):
            for i in range(6):
                got[(k, rep, i)] = fast.read(i, channels_first=True, float32=True)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 * 3 * 6
    for (k, rep, i), face in got.items():
        _same(face, want[i], f"thread {k} face {i}")


def test_decoders_leave_their_input_alone_unless_told():
    """``overwrite=True`` (what ShardLayout passes for a row it just read) may decode in place;
    without it the stored array is untouched, and both give the same result."""
    from ffmask.shards.codec import decode_image, decode_image_chw, decode_map_float32, encode_image, encode_map

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    stored = encode_image(image, "gradient")
    for decode, want in ((decode_image_chw, image.transpose(2, 0, 1)), (decode_image, image)):
        kept = stored.copy()
        np.testing.assert_array_equal(decode(kept, "gradient"), want)
        np.testing.assert_array_equal(kept, stored)
        np.testing.assert_array_equal(decode(kept, "gradient", overwrite=True), want)
    ssim = rng.uniform(0, 1, (S, S)).astype(np.float32)
    q, _ = encode_map(ssim, "continuous", "uint8/255", predictor="gradient")
    kept = q.copy()
    plain = decode_map_float32(kept, "continuous", "uint8/255", size=S, predictor="gradient")
    np.testing.assert_array_equal(kept, q)
    k = np.rint(np.clip(ssim, 0, 1) * np.float32(255)).astype(np.float32)
    np.testing.assert_array_equal(plain, (k / np.float32(255)).astype(np.float16).astype(np.float32))  # the v1 float16
    np.testing.assert_array_equal(decode_map_float32(kept, "continuous", "uint8/255", size=S, predictor="gradient",
                                                     overwrite=True), plain)


def test_dataset_samples_are_the_same_through_both_paths(tmp_path):
    path = _write(tmp_path / "s.h5", _records(4))
    fast, slow = ShardDataset(path, list(MAPS)), ShardDataset(path, list(MAPS), direct=False)
    assert fast.index.direct and not slow.index.direct
    for i in range(len(fast)):
        _same(fast[i], slow[i], f"sample {i}")


def test_the_checksum_function_does_not_change_what_is_read(tmp_path, monkeypatch):
    """The direct path checks sums with HDF5's own C function where h5py's HDF5 exports it, else
    with NumPy: the same faces either way, and a chunk failing its sum is an error with both."""
    from ffmask.shards import checksum

    path = _write(tmp_path / "s.h5", _records(4))
    c_index = ShardIndex(path, list(MAPS))
    with_c = [c_index.read(i, channels_first=True, float32=True) for i in range(4)]
    assert checksum.hdf5_fletcher32() is not None
    readers = [r for layout in c_index._layouts.values() for r in layout._rows.values() if r and r.checked]
    assert readers and all(r._sum is checksum.hdf5_fletcher32() for r in readers)
    monkeypatch.setitem(checksum._C_SUM, "fn", None)
    np_index = ShardIndex(path, list(MAPS))
    for i in range(4):
        _same(np_index.read(i, channels_first=True, float32=True), with_c[i], f"face {i}")
    assert all(r._sum is not checksum.hdf5_fletcher32() for layout in np_index._layouts.values()
               for r in layout._rows.values() if r and r.checked)
    c_index.close()
    np_index.close()
    with h5py.File(path, "r+") as f:
        ds = f["maps/mscc"]
        _, chunk = ds.id.read_direct_chunk((3, 0, 0))
        ds.id.write_direct_chunk((3, 0, 0), chunk[:-1] + bytes([chunk[-1] ^ 1]))  # the stored sum off by one bit
    for engine in ("numpy", "hdf5"):
        if engine == "hdf5":
            monkeypatch.undo()
        with pytest.raises(FFMaskError, match="cannot read face 3"):
            ShardIndex(path, ["mscc"]).read(3)


def test_returned_arrays_are_new_and_untouched_by_later_reads(tmp_path):
    path = _write(tmp_path / "s.h5", _records(5))
    index = ShardIndex(path, list(MAPS))
    first = index.read(0, channels_first=True, float32=True)
    kept = {"image": first["image"].copy(), **{m: v.copy() for m, v in first["maps"].items()}}
    for i in (1, 2, 3, 4, 0):
        index.read(i, channels_first=True, float32=True)
    index.read_many([4, 3, 0, 2], channels_first=True, float32=True)
    np.testing.assert_array_equal(first["image"], kept["image"])
    for m, v in first["maps"].items():
        np.testing.assert_array_equal(v, kept[m])
    again = index.read(0, channels_first=True, float32=True)
    assert not np.shares_memory(again["image"], first["image"])
    assert not any(np.shares_memory(again["maps"][m], first["maps"][m]) for m in MAPS)
