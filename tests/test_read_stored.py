"""``ShardDataset(maps_as="stored")``: compact maps that :func:`maps_to_float32` turns into the default's float32 maps.

Every layout the writer makes, a version-1 shard, derived noise and a dataset
mixing v1 and v2 shards: each map must come in its documented dtype and
shape, and the converted maps must equal ``maps_as="float32"``'s bit for bit,
face by face, through ``__getitems__`` and from DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from ffmask.shards import ShardIndex
from ffmask.shards.codec import UINT8_255_VALUES
from ffmask.shards.reader import ShardDataset, maps_to_float32
from tests.test_read_batched import WRITER_LAYOUTS, _two_shards
from tests.test_read_fast import MAPS, _records, _same, _write

S = _records(1)[0].image.shape[0]
# The forms of a v2 shard's maps: masks uint8, full-size continuous maps uint8 k, the 4 x 4 focus grid
# (upsampled on read) and noise float16.
V2_FORMS = {"mscc": "uint8", "ssim": "uint8/255", "noise": "float16", "diff": "uint8/255", "focus": "float16"}
V1_FORMS = {"mscc": "uint8", "ssim": "float16", "noise": "float16", "diff": "float16", "focus": "float16"}
DTYPES = {"uint8": torch.uint8, "uint8/255": torch.uint8, "float16": torch.float16}


def _v1_shard(path, n):
    records = _records(n)
    for rec in records:  # v1 stores every map at full size
        rec.maps["focus"] = np.kron(rec.maps["focus"], np.ones((S // 4,) * 2, np.float32))
    return _write(path, records, schema_version=1)


def _check(paths, forms):
    """Every face: stored dtypes and shapes as documented, converted == default bit for bit."""
    default = ShardDataset(paths, list(MAPS), return_meta=False)
    stored = ShardDataset(paths, list(MAPS), return_meta=False, maps_as="stored")
    assert stored.map_forms == forms and default.map_forms == dict.fromkeys(MAPS, "float32")
    indices = list(range(len(stored)))[::-1]
    for i, sample in zip(indices, stored.__getitems__(indices)):
        want = default[i]
        _same(sample, stored[i], f"face {i}: batched vs face by face")
        for name, values in sample["maps"].items():
            shape = (3, S, S) if MAPS[name] == "noise" else (S, S)
            assert values.dtype == DTYPES[forms[name]] and tuple(values.shape) == shape, (i, name)
        if forms["ssim"] == "uint8/255":  # the stored k, not a float: the default is the table's entry
            k = sample["maps"]["ssim"].numpy()
            assert np.array_equal(want["maps"]["ssim"].numpy(), UINT8_255_VALUES[k])
        if forms["mscc"] == "uint8":
            assert set(np.unique(sample["maps"]["mscc"].numpy())) <= {0, 1}
        _same(stored.to_float32(sample), want, f"face {i}: converted vs default")
        _same({k: v for k, v in sample.items() if k != "maps"}, {k: v for k, v in want.items() if k != "maps"},
              f"face {i}: image, label, extras")
    return default, stored


@pytest.mark.parametrize("kw", WRITER_LAYOUTS)
def test_stored_maps_convert_to_the_default_float32_for_every_layout(tmp_path, kw):
    _check(_two_shards(tmp_path, **kw), V2_FORMS)


def test_version_1_shards_and_a_v1_v2_mix_use_float16_for_continuous_maps(tmp_path):
    v1 = [_v1_shard(tmp_path / "shard-00000.h5", 7), _v1_shard(tmp_path / "shard-00001.h5", 4)]
    _check(v1, V1_FORMS)
    # A map stored as uint8 k in one shard and float16 in another: float16 in both (the same values).
    mixed = [v1[0], _write(tmp_path / "v2.h5", _records(4))]
    _check(mixed, V1_FORMS)
    assert ShardIndex(mixed, ["ssim"]).map_forms == {"ssim": "float16"}
    assert ShardIndex(mixed[1:], ["ssim"]).map_forms == {"ssim": "uint8/255"}


def test_the_table_is_not_k_over_255_in_float32():
    # Why "uint8/255" needs the table: a plain k / 255 gives other float32 bits for most k.
    naive = np.arange(256, dtype=np.float32) / np.float32(255)
    assert np.count_nonzero(naive != UINT8_255_VALUES) > 200
    k = torch.arange(256, dtype=torch.uint8).reshape(16, 16)
    got = maps_to_float32({"m": k}, {"m": "uint8/255"})["m"]
    assert got.dtype == torch.float32 and np.array_equal(got.numpy().ravel(), UINT8_255_VALUES)
    flipped = torch.flip(k, dims=(1,)).t()  # not contiguous (what a transform may return)
    got = maps_to_float32({"m": flipped}, {"m": "uint8/255"})["m"]
    assert np.array_equal(got.numpy(), UINT8_255_VALUES[flipped.numpy()])


def test_bad_values_are_refused_in_one_line(tmp_path):
    paths = _two_shards(tmp_path)
    with pytest.raises(ValueError, match="maps_as must be one of 'float32', 'stored', got 'uint8'"):
        ShardDataset(paths, ["mscc"], maps_as="uint8")
    stored = ShardDataset(paths, ["mscc", "ssim"], maps_as="stored")
    float_sample = ShardDataset(paths, ["mscc", "ssim"])[0]
    with pytest.raises(ValueError, match="map 'mscc' should be torch.uint8 for form 'uint8', got torch.float32"):
        stored.to_float32(float_sample)  # a default sample (or a batch converted twice)
    with pytest.raises(ValueError, match="either as float32 or compact"):
        stored.index.read(0, float32=True, compact=True)
    assert "maps_as='stored'" in repr(stored) and "maps_as" not in repr(ShardDataset(paths, ["mscc"]))


def test_dataloader_workers_return_compact_batches_that_convert_to_the_default(tmp_path):
    paths = _two_shards(tmp_path)
    maps = ["mscc", "ssim", "noise"]
    default = ShardDataset(paths, maps, return_meta=False)
    stored = ShardDataset(paths, maps, return_meta=False, maps_as="stored")
    order = list(range(11))[::-1]
    got = list(DataLoader(stored, batch_size=4, sampler=order, num_workers=2, multiprocessing_context="fork"))
    assert len(got) == 3
    for k, (batch, start) in enumerate(zip(got, range(0, 11, 4))):
        ids = order[start:start + 4]
        _same(batch, default_collate([stored[i] for i in ids]), f"batch {k}")
        assert batch["maps"]["ssim"].dtype == torch.uint8 and batch["maps"]["noise"].dtype == torch.float16
        assert tuple(batch["maps"]["noise"].shape) == (len(ids), 3, S, S)
        _same(stored.to_float32(batch), default_collate([default[i] for i in ids]), f"batch {k} converted")
    plain = default_collate([default[i] for i in order[:4]])
    assert default.to_float32(plain)["maps"]["ssim"] is plain["maps"]["ssim"]  # the default: nothing to do


@pytest.mark.parametrize("kw", WRITER_LAYOUTS)
def test_a_stored_batch_is_the_collated_stored_samples_and_widens_to_the_default(tmp_path, kw):
    paths = _two_shards(tmp_path, **kw)
    order = [10, 0, 4, 7, 4, 2]
    stored = ShardDataset(paths, list(MAPS), return_meta=False, maps_as="stored")
    default = ShardDataset(paths, list(MAPS), return_meta=False)
    batch = stored.batch(order)
    _same(batch, default_collate(stored.__getitems__(order)), f"{kw}: batch")
    _same(stored.to_float32(batch), default_collate([default[i] for i in order]), f"{kw}: widened")
    _same(default.batch(order), default_collate([default[i] for i in order]), f"{kw}: default batch")
