"""Evaluators: the efb4-fpn model, its map targets and loss, the training loop, ``ffmask evaluate``."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ffmask  # noqa: F401  (the torchvision shim before timm)
from _evaluator_shards import write_shards
from ffmask.errors import CheckpointError, FFMaskError
from ffmask.metrics import roc_auc
from ffmask.models import create_model
from ffmask.models.evaluators import create_evaluator, evaluator_entry, list_evaluators, map_targets
from ffmask.train.evaluator import BalancedStepSampler, EvaluatorTrainArgs, flip_batch, parse_map_spec, train_evaluator

LITE = {"backbone": "tf_efficientnet_lite0", "img_size": 64, "map_size": 16, "fpn_channels": 16}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    (d / "train").mkdir()
    (d / "test").mkdir()
    # tiny forgery shards: photos as identities, a blended ellipse as the forgery, its true mask as 'official'
    train = write_shards(d / "train", PHOTOS[:6], frames=6, seed=0, noise=False)
    test = write_shards(d / "test", PHOTOS[6:], frames=6, seed=1, noise=False)  # held-out photos
    return {"train": train, "test": test, "dir": d}


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("backbone, channels", [("tf_efficientnet_lite0", [16, 24, 40, 112, 320]),
                                                 ("efficientnet_b4", [24, 32, 56, 160, 448])])
def test_efb4_fpn_shapes_and_gradients(backbone, channels):
    torch.manual_seed(0)
    model = create_evaluator("efb4-fpn", backbone=backbone, img_size=64, map_size=40, fpn_channels=8)
    assert model.backbone.feature_info.channels() == channels
    assert model.fpn_in == channels[-3:]
    x = torch.rand(3, 3, 64, 64)
    out = model(x)
    assert out["logit"].shape == (3, 2) and out["map"].shape == (3, 1, 40, 40)
    entry = evaluator_entry("efb4-fpn")
    labels = torch.tensor([0, 1, 1])
    target = map_targets(torch.rand(3, 64, 64), labels, 40)
    loss, parts = entry.loss(model, out, {"label": labels, "target": target}, **entry.loss_kwargs)
    assert entry.loss_kwargs == {"map_weight": 0.1}
    assert float(parts["total"]) == pytest.approx(float(parts["cls"]) + 0.1 * float(parts["map"]), rel=1e-5)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    for name in ("backbone.conv_stem.weight", "lateral.0.weight", "map_head.weight", "classifier.weight"):
        assert float(grads[name].abs().sum()) > 0, name
    # Without a map target the map head is not trained at all.
    model.zero_grad(set_to_none=True)
    loss, parts = entry.loss(model, model(x), {"label": labels}, **entry.loss_kwargs)
    loss.backward()
    assert "map" not in parts and model.map_head.weight.grad is None


def test_registry_and_config_errors():
    assert "efb4-fpn" in list_evaluators()
    with pytest.raises(ValueError, match="unknown evaluator"):
        create_evaluator("nope")
    with pytest.raises(ValueError, match="unknown efb4-fpn config keys: colour"):
        create_evaluator("efb4-fpn", colour=1)
    with pytest.raises(ValueError, match="not a timm features_only model"):
        create_evaluator("efb4-fpn", backbone="no_such_net")
    with pytest.raises(ValueError, match="fpn_levels 6 exceeds"):
        create_evaluator("efb4-fpn", backbone="tf_efficientnet_lite0", fpn_levels=6)
    # Evaluators are models too: checkpoints rebuild them from JSON alone.
    assert type(create_model("efb4-fpn", **LITE)).__name__ == "Efb4Fpn"


# Small configs of every registered evaluator (CPU-sized backbones).
TINY_ALL = {
    "efb4-fpn": LITE,
    "rfm": {"backbone": "tf_efficientnet_lite0", "img_size": 64},
    "gs": {"backbone": "tf_efficientnet_lite0", "img_size": 64, "domains": ["A", "B"], "embed_dim": 8},
    "msccnet": {"backbone": "resnet10t", "img_size": 64, "channels": 32},
    "two-stream": {"backbone": "resnet10t", "img_size": 64, "width": 16},
}


@pytest.mark.parametrize("name", sorted(TINY_ALL))
def test_every_evaluator_checks_config_images_and_labels_alike(name):
    builtin = [n for n in list_evaluators() if evaluator_entry(n).factory.__module__.startswith("ffmask.")]
    assert sorted(TINY_ALL) == builtin  # a new evaluator gets a row here (tests register toy ones)
    torch.manual_seed(0)
    model = create_evaluator(name, **TINY_ALL[name])
    # The config goes to JSON and back to the same config (what a checkpoint stores).
    doc = json.loads(json.dumps(model.config.to_dict()))
    assert type(model.config).from_dict(doc) == model.config and "model_name" not in doc
    with pytest.raises(ValueError, match=f"unknown {name} config keys: colour, zz$"):
        create_evaluator(name, zz=1, colour=2, **TINY_ALL[name])
    with pytest.raises(ValueError, match="backbone must be a timm model name, got ''"):
        create_evaluator(name, **dict(TINY_ALL[name], backbone=""))
    with pytest.raises(ValueError, match="img_size must be an integer >= 32, got True"):
        create_evaluator(name, **dict(TINY_ALL[name], img_size=True))
    with pytest.raises(ValueError, match="not a timm features_only model"):
        create_evaluator(name, **dict(TINY_ALL[name], backbone="no_such_net"))
    with pytest.raises(ValueError, match=r"expected images \(N, 3, H, W\), got \(2, 1, 64, 64\)"):
        model(torch.rand(2, 1, 64, 64))
    # The input is normalised by the backbone's statistics (tf_efficientnet_lite0: 0.5/0.5, resnet: ImageNet's).
    expected = (0.5,) * 3 if "lite0" in TINY_ALL[name]["backbone"] else (0.485, 0.456, 0.406)
    assert model.mean.flatten().tolist() == pytest.approx(expected)
    assert "mean" not in model.state_dict()  # not stored: checkpoints hold weights only
    if name != "gs":  # gs checks labels with its domains
        out = model(torch.rand(2, 3, 64, 64))
        batch = {"label": torch.tensor([0, 1, 1]), "noise": torch.rand(2, 3, 64, 64)}
        with pytest.raises(ValueError, match=r"labels must be \(N,\) = \(2,\), got \(3,\)"):
            evaluator_entry(name).loss(model, out, batch)


def test_map_targets_zero_for_reals_and_resized_for_fakes():
    mask = torch.zeros(64, 64)
    mask[16:48, 8:40] = 1.0                       # a quarter of the face
    maps = torch.stack([mask, mask, mask * 0.5])
    t = map_targets(maps, torch.tensor([1, 0, 1]), 16)
    assert t.shape == (3, 1, 16, 16) and t.dtype == torch.float32
    assert float(t[1].abs().sum()) == 0.0                       # a real face: zeros, whatever its map holds
    # Antialiased bilinear, as PIL resizes (an independent implementation of the triangle filter).
    from PIL import Image

    reference = np.asarray(Image.fromarray(mask.numpy(), mode="F").resize((16, 16), Image.BILINEAR))
    np.testing.assert_allclose(t[0, 0].numpy(), reference, atol=1e-4)
    assert float(t[0].mean()) == pytest.approx(float(mask.mean()), abs=0.01)
    np.testing.assert_allclose(t[2].numpy(), 0.5 * t[0].numpy(), atol=1e-6)
    # The loss on a real face is BCE against zeros: -log(1 - sigmoid(x)).
    entry = evaluator_entry("efb4-fpn")
    pred = torch.randn(1, 1, 16, 16)
    out = {"logit": torch.zeros(1, 2), "map": pred}
    _, parts = entry.loss(None, out, {"label": torch.tensor([0]), "target": map_targets(maps[:1], torch.tensor([0]), 16)})
    assert float(parts["map"]) == pytest.approx(float(-torch.log(1 - torch.sigmoid(pred)).mean()), rel=1e-5)
    # Nothing is ignored silently.
    with pytest.raises(ValueError, match="labels 0 \\(real\\) or 1"):
        map_targets(maps, torch.tensor([1, -1, 0]), 16)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        map_targets(maps * 3, torch.tensor([1, 0, 1]), 16)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        map_targets(torch.full((1, 8, 8), math.nan), torch.tensor([1]), 4)
    with pytest.raises(ValueError, match="does not match"):
        entry.loss(None, out, {"label": torch.tensor([1]), "target": torch.zeros(1, 1, 8, 8)})


def test_flip_moves_face_and_map_together():
    images = torch.arange(8 * 3 * 4 * 6, dtype=torch.float32).view(8, 3, 4, 6)
    targets = torch.arange(8 * 5 * 5, dtype=torch.float32).view(8, 1, 5, 5)
    fi, ft = flip_batch(images, targets, seed=3, step=7)
    flipped = [bool(torch.equal(fi[i], images[i].flip(-1))) for i in range(8)]
    assert [bool(torch.equal(ft[i], targets[i].flip(-1))) for i in range(8)] == flipped
    assert [not torch.equal(fi[i], images[i]) for i in range(8)] == flipped
    assert 0 < sum(flipped) < 8
    fi2, _ = flip_batch(images, targets, seed=3, step=7)
    assert torch.equal(fi, fi2)


def test_balanced_sampler_is_balanced_and_a_function_of_the_step():
    real, fake = np.arange(5), np.arange(5, 25)
    a = BalancedStepSampler(real, fake, 7, seed=1, start=0, stop=12)
    batches = list(a)
    assert len(batches) == 12
    for b in batches:
        assert sum(i < 5 for i in b) == 3 and sum(i >= 5 for i in b) == 4
    resumed = list(BalancedStepSampler(real, fake, 7, seed=1, start=8, stop=12))
    assert resumed == batches[8:]
    with pytest.raises(FFMaskError, match="real and fake"):
        BalancedStepSampler(real[:0], fake, 4, 0, 0, 1)


def test_map_spec():
    assert parse_map_spec("none") == (None, False)
    assert parse_map_spec("hull") == ("hull", False)
    assert parse_map_spec("mean:official") == ("official", True)
    with pytest.raises(ValueError):
        parse_map_spec("mean:")
    with pytest.raises(ValueError, match="map_mean"):
        EvaluatorTrainArgs(map=None, map_mean=True)


# ---------------------------------------------------------------- training and evaluation


@pytest.mark.slow
def test_training_learns_and_generalises_to_held_out_photos(shards, tmp_path):
    from ffmask.evaluate import evaluate_checkpoint

    losses = []
    args = EvaluatorTrainArgs(map="official", iters=20, batch_size=16, lr=1e-3, val_every=10, seed=0,
                              device="cpu", pretrained="lite0")
    result = train_evaluator(shards["train"], tmp_path / "run", config=LITE, args=args, val_shards=shards["test"],
                             callback=lambda step, rec: losses.append(rec))
    assert result.step == 20 and result.n_train == 72
    total = [r["total"] for r in losses]
    assert np.mean(total[-10:]) < 0.7 * np.mean(total[:10])
    assert np.mean([r["map"] for r in losses[-10:]]) < np.mean([r["map"] for r in losses[:10]])
    for name in ("last.safetensors", "last.json", "last.optim.safetensors", "train_log.jsonl"):
        assert (tmp_path / "run" / name).is_file()

    ev = evaluate_checkpoint(tmp_path / "run" / "last.json", shards["test"], against=["official"], device="cpu")
    labels = ev.table["label"]
    auc = roc_auc(labels, ev.score)
    print(f"held-out frame AUC {auc:.3f}, map AUC {roc_auc(ev.targets['official'][labels == 1].ravel() > 0.5, ev.pred_map[labels == 1].ravel()):.3f}")
    assert labels.size == 24 and auc > 0.7
    assert ev.metrics["groups"]["all"]["frame"]["auc"] == pytest.approx(roc_auc(labels, ev.score))
    # The predicted map is high inside the true forgery region of held-out fakes.
    fakes = labels == 1
    assert roc_auc(ev.targets["official"][fakes].ravel() > 0.5, ev.pred_map[fakes].ravel()) > 0.7

    # Rerun: already complete, nothing retrained; other settings are refused.
    again = train_evaluator(shards["train"], tmp_path / "run", config=LITE, args=args, val_shards=shards["test"])
    assert again.resumed_from == 20 and again.step == 20
    other = EvaluatorTrainArgs(map="ssim", iters=20, batch_size=16, lr=1e-3, seed=0, device="cpu", pretrained="lite0")
    with pytest.raises(CheckpointError, match="map: checkpoint 'official', now 'ssim'"):
        train_evaluator(shards["train"], tmp_path / "run", config=LITE, args=other)


class _Crash(Exception):
    pass


def test_resume_repeats_the_uninterrupted_run(shards, tmp_path):
    cfg = dict(LITE, img_size=32)
    args = EvaluatorTrainArgs(map="official", map_mean=True, iters=4, batch_size=4,
                              val_every=0, save_every=2, seed=2, device="cpu")
    straight = {}
    train_evaluator(shards["train"][:2], tmp_path / "a", config=cfg, args=args,
                    callback=lambda s, r: straight.update({s: r["total"]}))

    def crash_at_3(step, rec):
        if step == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train_evaluator(shards["train"][:2], tmp_path / "b", config=cfg, args=args, callback=crash_at_3)
    assert json.loads((tmp_path / "b" / "last.json").read_text())["step"] == 2
    resumed = {}
    result = train_evaluator(shards["train"][:2], tmp_path / "b", config=cfg, args=args,
                             callback=lambda s, r: resumed.update({s: r["total"]}))
    assert result.resumed_from == 2 and sorted(resumed) == [3, 4]
    for s in (3, 4):
        assert resumed[s] == pytest.approx(straight[s], rel=1e-5)


def test_evaluate_refuses_unsafe_and_mismatched_checkpoints(shards, tmp_path):
    from ffmask.evaluate import evaluate_checkpoint, load_evaluator_checkpoint
    from ffmask.models.checkpoint import save_checkpoint

    model = create_evaluator("efb4-fpn", **LITE)
    save_checkpoint(tmp_path / "ok", model, model_name="efb4-fpn", config=model.config.to_dict())
    loaded, doc = load_evaluator_checkpoint(tmp_path / "ok.json")
    assert doc["model"] == "efb4-fpn"

    # A torch file that only a full unpickler could read.
    bad = tmp_path / "evil"
    (tmp_path / "evil.json").write_text((tmp_path / "ok.json").read_text())
    with open(tmp_path / "evil.safetensors", "wb") as fh:
        pickle.dump({"w": torch.zeros(1), "obj": EvaluatorTrainArgs()}, fh)
    with pytest.raises(CheckpointError, match="refusing|neither a safetensors"):
        evaluate_checkpoint(bad, shards["test"])
    # A weights-only torch file is fine.
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    (tmp_path / "plain.json").write_text((tmp_path / "ok.json").read_text())
    load_evaluator_checkpoint(tmp_path / "plain.pt")

    # A config that does not rebuild these weights.
    doc = json.loads((tmp_path / "ok.json").read_text())
    doc["config"]["fpn_channels"] = 32
    (tmp_path / "wide.json").write_text(json.dumps(doc))
    (tmp_path / "wide.safetensors").write_bytes((tmp_path / "ok.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match its config"):
        evaluate_checkpoint(tmp_path / "wide", shards["test"])
    doc["config"] = {"backbone": "tf_efficientnet_lite0", "colour": 3}
    (tmp_path / "odd.json").write_text(json.dumps(doc))
    (tmp_path / "odd.safetensors").write_bytes((tmp_path / "ok.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="cannot build model"):
        evaluate_checkpoint(tmp_path / "odd", shards["test"])
    # Not an evaluator.
    doc["model"], doc["config"] = "focus", {}
    (tmp_path / "focus.json").write_text(json.dumps(doc))
    (tmp_path / "focus.safetensors").write_bytes((tmp_path / "ok.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="not an evaluator"):
        evaluate_checkpoint(tmp_path / "focus", shards["test"])


def test_cli_train_and_evaluate(shards, tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    train_dir = str(shards["dir"] / "train")
    common = ["train", "evaluator", "--map", "official", "--train", train_dir, "--val", str(shards["test"][0]),
              "--out", str(tmp_path / "ck"), "--backbone", "tf_efficientnet_lite0", "--img-size", "32",
              "--map-size", "8", "--batch-size", "4", "--val-every", "2", "--workers", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, common + ["--iters", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "2 / 2" in result.output and "best val AUC" in result.output
    result = CliRunner().invoke(app, common + ["--iters", "3"])
    assert result.exit_code != 0 and "different run" in str(result.exception)

    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "ck"), "--shards", str(shards["dir"] / "test"),
                                      "--out", str(report), "--against", "official,ssim", "--workers", "0",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["groups"]) >= {"all", "fakes", "compression=c23", "manipulation=Blend"}
    assert set(metrics["groups"]["all"]["pixel"]) == {"official", "ssim"}
    for name in ("metrics.md", "roc.png", "contact_sheet.png"):
        assert (report / name).is_file()
    assert "| all |" in (report / "metrics.md").read_text()

    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nothing"), "--shards", str(shards["dir"] / "test"),
                                      "--out", str(report)])
    assert result.exit_code != 0 and isinstance(result.exception, CheckpointError)
