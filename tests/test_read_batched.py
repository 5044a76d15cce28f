"""The batched read path (``ShardIndex.read_many``, ``ShardDataset.__getitems__``) returns what reading face by face does.

Every layout the writer makes (and a version-1 shard), two shards at once,
indices unsorted, repeated and negative: ``read_many(indices)`` must equal
``[read(i) for i in indices]`` array for array (dtype, shape, bytes) in every
read mode, and ``ds.__getitems__(indices)`` must equal ``[ds[i] for i in
indices]``, which PyTorch's DataLoader then collates the same way.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, default_collate

from ffmask.errors import FFMaskError
from ffmask.shards import ShardIndex
from ffmask.shards.reader import ShardDataset
from tests.test_read_fast import MAPS, _records, _same, _write

# Faces 0-6 lie in the first shard, 7-10 in the second: batches cross shards, out of order, with repeats.
INDICES = [9, 3, 0, 7, 3, -1, 6, 2, 10, 8, 1, 5, 4, -11]
MODES = ({"geometry": True}, {"channels_first": True, "float32": True}, {"image": False},
         {"float32": True, "meta": False}, {"channels_first": True})


# Every layout the writer makes (the writer's options): the default (gradient images, "auto" map
# predictors and packing, scaled noise) first.
WRITER_LAYOUTS = [
    {},
    {"map_predictor": "gradient", "map_packing": "nibbles"},
    {"map_predictor": "none", "map_packing": "none", "image_codec": "delta"},
    {"noise_storage": "derived", "image_codec": "blosc"},
    {"image_codec": "png"},
    {"image_codec": "jpeg", "jpeg_quality": 90},
    {"image_codec": "raw"},
]


def _two_shards(tmp_path, **kw):
    a = _write(tmp_path / "shard-00000.h5", _records(7), **kw)
    b = _write(tmp_path / "shard-00001.h5", _records(4), **kw)
    return [a, b]


def _compare(paths, maps, direct=True):
    index = ShardIndex(paths, maps, direct=direct)
    assert len(index) == 11
    for kw in MODES:
        many = index.read_many(INDICES, **kw)
        assert len(many) == len(INDICES)
        for k, (i, face) in enumerate(zip(INDICES, many)):
            _same(face, index.read(i, **kw), f"index {i} (position {k}) {kw}")
    ds = ShardDataset(paths, maps, direct=direct)
    for k, (i, sample) in enumerate(zip(INDICES, ds.__getitems__(INDICES))):
        _same(sample, ds[i], f"sample {i} (position {k})")


@pytest.mark.parametrize("kw", WRITER_LAYOUTS)
def test_batched_equals_face_by_face_for_every_layout(tmp_path, kw):
    _compare(_two_shards(tmp_path, **kw), list(MAPS))


def test_batched_equals_face_by_face_on_version_1_shards_and_through_hdf5(tmp_path):
    paths = []
    for name, n in (("shard-00000.h5", 7), ("shard-00001.h5", 4)):
        records = _records(n)
        for rec in records:  # v1 stores every map at full size
            rec.maps["focus"] = np.kron(rec.maps["focus"], np.ones((rec.image.shape[0] // 4,) * 2, np.float32))
        paths.append(_write(tmp_path / name, records, schema_version=1))
    with h5py.File(paths[0]) as f:
        assert f.attrs.get("schema_version", 1) == 1
    _compare(paths, list(MAPS))
    _compare(_two_shards(tmp_path / "v2"), list(MAPS), direct=False)


def test_batched_arrays_are_new_ones_even_for_a_repeated_index(tmp_path):
    index = ShardIndex(_two_shards(tmp_path), ["mscc", "ssim"])
    first, again = index.read_many([4, 4], channels_first=True, float32=True)
    want = index.read(4, channels_first=True, float32=True)
    first["image"][:] = 0
    first["maps"]["ssim"][:] = -1
    _same(again, want, "the repeated face")
    assert index.read_many([]) == []


def test_bad_indices_fail_before_any_read_as_in_read(tmp_path):
    index = ShardIndex(_two_shards(tmp_path), ["mscc"])
    with pytest.raises(IndexError, match="face index 11 out of range for 11 faces"):
        index.read_many([0, 11])
    with pytest.raises(TypeError, match="face index must be an int"):
        index.read_many([0, 1.5])
    assert index._handles == {}  # nothing was opened: the indices are checked first


def test_a_damaged_chunk_is_an_error_naming_shard_and_face_through_the_batched_path(tmp_path):
    paths = _two_shards(tmp_path)
    with h5py.File(paths[1], "r+") as f:  # face 2 of the second shard = global face 9
        ds = f["maps/ssim"]
        _, chunk = ds.id.read_direct_chunk((2, 0, 0))
        bad = bytearray(chunk)
        for i in range(len(bad) // 2, len(bad) // 2 + 8):
            bad[i] ^= 0xA5  # the stored checksum no longer matches
        ds.id.write_direct_chunk((2, 0, 0), bytes(bad))
    for direct in (True, False):
        ds = ShardDataset(paths, ["mscc", "ssim"], direct=direct)
        assert len(ds.__getitems__([0, 8, 10, 3])) == 4  # the other faces still read
        with pytest.raises(FFMaskError, match=f"cannot read face 2 of shard {paths[1]}"):
            ds.__getitems__([0, 8, 9, 3])
        with pytest.raises(FFMaskError, match=f"cannot read face 2 of shard {paths[1]}"):
            ds[9]


def test_the_dataloader_reads_batches_through_getitems(tmp_path, monkeypatch):
    paths = _two_shards(tmp_path)
    ds = ShardDataset(paths, ["mscc", "ssim", "noise"], return_meta=False,
                      transform=lambda s: {**s, "flipped": torch.flip(s["image"], dims=(2,))})
    calls = []
    real = ShardDataset.__getitems__
    monkeypatch.setattr(ShardDataset, "__getitems__", lambda self, idx: calls.append(list(idx)) or real(self, idx))
    order = [9, 3, 0, 7, 10, 2, 5, 1, 8, 6, 4]
    batches = list(DataLoader(ds, batch_size=4, sampler=order))
    assert calls == [order[:4], order[4:8], order[8:]]
    for batch, start in zip(batches, (0, 4, 8)):
        _same(batch, default_collate([ds[i] for i in order[start:start + 4]]), f"batch at {start}")
    calls.clear()
    subset = Subset(ds, np.array([10, 2, 5, 7]))  # Subset forwards a batch to __getitems__ (NumPy indices)
    (batch,) = list(DataLoader(subset, batch_size=4))
    assert calls == [[10, 2, 5, 7]]
    _same(batch, default_collate([ds[i] for i in (10, 2, 5, 7)]), "a Subset's batch")


def test_dataloader_workers_read_the_same_batches(tmp_path):
    paths = _two_shards(tmp_path)
    ds = ShardDataset(paths, ["mscc", "ssim"], return_meta=False)
    order = list(range(11))[::-1]
    want = [default_collate([ds[i] for i in order[s:s + 4]]) for s in range(0, 11, 4)]
    got = list(DataLoader(ds, batch_size=4, sampler=order, num_workers=2, multiprocessing_context="fork"))
    for k, (a, b) in enumerate(zip(got, want)):
        _same(a, b, f"batch {k}")


def test_iter_many_yields_each_position_once_in_reading_order(tmp_path):
    index = ShardIndex(_two_shards(tmp_path), ["mscc", "ssim"])
    got = list(index.iter_many(INDICES, channels_first=True))
    assert sorted(k for k, _ in got) == list(range(len(INDICES)))
    # shard by shard (in the order the batch first names them: 9 lies in the second), rows ascending
    first_named = {1: 0, 0: 1}
    located = [index.locate(INDICES[k]) for k, _ in got]
    assert located == sorted(located, key=lambda sr: (first_named[sr[0]], sr[1]))
    assert [s for s, _ in located] == [1] * 5 + [0] * 9
    for k, face in got:
        _same(face, index.read(INDICES[k], channels_first=True), f"position {k}")


def test_a_batch_stopped_by_an_error_releases_its_shard(tmp_path):
    paths = _two_shards(tmp_path)
    ds = ShardDataset(paths, ["mscc"], return_meta=False)
    faces = ds.index.iter_many([0, 1, 2])
    next(faces)
    assert ds.index._readers  # the first shard is held while its faces are read
    faces.close()
    assert not ds.index._readers
    with pytest.raises(ValueError, match="at least one face"):
        ds.batch([])
    ds.batch([8, 1, 9])
    assert not ds.index._readers  # and after a whole batch
