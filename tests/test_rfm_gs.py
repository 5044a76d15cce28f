"""The ``rfm`` and ``gs`` evaluators: FAM, Suspicious Forgeries Erasing, guides, Hungarian matching, A-DBM, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import ffmask  # noqa: F401  (the torchvision shim before timm)
from _evaluator_shards import write_shards
from ffmask.metrics import roc_auc
from ffmask.models.evaluators import create_evaluator, evaluator_entry, list_evaluators
from ffmask.models.evaluators.gs import build_guides, gs_loss
from ffmask.models.fam import block_limits, erase_blocks, forgery_attention, sfe_augment
from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

LITE = {"backbone": "tf_efficientnet_lite0", "img_size": 64}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat")
MANIPULATIONS = ("Blend", "Paste")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("rfm_gs")
    (d / "train").mkdir()
    (d / "test").mkdir()
    train = write_shards(d / "train", PHOTOS[:6], frames=6, seed=0, manipulations=MANIPULATIONS, noise=False)
    test = write_shards(d / "test", PHOTOS[6:], frames=6, seed=1, manipulations=MANIPULATIONS, noise=False)
    return {"train": train, "test": test}


# ---------------------------------------------------------------- FAM


class _Linear(nn.Module):
    """logit = [0, sum(w * x)] (+ dropout that would change the FAM in training mode)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        s = (self.drop(x * 1.0) * self.w).flatten(1).sum(1)
        return {"logit": torch.stack([torch.zeros_like(s), s], 1)}


def test_fam_is_the_max_abs_input_gradient_in_eval_mode():
    torch.manual_seed(0)
    w = torch.randn(3, 8, 8)
    model = _Linear(w.clone()).train()
    x = torch.rand(2, 3, 8, 8)
    fam, prob = forgery_attention(model, x)
    # d(logit_fake - logit_real)/dx = w for every face; max over channels of |w|; dropout off (eval mode)
    expected = w.abs().amax(0)
    assert torch.allclose(fam, expected.expand(2, 8, 8), atol=1e-6)
    s = (x * w).flatten(1).sum(1)
    assert torch.allclose(prob, torch.sigmoid(s), atol=1e-6)
    assert model.training and model.w.grad is None  # mode restored, parameter gradients untouched
    with torch.inference_mode():  # works when the caller runs under inference mode (the pipeline may)
        fam2, _ = forgery_attention(model, x)
    assert torch.equal(fam, fam2)


def test_fam_of_a_real_evaluator_depends_on_each_face_only():
    torch.manual_seed(0)
    model = create_evaluator("rfm", **LITE)
    x = torch.rand(3, 3, 64, 64)
    fam, _ = forgery_attention(model, x)
    alone, _ = forgery_attention(model, x[1:2])
    assert fam.shape == (3, 64, 64) and (fam >= 0).all() and float(fam.sum()) > 0
    # Equal up to float round-off: with several threads the batched convolutions sum in another order, and a
    # gradient through ReLU kinks can move by more than that at a few pixels (0.08 % of the L1 mass measured);
    # a batch-coupled FAM (batch statistics in the forward) differs everywhere.
    assert float((fam[1] - alone[0]).abs().sum() / alone[0].abs().sum()) < 0.01


# ---------------------------------------------------------------- Suspicious Forgeries Erasing


def _fam_with_peaks(peaks, shape=(48, 48)):
    fam = torch.rand(1, *shape) * 0.1
    for value, (r, c) in peaks:
        fam[0, r, c] = value
    return fam


def test_sfe_single_pixel_blocks_are_the_top_points():
    fam = _fam_with_peaks([(5.0, (3, 4)), (4.0, (20, 30)), (3.0, (40, 7)), (2.0, (10, 10))])
    mask = erase_blocks(fam, torch.Generator().manual_seed(0), blocks=3, max_size=(1, 1))
    assert mask.sum() == 3 and mask[0, 3, 4] and mask[0, 20, 30] and mask[0, 40, 7]


