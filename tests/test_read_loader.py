"""Batches read by DataLoader workers, and the trainers' batched compact path, equal the one-process default read.

Real ``annotate`` shards (the small synth tree: a mask ``mscc``, a continuous
``ssim`` stored as uint8 k, a float16 ``noise``), real DataLoaders with two
forked workers. Every batch is compared, array by array (dtype, shape,
bytes), with ``default_collate`` of the samples a plain
``ShardDataset(maps_as="float32")`` reads face by face in this process; the
trainers' new path (``SupervisedFaces.batch`` + ``to_device``, ``_Faces.batch``,
``predict_targets``) with what the per-face float32 path gave, and a short
training run's losses with the same run read the old way.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, default_collate

import ffmask  # noqa: F401  (the torchvision shim before timm)
from ffmask.annotate import annotate
from ffmask.errors import FFMaskError
from ffmask.pipeline import JobSpec
from ffmask.shards import BatchedShards, ShardIndex
from ffmask.shards.reader import ShardDataset
from ffmask.train.evaluator import EvaluatorTrainArgs, SupervisedFaces, collate_supervised, train_evaluator
from ffmask.train.focus import _Faces, collate_faces
from tests.test_read_fast import _same

MAPS = ["mscc", "ssim", "noise"]
ORDER = [11, 0, 5, 3, 7, 2, 9, 4, 1, 10, 6, 8, 3]  # across both shards, unsorted, one repeat
FORK = {"num_workers": 2, "multiprocessing_context": "fork"}


@pytest.fixture(scope="module")
def shards(small_ff_root, tmp_path_factory):
    """12 faces (2 originals, 2 Deepfakes, 3 frames, 64 px) in 2 shards; maps mscc, ssim, noise."""
    out = tmp_path_factory.mktemp("loader") / "shards"
    annotate("ff++", small_ff_root, out, JobSpec(methods=tuple(MAPS), frames=3, size=64), videos_per_shard=2, jobs=1)
    return out


def _default_batch(shards, maps, indices, **kw):
    """What the plain dataset gives, read face by face in this process and collated."""
    ds = ShardDataset(shards, maps, **kw)
    return default_collate([ds[i] for i in indices])


def _batches(order, size):
    return [order[s:s + size] for s in range(0, len(order), size)]


def test_the_shards_hold_every_form(shards):
    ds = ShardDataset(shards, MAPS, maps_as="stored")
    assert len(ds) == 12 and len(ds.paths) == 2
    assert ds.map_forms == {"mscc": "uint8", "ssim": "uint8/255", "noise": "float16"}
    assert set(ds.labels.tolist()) == {0, 1}


@pytest.mark.parametrize("maps_as", ["float32", "stored"])
@pytest.mark.parametrize("meta", [False, True])
def test_batch_is_default_collate_of_the_samples_in_one_block(shards, maps_as, meta):
    ds = ShardDataset(shards, MAPS, maps_as=maps_as, return_meta=meta)
    got = ds.batch(ORDER)
    _same(got, default_collate(ds.__getitems__(ORDER)), f"{maps_as} batch")
    tensors = [got["image"], got["label"], *got["maps"].values()]
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 1  # one block
    assert not got["image"].is_shared()
    assert ds.batch(ORDER[:3], shared=True)["image"].is_shared()
    if maps_as == "stored":  # widened, the default dataset's batch bit for bit
        _same(ds.to_float32(got), _default_batch(shards, MAPS, ORDER, return_meta=meta), "widened")
    with pytest.raises(ValueError, match="at least one face"):
        ds.batch([])
    with pytest.raises(IndexError, match="face index 12 out of range"):
        ds.batch([0, 12])


def test_batch_with_a_transform_transforms_each_sample(shards):
    def flip(s):
        return {**s, "image": torch.flip(s["image"], dims=(2,))}

    ds = ShardDataset(shards, ["ssim"], return_meta=False, transform=flip)
    plain = ShardDataset(shards, ["ssim"], return_meta=False)
    want = default_collate([flip(plain[i]) for i in ORDER[:5]])
    _same(ds.batch(ORDER[:5]), want, "transformed")


def test_batched_shards_index_with_lists_only(shards):
    batched = BatchedShards(ShardDataset(shards, ["mscc"]))
    assert len(batched) == 12
    with pytest.raises(TypeError, match="index it with a list"):
        batched[3]
    with pytest.raises(TypeError, match="has no batch"):
        BatchedShards([1, 2, 3])


@pytest.mark.parametrize("maps_as", ["float32", "stored"])
def test_workers_batches_equal_the_one_process_default_read(shards, maps_as):
    ds = ShardDataset(shards, MAPS, maps_as=maps_as, return_meta=False)
    want = [_default_batch(shards, MAPS, b, return_meta=False) for b in _batches(ORDER, 4)]
    through_getitems = list(DataLoader(ds, batch_size=4, sampler=ORDER, **FORK))
    whole = list(DataLoader(BatchedShards(ds), batch_size=None, sampler=BatchSampler(ORDER, 4, False), **FORK))
    assert len(through_getitems) == len(whole) == len(want) == 4
    for k, (a, b, w) in enumerate(zip(through_getitems, whole, want)):
        assert b["image"].is_shared()  # made in a worker's shared block, not copied again
        _same(ds.to_float32(a), w, f"batch {k} via __getitems__")
        _same(ds.to_float32(b), w, f"batch {k} via BatchedShards")


def test_faces_of_two_sizes_in_one_batch_are_one_line_errors(shards, small_ff_root, tmp_path):
    other = tmp_path / "big"
    annotate("ff++", small_ff_root, other, JobSpec(methods=("mscc",), frames=1, size=72), jobs=1)
    ds = ShardDataset([shards, other], ["mscc"], return_meta=False)
    with pytest.raises(FFMaskError, match="one batch needs faces of one size"):
        ds.batch([0, 12])


# ---------------------------------------------------------------- the trainers' path


def _supervised(shards, maps_as, **kw):
    maps = [m for m in ("ssim", "noise", "mscc") if m in (kw.get("map_name"), kw.get("noise_map"))]
    ds = ShardDataset(shards, maps, return_meta=False, maps_as=maps_as)
    index = np.arange(12)[::-1].copy()
    return SupervisedFaces(ds, index, kw.pop("map_name"), kw.pop("map_size", 16), **kw)


@pytest.mark.parametrize("kw", [
    {"map_name": "ssim", "noise_map": "noise", "domains": np.arange(12) % 3},
    {"map_name": "mscc", "map_size": 24},
    {"map_name": "mscc", "fixed_map": torch.linspace(0, 1, 256).view(1, 16, 16)},
    {"map_name": None},
])
def test_a_training_batch_is_the_per_face_float32_batch_bit_for_bit(shards, kw):
    old = _supervised(shards, "float32", **dict(kw))  # the path before: per face, float32 maps
    new = _supervised(shards, "stored", **dict(kw))
    positions = [3, 0, 11, 6, 6, 9]
    want = collate_supervised([old[i] for i in positions])
    got = new.to_device(new.batch(positions), torch.device("cpu"))
    assert list(got) == list(want)
    _same(got, want, "batch")
    loader = DataLoader(BatchedShards(new), batch_size=None, sampler=[positions, positions[::-1]], **FORK)
    for batch, order in zip(loader, (positions, positions[::-1])):
        assert batch["image"].is_shared() and all(m.dtype != torch.float32 for m in batch["maps"].values())
        _same(new.to_device(batch, torch.device("cpu")), collate_supervised([old[i] for i in order]), "worker")


def test_focus_faces_batch_equals_its_items(shards):
    for maps_as in ("float32", "stored"):
        ds = ShardDataset(shards, ["ssim"], return_meta=False, maps_as=maps_as)
        for mask in (None, "ssim"):
            faces = _Faces(ds, np.array([4, 1, 7, 10, 2]), mask)
            got = faces.batch([0, 3, 4, 1])
            want = collate_faces([faces[i] for i in (0, 3, 4, 1)])
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert a.dtype == b.dtype and torch.equal(a, b)
    # the mask is of the float32 map: k > 0.5 on the stored uint8 k would be true for every k >= 1
    stored = ShardDataset(shards, ["ssim"], return_meta=False, maps_as="stored")
    plain = ShardDataset(shards, ["ssim"], return_meta=False)
    mask = _Faces(stored, np.arange(12), "ssim").batch(list(range(12)))[2]
    want = torch.stack([plain[i]["maps"]["ssim"] > 0.5 for i in range(12)])
    assert torch.equal(mask, want) and (stored.batch(list(range(12)))["maps"]["ssim"] >= 1).sum() > want.sum()


def test_evaluate_targets_equal_the_per_face_targets(shards):
    from ffmask.evaluate import predict_targets
    from ffmask.models.evaluators import map_targets

    idx = np.array([11, 2, 5, 0, 9, 7, 3])
    for name in ("ssim", "mscc"):
        want = np.zeros((idx.size, 16, 16), np.float32)
        index = ShardIndex(shards, [name])
        for row, i in enumerate(idx):  # the code before: face by face, float16/uint8 -> float32
            face = index.read(int(i), image=False)
            m = torch.from_numpy(np.asarray(face["maps"][name], dtype=np.float32))
            want[row] = map_targets(m[None], torch.tensor([face["label"]]), 16)[0, 0].numpy()
        for maps_as in ("stored", "float32"):
            got = predict_targets(ShardDataset(shards, [name], maps_as=maps_as), idx, name, 16, batch_size=3)
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), (name, maps_as)
        assert want.any()


def test_a_short_training_run_has_the_losses_of_the_per_face_path(shards, tmp_path, monkeypatch):
    cfg = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    args = EvaluatorTrainArgs(map="ssim", iters=3, batch_size=4, val_every=0, seed=1, device="cpu", hflip=True)
    torch.set_num_threads(1)
    new = []
    train_evaluator(shards, tmp_path / "new", config=cfg, args=args, callback=lambda s, r: new.append(r))

    # The path before: each worker reads its faces one by one as float32 and collate_supervised stacks them.
    monkeypatch.setattr(SupervisedFaces, "batch", lambda self, pos: collate_supervised([self[i] for i in pos]))
    monkeypatch.setattr(SupervisedFaces, "to_device",
                        lambda self, batch, device: {k: v.to(device) for k, v in batch.items()})
    old = []
    train_evaluator(shards, tmp_path / "old", config=cfg, args=args, callback=lambda s, r: old.append(r))
    assert len(new) == len(old) == 3
    assert new == old  # every loss part of every step, exactly


def test_a_batch_of_some_maps_is_the_full_batch_without_the_others(shards):
    for maps_as in ("float32", "stored"):
        ds = ShardDataset(shards, MAPS, return_meta=False, maps_as=maps_as)
        full = ds.batch(ORDER)
        for names in ([], ["noise"], ["ssim", "mscc"]):
            part = ds.batch(ORDER, maps=names)
            assert list(part["maps"]) == names
            _same(part, {**full, "maps": {m: full["maps"][m] for m in names}}, f"{maps_as} {names}")
        with pytest.raises(ValueError, match="'hull' not among"):
            ds.batch(ORDER, maps=["hull"])
    flipped = ShardDataset(shards, MAPS, return_meta=False, transform=lambda s: s)
    assert list(flipped.batch(ORDER[:3], maps=["ssim"])["maps"]) == ["ssim"]
