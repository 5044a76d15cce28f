"""FoCus training: metrics, video split, resumable loop, and ``ffmask train focus``."""

from __future__ import annotations

import itertools
import json
import math

import cv2
import numpy as np
import pytest
import torch

import ffmask  # noqa: F401  (installs the torchvision shim before timm)
from ffmask.errors import CheckpointError, FFMaskError
from ffmask.models.focus import FocusConfig, load_focus
from ffmask.models.focus import prepare_images
from ffmask.train.focus import (
    FocusTrainArgs,
    StepBatchSampler,
    jitter_colors,
    jitter_crops,
    parameter_groups,
    random_crop_boxes,
    split_by_video,
    train_focus,
)
from ffmask.train.metrics import accuracy, mean_iou, pixel_f1, pixel_iou, roc_auc

TINY = FocusConfig(backbone="vit_tiny_patch16_224", img_size=64, depth=2, embed_dim=96, maps_per_class=8)
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


# ---------------------------------------------------------------- synthetic forgeries


def blend_faces(n_sources: int = 20, frames: int = 6, size: int = 64, seed: int = 0,
                gain=(1.1, 0.97, 0.9), blur: float = 1.0, grid: float = 20.0):
    """Paired real/fake 'videos' in ShardDataset format, from skimage photos.

    Every item carries its true mask as ``maps["truth"]`` (float32 0/1; zeros for real faces).

    Each source is a window of a photo; its real video holds jittered crops of
    it, its fake video the same crops with an elliptical region replaced by a
    blurred, colour-shifted copy carrying faint alternating-row stripes (an
    interlacing/upsampling artefact that survives horizontal flips), blended
    in with a feathered mask. As in FF++, a fake shares its original's content and
    ``original_id``, so content says nothing about the label: only the
    manipulation does. Returns (items, masks).
    """
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in SOURCES]
    yy, xx = np.mgrid[:size, :size]
    items, masks = [], []
    for s in range(n_sources):
        photo = photos[s % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w) // 2))
        y0, x0 = int(rng.integers(0, h - side - 8)), int(rng.integers(0, w - side - 8))
        (cy, cx), (ry, rx) = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.2, 0.32, 2) * size
        region = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
        alpha = cv2.GaussianBlur(region, (0, 0), 2.0)[..., None]
        lines = (grid * (-1.0) ** yy)[..., None].astype(np.float32)
        for f in range(frames):
            dy, dx = rng.integers(0, 8, 2)
            crop = photo[y0 + dy:y0 + dy + side, x0 + dx:x0 + dx + side]
            real = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
            swapped = cv2.GaussianBlur(real, (0, 0), blur) * np.float32(gain) + lines
            fake = alpha * swapped + (1 - alpha) * real
            for label, img in ((0, real), (1, fake)):
                vid = f"{s:03d}" if label == 0 else f"{s:03d}_swap"
                truth = region > 0.5 if label else np.zeros((size, size), bool)
                items.append({
                    "image": torch.from_numpy(np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1))),
                    "maps": {"truth": torch.from_numpy(truth.astype(np.float32))},
                    "label": torch.tensor(label),
                    "meta": {"video_id": vid, "original_id": f"{s:03d}", "manipulation": "blend" * label,
                             "compression": "raw", "split": "", "frame_index": f},
                })
                masks.append(truth)
    return items, masks


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def faces():
    items, masks = blend_faces()
    return ListDataset(items), masks


# ---------------------------------------------------------------- metrics


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 301):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes ties
        pos, neg = scores[labels == 1], scores[labels == 0]
        brute = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg)])
        assert roc_auc(labels, scores) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, np.nan])
    assert accuracy([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6]) == 0.5


def test_pixel_metrics_match_hand_counts():
    pred = np.zeros((4, 5), bool)
    target = np.zeros((4, 5), bool)
    pred[0:2, 0:3] = True    # 6 pixels
    target[1:3, 1:4] = True  # 6 pixels, 2 shared
    assert pixel_iou(pred, target) == pytest.approx(2 / 10)
    assert pixel_f1(pred, target) == pytest.approx(2 * 2 / 12)
    # background: 20 - 10 = 10 pixels in neither, union of backgrounds 20 - 2 = 18
    assert mean_iou(pred, target) == pytest.approx(0.5 * (2 / 10 + 10 / 18))
    empty = np.zeros((3, 3), bool)
    assert pixel_iou(empty, empty) == 1.0 and pixel_f1(empty, empty) == 1.0
    with pytest.raises(ValueError, match="bool"):
        pixel_iou(pred.astype(np.float32), target)
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_f1(pred, target[:3])


