"""FoCus training on cached frozen-stage features (``--cache-features``) and the dense loss variant (``--loss dense``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import ffmask  # noqa: F401  (installs the torchvision shim before timm)
from ffmask.errors import FFMaskError
from ffmask.models import create_model
from ffmask.models.focus import FocusConfig, FocusOutput, prepare_images
from ffmask.train.focus import FocusTrainArgs, train_focus
from ffmask.train.focus_cache import FeatureCache, frozen_fingerprint
from ffmask.train.losses import dense_mil_loss, focus_dense_loss, focus_loss
from test_focus_train import ListDataset, blend_faces

LITE8 = FocusConfig(backbone="tf_efficientnet_lite0", img_size=64, token_stride=8, cnn_padding="reflect",
                    maps_per_class=4)


@pytest.fixture(scope="module")
def small():
    items, _ = blend_faces(n_sources=6, frames=4)
    return ListDataset(items), ([int(it["label"]) for it in items], [it["meta"] for it in items])


def _losses(dataset, index, out_dir, **kw):
    record = {}
    args = FocusTrainArgs(**{"iters": 5, "batch_size": 8, "lr": 1e-3, "val_every": 5, "val_fraction": 0.2,
                             "device": "cpu", **kw})
    result = train_focus(dataset, out_dir, config=LITE8, args=args, index=index,
                         callback=lambda s, r: record.update({s: r["total"]}))
    return record, result


@pytest.mark.parametrize("frozen, loss", [(3, "paper"), (2, "dense")])
def test_cached_training_takes_the_uncached_steps(small, tmp_path, frozen, loss):
    """Every step's loss (batches, flips, Gumbel noise, updates) equals the uncached run's:
    all three stages frozen (only the heads train), or two (the third stage trains on cached features)."""
    dataset, index = small
    plain, _ = _losses(dataset, index, tmp_path / "plain", frozen_stages=frozen, loss=loss)
    cached, result = _losses(dataset, index, tmp_path / "cached", frozen_stages=frozen, loss=loss,
                             cache_features=True)
    assert sorted(cached) == [1, 2, 3, 4, 5] and len(set(plain.values())) == 5  # the loss moves
    for step in plain:
        assert cached[step] == pytest.approx(plain[step], rel=1e-5, abs=1e-6)
    assert math.isfinite(result.last_val["auc"])
    doc = json.loads((tmp_path / "cached" / "last.json").read_text())
    assert doc["train"]["cache_features"] is True and doc["train"]["loss"] == loss
    assert (tmp_path / "cached" / "features.safetensors").is_file()
    # Same trajectory, so the uncached run resumes the cached one (finished: nothing left to do).
    calls = []
    train_focus(dataset, tmp_path / "cached", config=LITE8, index=index, callback=lambda s, r: calls.append(s),
                args=FocusTrainArgs(iters=5, batch_size=8, lr=1e-3, val_every=5, val_fraction=0.2, device="cpu",
                                    frozen_stages=frozen, loss=loss))
    assert calls == []


def test_stale_features_are_caught(small):
    """Features of other frozen weights give other outputs, and the cache refuses such a model."""
    dataset, _ = small
    torch.manual_seed(0)
    model = create_model("focus", **LITE8.to_dict())
    model.freeze_stages(3)
    cache = FeatureCache.build(model, dataset, np.arange(8), flips=True, batch_size=4)
    assert cache.rgb.shape == (8, 2, 40, 8, 8) and cache.flips
    cache.check(model)  # fresh: accepted

    x = prepare_images(torch.stack([dataset[i]["image"] for i in range(8)]), 64)
    model.eval()
    flip = torch.tensor([False, True] * 4)
    with torch.no_grad():
        direct = model(torch.where(flip[:, None, None, None], x.flip(-1), x))
        from_cache = model.forward_features(*cache.take(torch.arange(8), flip))
        assert torch.allclose(from_cache.a_fus_fake, direct.a_fus_fake, atol=1e-6)
        assert torch.allclose(from_cache.logits_fus, direct.logits_fus, atol=1e-5)

        # Change one frozen weight: the cached features no longer describe this model.
        model.sobel_branch.net.blocks[1][0].conv_pwl.weight.mul_(1.5)
        changed = model(torch.where(flip[:, None, None, None], x.flip(-1), x))
        stale = model.forward_features(*cache.take(torch.arange(8), flip))
    assert (stale.logits_sobel - changed.logits_sobel).abs().max() > 1e-3
    with pytest.raises(FFMaskError, match="stale") as err:
        cache.check(model)
    assert "\n" not in str(err.value)
    # The fingerprint also covers BatchNorm statistics.
    model2 = create_model("focus", **LITE8.to_dict())
    model2.load_state_dict(model.state_dict())
    model2.freeze_stages(3)
    before = frozen_fingerprint(model2)
    model2.rgb_branch.net.bn1.running_mean.add_(0.1)
    assert frozen_fingerprint(model2) != before


def test_cache_refuses_what_it_cannot_cache(small, tmp_path):
    with pytest.raises(ValueError, match="frozen_stages >= 1"):
        FocusTrainArgs(cache_features=True)
    with pytest.raises(ValueError, match="crop_scale < 1 or color_jitter"):
        FocusTrainArgs(cache_features=True, frozen_stages=2, crop_scale=0.8)
    with pytest.raises(ValueError, match="crop_scale < 1 or color_jitter"):
        FocusTrainArgs(cache_features=True, frozen_stages=2, color_jitter=0.1)
    with pytest.raises(ValueError, match="loss must be one of paper, dense"):
        FocusTrainArgs(loss="mil")
    with pytest.raises(ValueError, match="dense_top"):
        FocusTrainArgs(dense_top=0.0)
    dataset, index = small
    vit = FocusConfig(backbone="vit_tiny_patch16_224", img_size=32, depth=2, embed_dim=96, maps_per_class=4)
    with pytest.raises(ValueError, match="CNN branches"):
        train_focus(dataset, tmp_path / "vit", config=vit, index=index,
                    args=FocusTrainArgs(iters=1, batch_size=4, device="cpu", frozen_stages=1, cache_features=True))
    model = create_model("focus", **LITE8.to_dict())
    with pytest.raises(ValueError, match="frozen_stages >= 1"):
        model.frozen_features(torch.zeros(1, 3, 64, 64))


def test_cli_refuses_a_cache_without_frozen_stages(tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    result = CliRunner().invoke(app, ["train", "focus", str(tmp_path), "--out", str(tmp_path / "c"),
                                      "--backbone", "tf_efficientnet_lite0", "--cache-features"])
    assert isinstance(result.exception, FFMaskError) and "frozen_stages >= 1" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "focus", str(tmp_path), "--out", str(tmp_path / "c"),
                                      "--loss", "lse"])
    assert isinstance(result.exception, FFMaskError) and "loss must be one of" in str(result.exception)


def test_cnn_branch_splits_into_prefix_and_suffix():
    torch.manual_seed(0)
    model = create_model("focus", **LITE8.to_dict()).eval()
    branch = model.rgb_branch
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        whole = branch(x)
        for k in range(len(branch.net.blocks) + 1):
            assert torch.equal(branch.suffix(branch.prefix(x, k), k), whole)
    assert branch.prefix(x, 2).shape == (2, 24, 16, 16)  # Lite0 after its stride-4 stage


# ---------------------------------------------------------------- dense loss


def _out(fake_maps: torch.Tensor) -> FocusOutput:
    n, h, w = fake_maps.shape
    maps = torch.stack([torch.zeros_like(fake_maps), fake_maps], dim=1)
    z = torch.zeros(n, 2)
    grid = torch.zeros(n, h, w)
    return FocusOutput(z, z, z, grid, grid, grid, grid, torch.ones(n, h * w), torch.ones(n, h * w), maps, maps)


def test_dense_mil_loss_hand_values_and_gradients():
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731  BCE(logit v, target 0); target 1: softplus(-v)
    maps = torch.zeros(2, 4, 5)
    maps[0, 1, 2] = 3.0  # a real face with one hot token
    maps[1, :, :] = -2.0
    maps[1, 0, :2] = 4.0  # a fake face whose top-2 tokens (10 % of 20) are hot
    labels = torch.tensor([0, 1])
    real = (19 * softplus(0.0) + softplus(3.0)) / 20
    fake = softplus(-4.0)
    assert float(dense_mil_loss(maps, labels, 0.1)) == pytest.approx((real + fake) / 2, rel=1e-6)
    # top 50 %: the mean of 2 hot and 8 cold tokens must look fake
    assert float(dense_mil_loss(maps[1:], labels[1:], 0.5)) == pytest.approx(softplus(-(2 * 4 - 8 * 2) / 10), rel=1e-6)

    # Gradient: every token of the real face, only the top tokens of the fake face.
    m = maps.clone().requires_grad_(True)
    dense_mil_loss(m, labels, 0.1).backward()
    assert (m.grad[0] > 0).all()
    assert (m.grad[1, 0, :2] < 0).all() and (m.grad[1].flatten()[2:] == 0).all()

    # The paper's loss reaches one token per map on a real face; the dense one adds all of them.
    out = _out(maps)
    total, parts = focus_dense_loss(out, labels)
    base, _ = focus_loss(out, labels)
    assert float(parts["dense"]) == pytest.approx(2 * (real + fake) / 2, rel=1e-6)
    assert float(total) == pytest.approx(float(base) + float(parts["dense"]), rel=1e-6)
    with pytest.raises(ValueError, match="top_fraction"):
        dense_mil_loss(maps, labels, 1.5)


def test_cache_file_is_reused_only_for_the_same_frozen_weights_and_faces(small, tmp_path):
    from ffmask.train.focus_cache import load_or_build

    dataset, _ = small
    torch.manual_seed(0)
    model = create_model("focus", **LITE8.to_dict())
    model.freeze_stages(3)
    path = tmp_path / "features.safetensors"
    first, built = load_or_build(model, dataset, np.arange(6), path, flips=False, batch_size=4)
    assert built and path.is_file() and first.rgb.shape == (6, 1, 40, 8, 8)
    again, built = load_or_build(model, dataset, np.arange(6), path, flips=False)
    assert not built and torch.equal(again.rgb, first.rgb) and torch.equal(again.sobel, first.sobel)
    # Other faces, mirrors wanted, or other frozen weights: computed anew, never read stale.
    for indices, flips in ((np.arange(1, 7), False), (np.arange(6), True)):
        other, built = load_or_build(model, dataset, indices, path, flips=flips)
        assert built and other.flips == flips
    with torch.no_grad():
        model.rgb_branch.net.conv_stem.weight.mul_(-1.0)
    fresh, built = load_or_build(model, dataset, np.arange(6), path, flips=False)
    assert built and not torch.equal(fresh.rgb, first.rgb) and torch.equal(fresh.sobel, first.sobel)
    fresh.check(model)
    path.write_bytes(b"garbage")  # a broken file is rebuilt, not an error
    assert load_or_build(model, dataset, np.arange(6), path, flips=False)[1]