def test_sfe_blocks_cover_their_point_with_sizes_in_range():
    # an interior peak (no clipping): one block is a rectangle containing it, h, w in 1..max
    fam = _fam_with_peaks([(9.0, (24, 24))])
    sizes = set()
    for seed in range(150):
        mask = erase_blocks(fam, torch.Generator().manual_seed(seed), blocks=1, max_size=(5, 7))[0]
        rows, cols = torch.nonzero(mask, as_tuple=True)
        assert mask[24, 24]
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == h * w  # a full rectangle
        sizes.add((h, w))
    assert {h for h, _ in sizes} == set(range(1, 6)) and {w for _, w in sizes} == set(range(1, 8))
    assert block_limits(224) == 120 and block_limits(64) == 34 and block_limits(1) == 1


def test_sfe_skips_points_already_erased():
    # top point (20, 20), second (20, 21) right next to it, third far away at (5, 40).
    fam = _fam_with_peaks([(9.0, (20, 20)), (8.0, (20, 21)), (7.0, (5, 40)), (6.0, (40, 5))])
    seen = {True: 0, False: 0}
    for seed in range(40):
        one = erase_blocks(fam, torch.Generator().manual_seed(seed), blocks=1, max_size=(6, 6))[0]
        two = erase_blocks(fam, torch.Generator().manual_seed(seed), blocks=2, max_size=(6, 6))[0]
        assert (two | one).equal(two)  # the same first block (same draws)
        covered = bool(one[20, 21])
        seen[covered] += 1
        # the second block goes to the best point not yet erased
        assert two[5, 40] if covered else two[20, 21]
    assert seen[True] and seen[False]