# ---------------------------------------------------------------- data plumbing


def test_split_by_video_keeps_videos_whole():
    metas = [{"video_id": f"{v:03d}_{v + 1:03d}" if v % 2 else f"{v:03d}", "original_id": f"{v - v % 2:03d}"}
             for v in range(30) for _ in range(4)]
    labels = np.array([int(m["video_id"].count("_")) for m in metas])
    labels[5] = -1  # unknown label: unused
    split = split_by_video(labels, metas, val_fraction=0.2, seed=1)
    train_v = {metas[i]["original_id"] for i in split.train}
    val_v = {metas[i]["original_id"] for i in split.val}
    assert train_v and val_v and not train_v & val_v  # a fake and its original stay together
    assert len(val_v) == 3  # round(0.2 * 15 groups)
    assert 5 not in split.train and 5 not in split.val and split.skipped == 1
    assert split.train.size + split.val.size == 119

    # Deterministic and independent of the order of the faces.
    order = np.random.default_rng(0).permutation(len(metas))
    again = split_by_video(labels[order], [metas[i] for i in order], val_fraction=0.2, seed=1)
    assert {metas[order[i]]["original_id"] for i in again.val} == val_v
    assert split_by_video(labels, metas, 0.2, seed=2).fingerprint != split.fingerprint

    # An explicit "val" split wins; "test" faces are never used.
    marked = [dict(m, split="val" if m["original_id"] == "000" else "test" if m["original_id"] == "002" else "train")
              for m in metas]
    split = split_by_video(labels, marked, val_fraction=0.2)
    assert split.how == "meta split"
    assert {marked[i]["original_id"] for i in split.val} == {"000"}
    assert "002" not in {marked[i]["original_id"] for i in split.train}
    assert split_by_video(labels, metas, 0.2, val_max=5).val.size == 5
    with pytest.raises(ValueError, match="no video_id"):
        split_by_video([0, 1], [{"video_id": "a"}, {}], 0.5)


def test_step_batch_sampler_is_a_function_of_the_step():
    full = StepBatchSampler(10, 4, seed=3, start=0, stop=6)
    batches = list(full)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert list(StepBatchSampler(10, 4, seed=3, start=4, stop=6)) == batches[4:]
    assert list(StepBatchSampler(10, 4, seed=4, start=0, stop=6)) != batches


def test_random_crop_boxes_are_a_function_of_seed_and_step():
    boxes = random_crop_boxes(500, 224, 200, 0.6, seed=3, step=7)
    assert boxes.dtype == np.int64 and boxes.shape == (500, 4)
    assert np.array_equal(boxes, random_crop_boxes(500, 224, 200, 0.6, seed=3, step=7))
    assert not np.array_equal(boxes, random_crop_boxes(500, 224, 200, 0.6, seed=3, step=8))
    assert not np.array_equal(boxes, random_crop_boxes(500, 224, 200, 0.6, seed=4, step=7))
    y0, x0, h, w = boxes.T
    # Inside the crop, the crop's aspect kept, the side fraction spread over [0.6, 1].
    assert np.all((y0 >= 0) & (x0 >= 0) & (y0 + h <= 224) & (x0 + w <= 200))
    assert np.all(np.abs(h / 224 - w / 200) <= 1 / 200)
    assert h.min() >= round(0.6 * 224) and h.max() <= 224
    assert h.min() < 0.65 * 224 and h.max() > 0.95 * 224 and np.ptp(y0) > 70 and np.ptp(x0) > 60
    assert np.all(random_crop_boxes(20, 64, 64, 1.0, seed=0, step=1) == [0, 0, 64, 64])
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="min_scale"):
            random_crop_boxes(4, 64, 64, bad, seed=0, step=1)


