"""The evaluator framework's extension points, exercised by a toy evaluator registered here.

The toy takes the extra batch fields ``noise`` and ``domain``, augments its
batches, derives a config key from the training data, trains with SGD +
poly and predicts no map; the training loop, prediction, evaluation and the
CLI must serve it without knowing its name. efb4-fpn's own behaviour is
covered by ``test_evaluators.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _evaluator_shards import write_shards
from ffmask.errors import CheckpointError, FFMaskError
from ffmask.models.evaluators import OptimizerSpec, evaluator_entry, list_evaluators, register_evaluator
from ffmask.train.evaluator import (
    EvaluatorTrainArgs,
    domain_labels,
    flip_batch,
    parse_config_options,
    poly_decay,
    train_evaluator,
)

TOY = "toy-noise-domain"
MANIPULATIONS = ("Swap", "Blend")  # sorted: Blend = domain 1, Swap = domain 2
SIZE = 32

# What the toy's loss and augment saw, for the tests to inspect (cleared by each test).
SEEN: dict[str, list] = {"batches": [], "augment": []}


@dataclass(frozen=True)
class ToyConfig:
    img_size: int = SIZE
    n_domains: int = 0
    width: int = 4

    def to_dict(self):
        return dataclasses.asdict(self)


class Toy(nn.Module):
    """conv -> pooled logits (class, domain) and a 3-channel noise estimate; no map."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config, self.img_size = config, config.img_size
        self.backbone = nn.Conv2d(3, config.width, 3, padding=1)
        self.cls = nn.Linear(config.width, 2)
        self.dom = nn.Linear(config.width, config.n_domains + 1)
        self.noise = nn.Conv2d(config.width, 3, 1)
        self.register_buffer("faces_seen", torch.zeros((), dtype=torch.int64))  # state of the objective

    def forward(self, x):
        h = torch.relu(self.backbone(x))
        pooled = h.mean(dim=(2, 3))
        return {"logit": self.cls(pooled), "domain_logit": self.dom(pooled), "noise": self.noise(h)}


def toy_loss(model, out, batch, noise_weight=0.01):
    SEEN["batches"].append({k: v.detach().clone() for k, v in batch.items()})
    model.faces_seen += batch["label"].shape[0]
    cls = F.cross_entropy(out["logit"], batch["label"])
    dom = F.cross_entropy(out["domain_logit"], batch["domain"])
    noise = F.l1_loss(out["noise"], batch["noise"])
    total = cls + dom + noise_weight * noise
    return total, {"total": total.detach(), "cls": cls.detach(), "domain": dom.detach(), "noise": noise.detach()}


def toy_augment(model, batch, generator):
    shift = torch.rand(batch["image"].shape[0], generator=generator)
    SEEN["augment"].append(shift)
    assert model.training and batch["image"].dtype == torch.float32
    batch = dict(batch)
    batch["image"] = (batch["image"] + 0.01 * shift.view(-1, 1, 1, 1)).clamp(0, 1)
    return batch


def toy_configure(table, train_idx):
    return {"n_domains": len(domain_labels(table, train_idx)[1])}


@register_evaluator(TOY, loss=toy_loss, loss_kwargs={"noise_weight": 0.01}, inputs=("noise", "domain"),
                    optimizer=OptimizerSpec("sgd", lr=0.05, weight_decay=5e-4, momentum=0.9, schedule="poly"),
                    augment=toy_augment, map_head=False, configure=toy_configure, paper_map=None,
                    description="test toy")
def toy(**cfg):
    return Toy(ToyConfig(**cfg))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy_shards")
    return write_shards(d, ("astronaut", "coffee", "chelsea"), frames=4, size=SIZE, manipulations=MANIPULATIONS)


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN["batches"].clear()
    SEEN["augment"].clear()


# ---------------------------------------------------------------- registry