def test_sfe_is_deterministic_per_seed_and_fills_normalised_noise():
    torch.manual_seed(0)
    model = create_evaluator("rfm", **LITE)
    x = torch.rand(4, 3, 64, 64)
    a, mask_a = sfe_augment(model, x, torch.Generator().manual_seed(3), mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    b, mask_b = sfe_augment(model, x, torch.Generator().manual_seed(3), mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    c, mask_c = sfe_augment(model, x, torch.Generator().manual_seed(4), mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(mask_a, mask_c)
    fam, _ = forgery_attention(model, x)
    top = fam.flatten(1).argmax(1)
    assert all(mask_a[i].flatten()[top[i]] for i in range(4))  # every face's top FAM point is erased
    assert torch.equal(a[~mask_a[:, None].expand_as(a)], x[~mask_a[:, None].expand_as(x)])  # the rest untouched
    erased = a.permute(1, 0, 2, 3)[:, mask_a]  # (3, n) erased values per channel
    for ch, (m, s) in enumerate(((0.5, 0.5), (0.4, 0.2), (0.3, 0.1))):
        v = erased[ch]
        assert float(v.min()) >= m - s - 1e-6 and float(v.max()) <= m + s + 1e-6
        assert float(v.std()) == pytest.approx(2 * s / math.sqrt(12), rel=0.15)  # uniform in [-1, 1] x std
    none, mask_none = sfe_augment(model, x, torch.Generator().manual_seed(3), prob=0.0)
    assert not mask_none.any() and torch.equal(none, x)


# ---------------------------------------------------------------- rfm model and loss


def test_rfm_shapes_gradients_and_flooding():
    torch.manual_seed(0)
    assert {"rfm", "gs"} <= set(list_evaluators())
    entry = evaluator_entry("rfm")
    assert not entry.map_head and entry.augment is not None
    assert (entry.optimizer.name, entry.optimizer.lr) == ("adam", 2e-4) and entry.loss_kwargs == {"flood": 0.04}
    model = create_evaluator("rfm", **LITE)
    x = torch.rand(4, 3, 64, 64)
    out = model(x)
    assert set(out) == {"logit"} and out["logit"].shape == (4, 2)
    batch = {"image": x, "label": torch.tensor([0, 0, 1, 1])}
    loss, parts = entry.loss(model, out, batch, **entry.loss_kwargs)
    loss.backward()
    for name in ("backbone.conv_stem.weight", "classifier.weight"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0, name
    # flooding: below 0.04 the loss is 0.08 - CE and its gradient points the other way
    logit = torch.tensor([[6.0, -6.0], [-6.0, 6.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    flooded, parts = entry.loss(model, {"logit": logit}, {"label": labels}, flood=0.04)
    ce = float(torch.nn.functional.cross_entropy(logit.detach(), labels))
    assert ce < 0.04 and float(flooded.detach()) == pytest.approx(0.08 - ce, rel=1e-5)
    (g_flood,) = torch.autograd.grad(flooded, logit)
    (g_ce,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logit, labels), logit)
    assert torch.allclose(g_flood, -g_ce)
    with pytest.raises(ValueError, match="erase_prob"):
        create_evaluator("rfm", erase_prob=2.0, **LITE)


# ---------------------------------------------------------------- gs: guides, matching, A-DBM


@pytest.mark.parametrize("k, theta", [(1, 90.0), (3, 120.0), (4, 100.0)])
def test_guides_fixed_angle_to_real_and_maximally_spread(k, theta):
    g = build_guides(k, 16, theta, seed=1).double()
    assert g.shape == (k + 1, 16) and torch.allclose(g.norm(dim=1), torch.ones(k + 1, dtype=torch.float64), atol=1e-6)
    cos = g @ g.T
    c = math.cos(math.radians(theta))
    assert torch.allclose(cos[0, 1:], torch.full((k,), c, dtype=torch.float64), atol=1e-6)
    if k > 1:
        pair = cos[1:, 1:][~torch.eye(k, dtype=torch.bool)]
        s2 = math.sin(math.radians(theta)) ** 2
        assert torch.allclose(pair, torch.full_like(pair, c * c - s2 / (k - 1)), atol=1e-6)
        # Eq. 2's energy is lower than for any other random arrangement at the same angle
        tau = 0.1
        energy = float(torch.exp(pair / tau).sum())
        gen = torch.Generator().manual_seed(0)
        for _ in range(50):
            u = torch.randn(k, 16, generator=gen, dtype=torch.float64)
            u = u - (u @ g[0])[:, None] * g[0][None]
            u = u / u.norm(dim=1, keepdim=True)
            other = c * g[0][None] + math.sqrt(s2) * u
            oc = (other @ other.T)[~torch.eye(k, dtype=torch.bool)]
            assert float(torch.exp(oc / tau).sum()) > energy
    assert torch.equal(build_guides(k, 16, theta, seed=1), build_guides(k, 16, theta, seed=1))


def test_hungarian_matching_follows_the_batch_domain_means():
    torch.manual_seed(0)
    model = create_evaluator("gs", domains=["A", "B", "C"], embed_dim=8, **LITE)
    perm = [2, 0, 1]  # domain A lies at forgery guide 2, B at 0, C at 1
    g = model.guides
    domain = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    f = torch.stack([g[0] if d == 0 else g[1 + perm[d - 1]] for d in domain.tolist()])
    f = torch.nn.functional.normalize(f + 0.05 * torch.randn_like(f), dim=1)
    assert model.match_guides(f, domain).tolist() == perm
    # domain B absent from the next batch: A and C swap guides; B keeps guide 0 (still free)
    domain2 = torch.tensor([0, 1, 3])
    f2 = torch.stack([g[0], g[1 + 1], g[1 + 2]])
    assert model.match_guides(f2, domain2).tolist() == [1, 0, 2]
    # ... and when a present domain takes an absent one's guide, the absent one gets the free guide
    f3 = torch.stack([g[0], g[1 + 0]])
    assert model.match_guides(f3, torch.tensor([0, 1])).tolist() == [0, 1, 2]


def test_adbm_confidence_and_weights():
    torch.manual_seed(0)
    model = create_evaluator("gs", domains=["A", "B"], embed_dim=8, queue_size=12, knn=4, **LITE)
    e = torch.eye(8)
    # queue: 4 reals at e0, 4 of domain A at e1, 4 of domain B at e2
    model.enqueue(torch.cat([e[0].expand(4, 8), e[1].expand(4, 8), e[2].expand(4, 8)]),
                  torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
    assert int(model.queue_ptr) == 0 and (model.queue_domain >= 0).all()
    f = torch.stack([e[1], e[0], e[2]])  # an A face among A; an A face among reals; an A face among B
    conf = model.confidence(f, torch.tensor([1, 1, 1]))
    assert conf[0] == pytest.approx(1.0) and conf[1] == pytest.approx(0.0) and conf[2] == pytest.approx(0.0)
    # half same-domain neighbours: a fake with real neighbours (lambda 2) is less confident than with other fakes
    def half(other_domain, other_dir, far_domain):
        m = create_evaluator("gs", domains=["A", "B"], embed_dim=8, queue_size=12, knn=4, **LITE)
        m.enqueue(torch.cat([e[other_dir].expand(2, 8), e[1].expand(2, 8), -e[1].expand(8, 8)]),
                  torch.tensor([other_domain] * 2 + [1] * 2 + [far_domain] * 8))
        q = torch.nn.functional.normalize(e[1] + e[other_dir], dim=0)
        return float(m.confidence(q[None], torch.tensor([1]))[0])

    assert half(0, 0, 2) == pytest.approx(1 / 3, rel=1e-4)  # 2 A + 2 real neighbours: 2 / (2 + 2 x 2)
    assert half(2, 2, 0) == pytest.approx(1 / 2, rel=1e-4)  # 2 A + 2 B neighbours: 2 / (2 + 2)
    # in the loss, low-confidence faces weigh more (adbm_start 0: from the first step)
    out = model(torch.rand(4, 3, 64, 64))
    out["feature"] = torch.stack([e[0], e[0], e[1], e[0]]).requires_grad_(True)
    loss, parts = gs_loss(model, out, {"label": torch.tensor([0, 0, 1, 1]), "domain": torch.tensor([0, 0, 1, 1])})
    assert "conf" in parts and parts["conf"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert int(model.steps) == 1 and int(model.queue_ptr) == 4


def test_gs_shapes_gradients_and_scores():
    torch.manual_seed(0)
    entry = evaluator_entry("gs")
    assert entry.inputs == ("domain",) and not entry.map_head and entry.configure is not None
    model = create_evaluator("gs", domains=["A", "B"], embed_dim=16, queue_size=32, knn=4, adbm_start=1, **LITE)
    x = torch.rand(6, 3, 64, 64)
    out = model(x)
    assert out["logit"].shape == out["cls_logit"].shape == out["guide_logit"].shape == (6, 2)
    assert torch.equal(out["logit"], out["guide_logit"])  # the default score
    assert torch.allclose(out["feature"].norm(dim=1), torch.ones(6), atol=1e-5)
    batch = {"label": torch.tensor([0, 0, 1, 1, 1, 1]), "domain": torch.tensor([0, 0, 1, 1, 2, 2])}
    loss, parts = entry.loss(model, out, batch, **entry.loss_kwargs)
    assert set(parts) == {"cls", "guide", "total"}  # A-DBM from step 1 on
    loss.backward()
    for name in ("backbone.conv_stem.weight", "embed.weight", "classifier.weight"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0, name
    _, parts = entry.loss(model, model(x), batch)
    assert 0 <= parts["conf"] <= 1
    with pytest.raises(ValueError, match="domain must be 0 for real"):
        entry.loss(model, model(x), {"label": batch["label"], "domain": torch.tensor([0, 0, 1, 1, 2, 3])})
    # the guide score: softmax = the guide softmax's mass on the forgery guides
    o = model.eval()(x)
    p = torch.softmax(o["feature"] @ model.guides.T / model.config.tau, dim=1)[:, 1:].sum(1)
    assert torch.allclose(o["logit"].softmax(-1)[:, 1], p, atol=1e-5)
    cls = create_evaluator("gs", **dict(model.config.to_dict(), score="classifier"))
    cls.load_state_dict(model.state_dict())
    assert torch.equal(cls.eval()(x)["logit"], o["cls_logit"])
    with pytest.raises(ValueError, match="too small"):
        create_evaluator("gs", domains=["A", "B"], embed_dim=2, **LITE)


# ---------------------------------------------------------------- training


def _train(model, shards, tmp_path, config, iters, batch_size=16, **kw):
    losses = []
    args = EvaluatorTrainArgs(iters=iters, batch_size=batch_size, lr=1e-3, val_every=0, seed=0, device="cpu",
                              pretrained="lite0", **kw)
    result = train_evaluator(shards["train"], tmp_path / model, model=model, config=config, args=args,
                             callback=lambda step, rec: losses.append(rec))
    return result, losses


def _held_out_auc(run, shards):
    from ffmask.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(run / "last.json", shards["test"], device="cpu")
    return roc_auc(ev.table["label"], ev.score), ev


def test_rfm_trains_with_sfe_and_detects_held_out_photos(shards, tmp_path):
    result, losses = _train("rfm", shards, tmp_path, LITE, 16, batch_size=12)
    first, last = np.mean([r["cls"] for r in losses[:5]]), np.mean([r["cls"] for r in losses[-5:]])
    auc, ev = _held_out_auc(tmp_path / "rfm", shards)
    print(f"rfm: CE {first:.3f} -> {last:.3f}, held-out frame AUC {auc:.3f}")
    assert last < first and auc > 0.7
    assert not ev.metrics["groups"]["all"].get("pixel")  # no map, no pixel scores


def test_gs_trains_and_detects_held_out_photos(shards, tmp_path):
    cfg = dict(LITE, queue_size=64, knn=8, adbm_start=10)
    result, losses = _train("gs", shards, tmp_path, cfg, 20)
    doc = json.loads((tmp_path / "gs" / "last.json").read_text())
    assert doc["config"]["domains"] == list(MANIPULATIONS) and doc["data"]["domains"] == list(MANIPULATIONS)
    first = {k: np.mean([r[k] for r in losses[:5]]) for k in ("cls", "guide")}
    last = {k: np.mean([r[k] for r in losses[-5:]]) for k in ("cls", "guide")}
    assert all("conf" not in r for r in losses[:10]) and all("conf" in r for r in losses[10:])
    auc, _ = _held_out_auc(tmp_path / "gs", shards)
    print(f"gs: {first} -> {last}, held-out frame AUC {auc:.3f}")
    assert last["guide"] < first["guide"] and last["cls"] < first["cls"] and auc > 0.7  # guide score


class _Crash(Exception):
    pass


def test_gs_resume_restores_queue_and_matching(shards, tmp_path):
    cfg = dict(LITE, img_size=32, queue_size=16, knn=4, adbm_start=2)
    args = EvaluatorTrainArgs(iters=5, batch_size=4, lr=1e-3, val_every=0, save_every=2, seed=1, device="cpu")
    straight = {}
    train_evaluator(shards["train"][:2], tmp_path / "a", model="gs", config=cfg, args=args,
                    callback=lambda s, r: straight.update({s: r}))

    def crash_at_3(step, rec):
        if step == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train_evaluator(shards["train"][:2], tmp_path / "b", model="gs", config=cfg, args=args, callback=crash_at_3)
    resumed = {}
    result = train_evaluator(shards["train"][:2], tmp_path / "b", model="gs", config=cfg, args=args,
                             callback=lambda s, r: resumed.update({s: r}))
    assert result.resumed_from == 2 and sorted(resumed) == [3, 4, 5]
    for s in (3, 4, 5):
        for k in ("total", "guide", "conf"):
            assert resumed[s][k] == pytest.approx(straight[s][k], rel=1e-5), (s, k)
    with pytest.raises(ValueError, match="predicts no map"):
        train_evaluator(shards["train"][:2], tmp_path / "c", model="gs", config=cfg,
                        args=EvaluatorTrainArgs(map="official", iters=1, batch_size=4, device="cpu"))


def test_cli_trains_and_evaluates_gs_and_rfm(shards, tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    for model, extra in (("gs", ["--option", "queue_size=8", "--option", "knn=2", "--option", "score=classifier"]),
                         ("rfm", ["--option", "erase_blocks=2"])):
        out = tmp_path / model
        common = ["train", "evaluator", "--model", model, "--train", str(shards["train"][0]), "--out", str(out),
                  "--backbone", "tf_efficientnet_lite0", "--img-size", "32", "--batch-size", "4", "--iters", "2",
                  "--val-every", "0", "--workers", "0", "--device", "cpu", *extra]
        result = CliRunner().invoke(app, common + ["--map", "official"])
        assert result.exit_code != 0 and "predicts no map" in str(result.exception)
        result = CliRunner().invoke(app, common + ["--map", "none"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        doc = json.loads((out / "last.json").read_text())
        assert doc["optimizer"]["name"] == "adam" and doc["train"]["lr"] == 2e-4  # the model's own defaults
        if model == "rfm":
            break  # evaluating a map-less model through the CLI once is enough
        report = tmp_path / f"report-{model}"
        result = CliRunner().invoke(app, ["evaluate", str(out), "--shards", str(shards["test"][0]), "--out",
                                          str(report), "--workers", "0", "--device", "cpu"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        metrics = json.loads((report / "metrics.json").read_text())
        assert math.isfinite(metrics["groups"]["all"]["frame"]["auc"])
    assert doc["config"]["erase_blocks"] == 2