def test_jitter_crops_move_content_by_their_boxes():
    S, size, n = 200, 100, 6
    # Channel 0 a horizontal ramp (value = column), channel 1 a vertical one: bilinear resizing keeps
    # a ramp a ramp, so each output pixel tells which source position it came from.
    ramp = np.arange(S, dtype=np.uint8)
    images = np.zeros((n, 3, S, S), np.uint8)
    images[:, 0] = ramp[None, None, :]
    images[:, 1] = ramp[None, :, None]
    images[:, 2] = 77
    images = torch.from_numpy(images)

    out = jitter_crops(images, size, 0.6, seed=1, step=5)
    assert out.dtype == torch.float32 and out.shape == (n, 3, size, size)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, jitter_crops(images, size, 0.6, seed=1, step=5))
    assert not torch.equal(out, jitter_crops(images, size, 0.6, seed=1, step=6))
    whole = prepare_images(images, size)
    assert torch.equal(jitter_crops(images, size, 1.0, seed=1, step=5), whole)

    boxes = random_crop_boxes(n, S, S, 0.6, seed=1, step=5)
    centres = np.arange(size) + 0.5
    inner = slice(3, size - 3)  # the antialiasing filter clamps at the borders
    for face, (y0, x0, h, w) in zip(out.numpy() * 255, boxes):
        expect_x = x0 + centres * w / size - 0.5
        expect_y = y0 + centres * h / size - 0.5
        np.testing.assert_allclose(face[0][:, inner], np.broadcast_to(expect_x[inner], (size, size - 6)), atol=0.6)
        np.testing.assert_allclose(face[1][inner, :], np.broadcast_to(expect_y[inner, None], (size - 6, size)), atol=0.6)
        np.testing.assert_allclose(face[2], 77, atol=1e-3)
    # Not the identity: most faces are zoomed in and shifted.
    assert np.mean(np.abs(out.numpy() - whole.numpy())) * 255 > 5
    assert (boxes[:, 2] < S).sum() >= n - 1

    with pytest.raises(ValueError, match="uint8"):
        jitter_crops(images.float(), size, 0.6, seed=1, step=5)
    with pytest.raises(ValueError, match="crop_scale"):
        FocusTrainArgs(crop_scale=0.0)
    with pytest.raises(ValueError, match="crop_scale"):
        FocusTrainArgs(crop_scale=1.2)


# ---------------------------------------------------------------- training


def test_jitter_colors_change_each_face_globally_and_keep_local_contrast():
    """Colour jitter is a pure function of (seed, step), off at strength 0, differs per face and
    per step, keeps a grey face grey (saturation acts on colour only) and keeps a brighter patch
    brighter than its surround (a local forgery's inconsistency survives it)."""
    x = torch.full((6, 3, 32, 32), 0.4)
    x[:, 0] = torch.linspace(0.2, 0.7, 6).view(6, 1, 1)  # coloured faces
    x[:, :, 8:16, 8:16] += 0.2  # a brighter patch
    assert jitter_colors(x, 0.0, seed=0, step=1) is x
    a, b = jitter_colors(x, 0.3, seed=0, step=1), jitter_colors(x, 0.3, seed=0, step=1)
    assert torch.equal(a, b) and not torch.equal(a, jitter_colors(x, 0.3, seed=0, step=2))
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    means = a.mean(dim=(1, 2, 3))
    assert float(means.std()) > 0.01  # each face its own factors
    assert bool((a[:, :, 8:16, 8:16].mean(dim=(1, 2, 3)) > a[:, :, 20:28, 20:28].mean(dim=(1, 2, 3))).all())
    grey = jitter_colors(torch.full((4, 3, 16, 16), 0.5), 0.5, seed=3, step=7)
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-6)
    assert float(grey.std()) > 0.01  # brightness differs between faces
    with pytest.raises(ValueError, match="strength"):
        jitter_colors(x, 1.0, seed=0, step=1)
    with pytest.raises(ValueError, match="color_jitter"):
        FocusTrainArgs(color_jitter=-0.1)