def test_registry_fields_and_validation():
    entry = evaluator_entry(TOY)
    assert TOY in list_evaluators() and "efb4-fpn" in list_evaluators()
    assert entry.inputs == ("noise", "domain") and entry.map_head is False and entry.augment is toy_augment
    assert entry.optimizer == OptimizerSpec("sgd", 0.05, 5e-4, 0.9, "poly", 0.9)
    # efb4-fpn keeps its defaults: AdamW 5e-4, wd 1e-4, cosine, a map head, no extra inputs.
    efb4 = evaluator_entry("efb4-fpn")
    assert (efb4.optimizer.name, efb4.optimizer.lr, efb4.optimizer.weight_decay, efb4.optimizer.schedule) == \
        ("adamw", 5e-4, 1e-4, "cosine")
    assert efb4.map_head and efb4.inputs == () and efb4.augment is None and efb4.configure is None

    with pytest.raises(ValueError, match="inputs must be distinct names among noise, domain"):
        register_evaluator("bad-inputs", loss=toy_loss, inputs=("depth",))
    with pytest.raises(ValueError, match="inputs must be distinct"):
        register_evaluator("bad-inputs", loss=toy_loss, inputs=("noise", "noise"))
    with pytest.raises(ValueError, match="augment must be callable"):
        register_evaluator("bad-augment", loss=toy_loss, augment=3)
    with pytest.raises(ValueError, match="map_head must be True or False"):
        register_evaluator("bad-head", loss=toy_loss, map_head="no")
    with pytest.raises(ValueError, match="optimizer must be an OptimizerSpec"):
        register_evaluator("bad-opt", loss=toy_loss, optimizer={"name": "sgd"})
    with pytest.raises(ValueError, match="optimizer must be one of adamw, adam, sgd"):
        OptimizerSpec("lion")
    with pytest.raises(ValueError, match="schedule must be one of cosine, poly"):
        OptimizerSpec(schedule="step")
    with pytest.raises(ValueError, match="momentum out of range"):
        OptimizerSpec("sgd", momentum=1.5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        EvaluatorTrainArgs(lr=0.0)


def test_poly_schedule_and_options():
    f = poly_decay(10, 0.9)
    assert f(0) == 1.0 and f(10) == 0.0 and f(12) == 0.0
    assert f(5) == pytest.approx(0.5 ** 0.9)
    assert parse_config_options(["width=8", "name=abc", "mean=[0.5, 0.5, 0.5]"]) == \
        {"width": 8, "name": "abc", "mean": [0.5, 0.5, 0.5]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_config_options(["width"])
    with pytest.raises(ValueError, match="its own option"):
        parse_config_options(["img_size=3"], reserved=("img_size",))


def test_flip_moves_noise_with_face():
    images = torch.arange(6 * 3 * 4 * 5, dtype=torch.float32).view(6, 3, 4, 5)
    noise = -images.clone()
    targets = torch.arange(6 * 1 * 3 * 3, dtype=torch.float32).view(6, 1, 3, 3)
    fi, ft, fn = flip_batch(images, targets, noise, seed=0, step=1)
    flipped = [bool(torch.equal(fi[i], images[i].flip(-1))) for i in range(6)]
    assert 0 < sum(flipped) < 6
    assert [bool(torch.equal(fn[i], noise[i].flip(-1))) for i in range(6)] == flipped
    assert [bool(torch.equal(ft[i], targets[i].flip(-1))) for i in range(6)] == flipped
    assert torch.equal(fn, -fi)


# ---------------------------------------------------------------- the loop


def test_batches_carry_noise_and_domain_flipped_together(shards, tmp_path):
    from ffmask import ShardDataset
    from ffmask.train.evaluator import face_table

    args = EvaluatorTrainArgs(iters=3, batch_size=6, val_every=0, seed=1, device="cpu")
    result = train_evaluator(shards, tmp_path / "run", model=TOY, args=args)
    assert result.step == 3 and set(result.losses) == {"total", "cls", "domain", "noise"}
    doc = json.loads((tmp_path / "run" / "last.json").read_text())
    assert doc["config"]["n_domains"] == 2                                 # configure() from the training data
    assert doc["data"]["domains"] == ["Blend", "Swap"]
    assert doc["train"]["noise_map"] == "noise" and doc["train"]["lr"] == 0.05
    assert doc["optimizer"]["name"] == "sgd" and doc["optimizer"]["schedule"] == "poly"

    ds = ShardDataset(shards, maps=["noise"], return_meta=False)
    table = face_table(ds)
    faces = [(ds[i]["image"].float() / 255, ds[i]["maps"]["noise"], int(table["label"][i]), table["manipulation"][i])
             for i in range(len(ds))]
    domain_of = {"original": 0, "Blend": 1, "Swap": 2}
    assert len(SEEN["batches"]) == 3
    n_flipped = 0
    for batch, shift in zip(SEEN["batches"], SEEN["augment"]):
        assert set(batch) == {"image", "label", "noise", "domain"}             # no "target": no map
        assert batch["noise"].shape == (6, 3, SIZE, SIZE) and batch["noise"].dtype == torch.float32
        assert batch["domain"].dtype == torch.int64 and batch["label"].tolist() == [0, 0, 0, 1, 1, 1]
        for img, noise, label, domain, d in zip(batch["image"], batch["noise"], batch["label"], batch["domain"],
                                                shift):
            # the face this is, in either orientation (the augment added 0.01 * its draw)
            hits = [(j, flip) for j, (im, _, _, _) in enumerate(faces) for flip in (False, True)
                    if torch.allclose(img, ((im.flip(-1) if flip else im) + 0.01 * d).clamp(0, 1), atol=1e-6)]
            assert hits
            # a crop drawn twice (same jitter) has the same noise: any hit must agree
            assert any(torch.equal(noise, faces[j][1].flip(-1) if flip else faces[j][1])
                       and int(label) == faces[j][2] and int(domain) == domain_of[faces[j][3]] for j, flip in hits)
            n_flipped += hits[0][1]
    assert 0 < n_flipped < 18
    # augment ran once per step with a (seed, step) generator
    assert len(SEEN["augment"]) == 3 and not torch.equal(SEEN["augment"][0], SEEN["augment"][1])


class _Crash(Exception):
    pass


def test_resume_is_exact_with_augment_sgd_poly_and_model_state(shards, tmp_path):
    args = EvaluatorTrainArgs(iters=4, batch_size=4, val_every=0, save_every=2, seed=3, device="cpu")
    straight = {}
    train_evaluator(shards, tmp_path / "a", model=TOY, args=args, callback=lambda s, r: straight.update({s: r["total"]}))
    augments_straight = [a.clone() for a in SEEN["augment"]]
    SEEN["augment"].clear()

    def crash_at_3(step, rec):
        if step == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train_evaluator(shards, tmp_path / "b", model=TOY, args=args, callback=crash_at_3)
    doc = json.loads((tmp_path / "b" / "last.json").read_text())
    assert doc["step"] == 2
    group = doc["training_state"]["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    assert group["lr"] == pytest.approx(0.05 * (1 - 2 / 4) ** 0.9)           # poly 0.9 after 2 of 4 steps
    SEEN["augment"].clear()
    resumed = {}
    result = train_evaluator(shards, tmp_path / "b", model=TOY, args=args,
                             callback=lambda s, r: resumed.update({s: r["total"]}))
    assert result.resumed_from == 2 and sorted(resumed) == [3, 4]
    for s in (3, 4):
        assert resumed[s] == pytest.approx(straight[s], rel=1e-6)
    for a, b in zip(SEEN["augment"], augments_straight[2:]):
        assert torch.equal(a, b)
    from ffmask.models.checkpoint import read_safetensors

    for run in ("a", "b"):  # the objective's buffer is checkpointed and resumed
        tensors, _ = read_safetensors(tmp_path / run / "last.safetensors")
        assert int(tensors["faces_seen"]) == 4 * 4

    # Another optimizer setting is another run.
    other = dataclasses.replace(args, lr=0.01)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.05, now 0.01"):
        train_evaluator(shards, tmp_path / "b", model=TOY, args=other)


def test_map_head_false_refuses_a_map_and_evaluates_without_one(shards, tmp_path):
    from ffmask.evaluate import evaluate_checkpoint, to_markdown, write_report

    with pytest.raises(ValueError, match="predicts no map: train it with --map none"):
        train_evaluator(shards, tmp_path / "x", model=TOY, args=EvaluatorTrainArgs(map="official", iters=1))
    with pytest.raises(ValueError, match="derives n_domains=2 from the training data; the given config says 5"):
        train_evaluator(shards, tmp_path / "x", model=TOY, config={"n_domains": 5},
                        args=EvaluatorTrainArgs(iters=1, batch_size=2, device="cpu"))
    with pytest.raises(ValueError, match="takes no noise input"):
        train_evaluator(shards, tmp_path / "x", model="efb4-fpn", args=EvaluatorTrainArgs(noise_map="noise"))
    with pytest.raises(FFMaskError, match="needs a noise residual; map 'official' of the shards is a mask map"):
        train_evaluator(shards, tmp_path / "x", model=TOY,
                        args=EvaluatorTrainArgs(noise_map="official", iters=1, batch_size=2, device="cpu"))
    args = EvaluatorTrainArgs(iters=2, batch_size=4, val_every=2, seed=0, device="cpu")
    result = train_evaluator(shards[:2], tmp_path / "run", model=TOY, args=args, val_shards=shards[2:])
    assert result.last_val["n"] == 8 and 0 <= result.last_val["auc"] <= 1
    ev = evaluate_checkpoint(tmp_path / "run", shards[2:], against=["official"], device="cpu", keep_images=2)
    assert ev.pred_map is None and ev.targets == {} and ev.metrics["against"] == [] and ev.metrics["map"] is False
    assert ev.metrics["groups"]["all"]["pixel"] == {} and ev.metrics["groups"]["all"]["frame"]["n"] == 8
    assert "predicts no map" in to_markdown(ev)
    paths = write_report(ev, tmp_path / "report")
    assert {"json", "markdown", "roc", "sheet"} <= set(paths)


def test_cli_trains_any_registered_evaluator(shards, tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    common = ["train", "evaluator", "--model", TOY, "--train", str(shards[0]), "--train", str(shards[1]),
              "--out", str(tmp_path / "ck"), "--batch-size", "4", "--iters", "2", "--val-every", "0",
              "--workers", "0", "--device", "cpu", "--option", "width=3"]
    result = CliRunner().invoke(app, common + ["--map", "official"])
    assert result.exit_code != 0 and "predicts no map" in str(result.exception)
    result = CliRunner().invoke(app, common + ["--map", "none", "--lr", "0.02"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((tmp_path / "ck" / "last.json").read_text())
    assert doc["config"] == {"img_size": SIZE, "n_domains": 2, "width": 3}
    assert doc["train"]["lr"] == 0.02 and doc["train"]["weight_decay"] == 5e-4