def test_parameter_groups_scale_the_backbones_lr_only():
    from ffmask.models import create_model

    model = create_model("focus_lite0", img_size=64, maps_per_class=4, token_stride=8)
    model.freeze_stages(1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert [len(g["params"]) for g in parameter_groups(model, 1e-3, 1.0)] == [len(trainable)]
    back, rest = parameter_groups(model, 1e-3, 0.1)
    assert back["lr"] == pytest.approx(1e-4) and rest["lr"] == 1e-3
    assert {id(p) for p in back["params"]} | {id(p) for p in rest["params"]} == trainable
    assert not {id(p) for p in back["params"]} & {id(p) for p in rest["params"]}
    assert any(p is model.rgb_branch.net.blocks[2][0].conv_pw.weight for p in back["params"])
    assert any(p is model.head_rgb.proj.weight for p in rest["params"])
    assert any(p is model.rgb_branch.norm.weight for p in rest["params"])  # the token norm is new, not backbone
    assert not any(p is model.rgb_branch.net.conv_stem.weight for p in back["params"])  # frozen
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        FocusTrainArgs(backbone_lr_scale=0)


def test_training_learns_blend_forgeries_and_localises_them(faces, tmp_path):
    dataset, masks = faces
    args = FocusTrainArgs(iters=80, batch_size=32, lr=1e-3, val_every=40, val_fraction=0.25, seed=0, device="cpu",
                          val_mask="truth")
    losses, shares = [], []
    result = train_focus(dataset, tmp_path / "run", config=TINY, args=args,
                         callback=lambda step, rec: (losses.append(rec["total"]), shares.append(rec["rgb_share"])))

    assert result.step == 80 and len(losses) == 80 and result.resumed_from is None
    # Complementary Learning's training noise keeps both modalities in play
    # (Algorithm 1 bounds P(RGB) to about [0.27, 0.73] per token).
    assert 0.2 < np.mean(shares) < 0.8, np.mean(shares)
    # The best checkpoint is the one whose a'_fus ranks the validation masks best.
    assert result.best_metric == "map_auc"
    map_aucs = {h["step"]: h["val"]["map_auc"] for h in result.history}
    assert result.best_score == max(map_aucs.values()) and map_aucs[result.best_step] == result.best_score
    assert all(h["val"]["map_faces"] == 30 and 0 <= h["val"]["rgb_share"] <= 1 for h in result.history)
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10])
    assert result.best_val_auc > 0.75, result.history
    assert (result.n_train, result.n_val) == (180, 60)
    for name in ("last.safetensors", "last.json", "last.optim.safetensors", "best.safetensors", "best.json",
                 "train_log.jsonl"):
        assert (tmp_path / "run" / name).is_file()
    doc = json.loads((tmp_path / "run" / "last.json").read_text())
    assert doc["step"] == 80 and doc["config"]["embed_dim"] == 96 and doc["train"]["lr"] == 1e-3
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [40, 80]
    assert all("rgb_share" in json.loads(line)["losses"] for line in log)

    # The best checkpoint through the annotate API, on the held-out videos.
    labels = np.array([int(dataset[i]["label"]) for i in range(len(dataset))])
    metas = [dataset[i]["meta"] for i in range(len(dataset))]
    val = split_by_video(labels, metas, 0.25, seed=0).val
    images = np.stack([dataset[int(i)]["image"].numpy().transpose(1, 2, 0) for i in val])
    maps, probs = load_focus(tmp_path / "run", device="cpu")(images, labels[val])
    assert roc_auc(labels[val], probs) == pytest.approx(result.best_val_auc, abs=1e-6)
    assert np.all(maps[labels[val] == 0] == 0)
    # Weak supervision only, yet the fused map points at the blended region.
    fake = labels[val] == 1
    truth = np.stack([masks[i] for i in val])[fake]
    assert roc_auc(truth.ravel().astype(int), maps[fake].ravel()) > 0.75


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crop_scale", [1.0, 0.7])
def test_resume_repeats_the_uninterrupted_run(faces, tmp_path, crop_scale):
    dataset, _ = faces
    small = torch.utils.data.Subset(dataset, range(60))
    cfg = FocusConfig(backbone="vit_tiny_patch16_224", img_size=64, depth=1, embed_dim=96, maps_per_class=4)
    args = FocusTrainArgs(iters=6, batch_size=8, lr=1e-3, val_every=3, save_every=2, val_fraction=0.2,
                          crop_scale=crop_scale, device="cpu")
    index = ([int(dataset[i]["label"]) for i in range(60)], [dataset[i]["meta"] for i in range(60)])

    straight = {}
    train_focus(small, tmp_path / "a", config=cfg, args=args, index=index,
                callback=lambda s, rec: straight.update({s: rec["total"]}))

    def crash_at_5(step, rec):
        if step == 5:
            raise _Crash

    with pytest.raises(_Crash):
        train_focus(small, tmp_path / "b", config=cfg, args=args, index=index, callback=crash_at_5)
    assert json.loads((tmp_path / "b" / "last.json").read_text())["step"] == 4

    resumed = {}
    result = train_focus(small, tmp_path / "b", config=cfg, args=args, index=index,
                         callback=lambda s, rec: resumed.update({s: rec["total"]}))
    assert result.resumed_from == 4 and sorted(resumed) == [5, 6]
    assert resumed[5] == straight[5] and resumed[6] == straight[6]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    # A finished run is not trained again.
    calls = []
    done = train_focus(small, tmp_path / "b", config=cfg, args=args, index=index, callback=lambda s, r: calls.append(s))
    assert calls == [] and done.step == 6 and done.resumed_from == 6

    # Another configuration in the same directory is refused, in one line.
    for other_cfg, other_args, what in [
        (cfg, FocusTrainArgs(**{**args.to_dict(), "lr": 5e-4}), "lr"),
        (cfg, FocusTrainArgs(**{**args.to_dict(), "crop_scale": 0.5}), "crop_scale"),
        (FocusConfig(**{**cfg.to_dict(), "embed_dim": 192, "num_heads": None}), args, "embed_dim"),
    ]:
        with pytest.raises(CheckpointError, match=what) as err:
            train_focus(small, tmp_path / "b", config=other_cfg, args=other_args, index=index)
        assert "\n" not in str(err.value)

    # A checkpoint written before crop jitter existed (no "crop_scale" in its description) ran
    # without it: it resumes with the default and is refused with jitter on.
    doc = json.loads((tmp_path / "b" / "last.json").read_text())
    del doc["train"]["crop_scale"]
    (tmp_path / "b" / "last.json").write_text(json.dumps(doc))
    if crop_scale == 1.0:
        assert train_focus(small, tmp_path / "b", config=cfg, args=args, index=index).resumed_from == 6
    else:
        with pytest.raises(CheckpointError, match="crop_scale: checkpoint 1.0, now 0.7"):
            train_focus(small, tmp_path / "b", config=cfg, args=args, index=index)


def test_training_rejects_single_class_data(faces, tmp_path):
    dataset, _ = faces
    reals = torch.utils.data.Subset(dataset, [i for i in range(len(dataset)) if int(dataset[i]["label"]) == 0])
    with pytest.raises(FFMaskError, match="real and fake"):
        train_focus(reals, tmp_path, config=TINY, args=FocusTrainArgs(iters=1, device="cpu"))
    with pytest.raises(ValueError, match="batch_size"):
        FocusTrainArgs(batch_size=0)


def test_one_group_of_videos_holds_out_nothing_and_says_so(faces, tmp_path, caplog):
    # every face from one original (its real video and its fake): holding that group out would leave no training
    dataset, _ = faces
    one = [i for i in range(len(dataset)) if dataset[i]["meta"]["original_id"] == "000"]
    labels = np.array([int(dataset[i]["label"]) for i in one])
    metas = [dataset[i]["meta"] for i in one]
    split = split_by_video(labels, metas, 0.25, 0)
    assert split.val.size == 0 and split.train.size == len(one)
    assert "nothing held out: all %d usable faces are one group of videos" % len(one) in split.how
    assert "nothing held out" not in split_by_video(labels, metas, 0.0, 0).how  # none asked for, none to explain
    # no usable face at all is not "one group": the split says nothing of it (training refuses such data)
    assert "one group" not in split_by_video(np.full(len(one), -1), metas, 0.25, 0).how
    with caplog.at_level("WARNING", logger="ffmask.train"):
        train_focus(torch.utils.data.Subset(dataset, one), tmp_path / "run", config=TINY,
                    args=FocusTrainArgs(iters=1, batch_size=4, val_fraction=0.25, device="cpu"))
    assert any("no validation faces" in r.getMessage() and "one group of videos" in r.getMessage()
               for r in caplog.records)
    assert (tmp_path / "run" / "last.json").is_file() and not (tmp_path / "run" / "best.json").exists()


# ---------------------------------------------------------------- CLI on real shards


def _write_shard(path, dataset, indices):
    """A shard of ``dataset[indices]`` (64 px faces, no maps), as ``ffmask annotate`` would write it."""
    from ffmask.shards.writer import FaceRecord, ShardWriter

    with ShardWriter(path, size=64, maps={}, config={"test": True}) as writer:
        for i in indices:
            item = dataset[i]
            m = item["meta"]
            writer.append(FaceRecord(
                image=item["image"].numpy().transpose(1, 2, 0), maps={}, label=int(item["label"]),
                video_id=m["video_id"], original_id=m["original_id"], manipulation=m["manipulation"],
                compression=m["compression"], split=m["split"], frame_index=m["frame_index"],
                box=np.array([0, 0, 64, 64]),
            ))


def test_cli_trains_from_shards_and_refuses_other_settings(faces, tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    dataset, _ = faces
    _write_shard(tmp_path / "shards" / "a.h5", dataset, range(0, 120))
    _write_shard(tmp_path / "shards" / "b.h5", dataset, range(120, 240))
    common = ["train", "focus", str(tmp_path / "shards"), "--out", str(tmp_path / "ckpt"),
              "--backbone", "vit_tiny_patch16_224", "--depth", "1", "--embed-dim", "96", "--img-size", "64",
              "--batch-size", "4",
              "--val-every", "2", "--workers", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, common + ["--iters", "2", "--crop-scale", "0.8"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "best val AUC" in result.output and "2 / 2" in result.output
    doc = json.loads((tmp_path / "ckpt" / "last.json").read_text())
    assert doc["step"] == 2 and doc["data"]["n_train"] + doc["data"]["n_val"] == 240
    assert doc["train"]["crop_scale"] == 0.8
    assert (doc["config"]["depth"], doc["config"]["embed_dim"]) == (1, 96)
    assert "tokens won" in result.output

    result = CliRunner().invoke(app, common + ["--iters", "2"])  # crop jitter off: another run
    assert isinstance(result.exception, CheckpointError) and "crop_scale" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "focus", str(tmp_path / "shards"), "--out", str(tmp_path / "c2"),
                                      "--crop-scale", "0"])
    assert isinstance(result.exception, FFMaskError) and "crop_scale must be in (0, 1]" in str(result.exception)

    result = CliRunner().invoke(app, common + ["--iters", "3", "--crop-scale", "0.8"])
    assert isinstance(result.exception, CheckpointError) and "iters" in str(result.exception)


def test_cli_passes_the_local_cnn_options(faces, tmp_path):
    """--token-stride, --cnn-padding, --color-jitter and --backbone-lr-scale reach the stored run."""
    from typer.testing import CliRunner

    from ffmask.cli import app

    dataset, _ = faces
    _write_shard(tmp_path / "shards" / "a.h5", dataset, range(0, 60))
    result = CliRunner().invoke(app, [
        "train", "focus", str(tmp_path / "shards"), "--out", str(tmp_path / "ckpt"), "--backbone",
        "tf_efficientnet_lite0", "--token-stride", "8", "--cnn-padding", "reflect", "--img-size", "64",
        "--color-jitter", "0.2", "--backbone-lr-scale", "0.1", "--lr", "1e-3", "--iters", "1", "--batch-size", "4",
        "--workers", "0", "--device", "cpu", "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((tmp_path / "ckpt" / "last.json").read_text())
    assert (doc["config"]["token_stride"], doc["config"]["cnn_padding"]) == (8, "reflect")
    assert (doc["train"]["color_jitter"], doc["train"]["backbone_lr_scale"]) == (0.2, 0.1)
    assert load_focus(tmp_path / "ckpt", device="cpu").grid_size == 8
    result = CliRunner().invoke(app, ["train", "focus", str(tmp_path / "shards"), "--out", str(tmp_path / "c2"),
                                      "--cnn-padding", "wrap", "--backbone", "tf_efficientnet_lite0"])
    assert isinstance(result.exception, FFMaskError) and "cnn_padding must be one of" in str(result.exception)
