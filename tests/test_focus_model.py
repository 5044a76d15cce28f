"""FoCus model: layers, forward contract, checkpoints and the inference API."""

from __future__ import annotations

import itertools
import json
import math
import pickle

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ffmask  # noqa: F401  (installs the torchvision shim before timm)
from ffmask.errors import CheckpointError
from ffmask.models import create_model, list_models
from ffmask.models.checkpoint import load_checkpoint, save_checkpoint
from ffmask.models.focus import (
    DEFAULT_CHECKPOINT,
    FocusAnnotator,
    FocusConfig,
    FocusNet,
    load_focus,
    load_pretrained_backbone,
)
from ffmask.models.layers import SOBEL_MAX, SobelFilter, sincos_pos_embed

# 64 px input with 16 px patches: a 4x4 token grid, cheap on CPU.
TINY = dict(backbone="vit_tiny_patch16_224", img_size=64, depth=2, embed_dim=96, maps_per_class=8)


def tiny(seed: int = 0, **overrides) -> FocusNet:
    torch.manual_seed(seed)
    return create_model("focus", **{**TINY, **overrides})


@pytest.fixture(scope="module")
def faces64() -> torch.Tensor:
    """Four 64x64 crops of the astronaut photo, float (4, 3, 64, 64) in [0, 1]."""
    from skimage.data import astronaut

    img = astronaut()
    crops = [img[0:256, 100:356], img[40:296, 160:416], img[200:456, 0:256], img[100:356, 256:512]]
    crops = [cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA) for c in crops]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def vit_s() -> FocusNet:
    torch.manual_seed(0)
    return create_model("focus").eval()


# ---------------------------------------------------------------- forward contract


def test_default_model_outputs_at_224(vit_s):
    from skimage.data import astronaut

    cfg = vit_s.config
    assert (cfg.backbone, cfg.img_size, cfg.depth, cfg.embed_dim, cfg.num_heads) == ("vit_small_patch16_224", 224, 12, 384, 6)
    assert cfg.maps_per_class == 32
    face = cv2.resize(astronaut()[0:256, 140:396], (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.stack([face, face[:, ::-1]])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out = vit_s(x)
    for name in ("logits_rgb", "logits_sobel", "logits_fus"):
        assert getattr(out, name).shape == (2, 2) and torch.isfinite(getattr(out, name)).all()
    for name in ("car_rgb", "car_sobel", "a_fus", "a_fus_fake"):
        m = getattr(out, name)
        assert m.shape == (2, 14, 14) and m.dtype == torch.float32
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert out.mask.shape == (2, 196)
    assert out.prob_fus.shape == (2,)
    with pytest.raises(ValueError, match="expects float images"):
        vit_s(torch.rand(1, 3, 112, 112))


def test_registry_lists_and_builds_models():
    names = list_models("focus*")
    assert {"focus", "focus_vit_small", "focus_vit_tiny"} <= set(names)
    m = create_model("focus_vit_tiny", img_size=64, depth=1)
    assert m.config.backbone == "vit_tiny_patch16_224" and m.config.embed_dim == 192 and m.grid == (4, 4)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no_such_model")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        create_model("focus", **{**TINY, "img_size": 72})
    # Any timm CNN with a stride-16 stage is a branch; ViT-only overrides are refused for it.
    cnn = create_model("focus", backbone="resnet18", img_size=64, maps_per_class=4)
    assert cnn.grid == (4, 4) and cnn.rgb_branch.embed_dim == 256 and not hasattr(cnn.rgb_branch, "vit")
    with pytest.raises(ValueError, match="ViT backbones only"):
        create_model("focus", backbone="resnet18", img_size=64, depth=2)
    with pytest.raises(ValueError, match="unknown timm backbone"):
        create_model("focus", backbone="no_such_net", img_size=64)


def test_complementary_mask_is_hard_and_gradients_reach_both_branches(faces64):
    model = tiny().train()
    out = model(faces64)
    # Exactly 0 or 1: each token comes from one modality only.
    assert set(torch.unique(out.mask).tolist()) <= {0.0, 1.0}
    rgb_tok = out.mask.bool().view(-1, 4, 4)
    # The fused map takes each token's CAR value from the chosen branch, bit for bit.
    assert torch.equal(out.a_fus, torch.where(rgb_tok, out.car_rgb, out.car_sobel))

    labels = torch.tensor([0, 1, 0, 1])
    F.cross_entropy(out.logits_fus, labels).backward()

    def grad_norm(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    assert grad_norm(model.rgb_branch.vit.blocks[0]) > 0
    assert grad_norm(model.sobel_branch.vit.blocks[0]) > 0
    # The scorers are reached only through the straight-through estimator.
    assert grad_norm(model.cl.score_a) > 0 and grad_norm(model.cl.score_b) > 0
    # L_fus does not reach the branch classifiers' heads.
    assert grad_norm(model.head_rgb) == 0 and grad_norm(model.head_sobel) == 0


def test_complementary_mask_is_deterministic_in_eval(faces64):
    model = tiny().eval()
    with torch.no_grad():
        a, b = model(faces64), model(faces64)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.a_fus, b.a_fus)


def test_sobel_input_matches_opencv():
    # A vertical step, a horizontal ramp and a noisy patch: every kind of gradient.
    rng = np.random.default_rng(3)
    img = np.zeros((40, 48, 3), np.float32)
    img[:, 20:] = (0.9, 0.2, 0.5)
    img[:15] += np.linspace(0, 0.3, 48, dtype=np.float32)[None, :, None]
    img[25:35, 5:15] = rng.uniform(0, 1, (10, 10, 3))
    img = np.clip(img, 0, 1)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    expected = np.sqrt(gx**2 + gy**2)

    out = SobelFilter()(torch.from_numpy(img).permute(2, 0, 1)[None])
    assert out.shape == (1, 3, 40, 48)
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 0], out[0, 2])
    np.testing.assert_allclose(out[0, 0].numpy() * SOBEL_MAX, expected, atol=2e-5)
    assert float(out.max()) <= 1.0 and float(out.min()) >= 0.0
    assert expected[:, 19:21].min() > 1.0  # the step is really there
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        SobelFilter()(torch.zeros(1, 1, 8, 8))


def test_fake_only_map_equals_full_map_when_real_probability_vanishes(faces64):
    model = tiny().eval()
    with torch.no_grad():
        before = model(faces64)
        assert not torch.allclose(before.a_fus, before.a_fus_fake, atol=1e-3)
        d = model.config.maps_per_class
        for head in (model.head_rgb, model.head_sobel):
            head.proj.bias[:d] -= 1e4  # the real-class maps, hence its logit, go to -1e4
        out = model(faces64)
    for logits in (out.logits_rgb, out.logits_sobel):
        assert float(logits.softmax(-1)[:, 0].max()) == 0.0
    torch.testing.assert_close(out.a_fus, out.a_fus_fake, atol=1e-6, rtol=0)


def test_position_embeddings_are_fixed_sincos(faces64):
    model = tiny().train()
    dim, (h, w) = model.config.embed_dim, model.grid
    # Reference: for token (y, x), [sin(y w_k), sin(x w_k), cos(y w_k), cos(x w_k)], w_k = 1e4^(-k/(D/4)).
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y, x = ys.reshape(-1, 1) * omega, xs.reshape(-1, 1) * omega
    ref = np.concatenate([np.zeros((1, dim)), np.concatenate([np.sin(y), np.sin(x), np.cos(y), np.cos(x)], 1)])

    names = [n for n, _ in model.named_parameters()]
    assert not any("pos_embed" in n for n in names)
    assert not any("pos_embed" in k for k in model.state_dict())
    for branch in (model.rgb_branch, model.sobel_branch):
        np.testing.assert_allclose(branch.vit.pos_embed[0].numpy(), ref, atol=1e-6)
    before = model.rgb_branch.vit.pos_embed.clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(faces64)
    F.cross_entropy(out.logits_rgb + out.logits_fus, torch.tensor([0, 1, 0, 1])).backward()
    opt.step()
    assert torch.equal(model.rgb_branch.vit.pos_embed, before)
    assert sincos_pos_embed((2, 3), 8).shape == (1, 7, 8)


# ---------------------------------------------------------------- checkpoints


def _save(model, tmp_path, name="ckpt"):
    return save_checkpoint(tmp_path / name, model, model_name="focus", config=model.config.to_dict(), step=7)


def test_checkpoint_round_trip(tmp_path, faces64):
    model = tiny(seed=1).eval()
    weights, description = _save(model, tmp_path)
    doc = json.loads(description.read_text())
    assert doc["model"] == "focus" and doc["step"] == 7 and doc["config"]["embed_dim"] == 96
    with open(weights, "rb") as fh:
        assert fh.read(9)[8:9] == b"{"  # safetensors header, not a pickle

    for path in (weights, description, tmp_path / "ckpt"):
        loaded, _ = load_checkpoint(path, model_name="focus")
        assert loaded.config == model.config
        with torch.no_grad():
            a, b = model(faces64), loaded(faces64)
        assert torch.equal(a.a_fus, b.a_fus) and torch.equal(a.logits_fus, b.logits_fus)


class _Exploit:
    """Unpickling this calls a function of the file's choosing."""

    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_loading_refuses_pickles(tmp_path, capsys):
    model = tiny()
    weights, _ = _save(model, tmp_path)
    with open(weights, "wb") as fh:  # a raw pickle under the checkpoint's own name
        pickle.dump({"weights": _Exploit()}, fh)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_focus(weights, device="cpu")
    torch.save({"weights": torch.zeros(2), "hook": _Exploit()}, tmp_path / "zip.pth")  # torch's zip format
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_pretrained_backbone(model, tmp_path / "zip.pth")
    assert "ran code" not in capsys.readouterr().out
    weights.write_bytes(b"not a weights file at all")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_focus(weights, device="cpu")


def test_loading_refuses_mismatched_checkpoints(tmp_path):
    from safetensors.torch import load_file, save_file

    weights, description = _save(tiny(), tmp_path)
    doc = json.loads(description.read_text())

    def rewrite(**changes):
        description.write_text(json.dumps({**doc, **changes}))

    rewrite(config={**doc["config"], "embed_dim": 192, "num_heads": 3})
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_focus(weights, device="cpu")
    rewrite(config={**doc["config"], "depth": 3})
    with pytest.raises(CheckpointError, match="missing keys"):
        load_focus(weights, device="cpu")
    rewrite(config={**doc["config"], "backbone": "resnet18"})
    with pytest.raises(CheckpointError, match="cannot build model"):
        load_focus(weights, device="cpu")
    rewrite(model="efb4_fpn")
    with pytest.raises(CheckpointError, match="expected 'focus'"):
        load_focus(weights, device="cpu")
    rewrite(step=8)
    with pytest.raises(CheckpointError, match="different saves"):
        load_focus(weights, device="cpu")
    rewrite()
    tensors = load_file(str(weights))
    tensors.pop("fusion_head.bias")
    save_file(tensors, str(weights), metadata={"step": "7"})
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_focus(weights, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_focus(tmp_path / "nothing.safetensors", device="cpu")


def test_bundled_checkpoint_ships_loads_and_beats_a_uniform_map():
    """The bundled model (docs/focus.md): small, safetensors + JSON with its
    provenance, and on the sample tree's fakes its maps (as `annotate folder`
    writes them, label unknown) rank the true mask pixels above the rest and
    overlap the true masks better than an all-ones map."""
    from pathlib import Path

    from ffmask import fidelity

    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_CHECKPOINT.stat().st_size < 8 * 2**20
    meta = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert meta["model"] == "focus" and "synth" in meta["provenance"]["data"]
    assert "ffmask train focus" in meta["provenance"]["real_use"]
    assert isinstance(load_focus(device="cpu"), FocusAnnotator)

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
    faces = fidelity.collect_faces(sample, compressions=("c23",), frames=2)
    rows = {r["method"]: r for r in fidelity.summarise(fidelity.evaluate(faces, ["focus", "uniform"], device="cpu"))}
    assert rows["focus"]["auc"] > 0.65, rows["focus"]
    assert rows["focus"]["iou"] > rows["uniform"]["iou"] + 0.05, rows


def test_pretrained_backbone_loading(tmp_path):
    import timm
    from safetensors.torch import save_file

    model = tiny()
    torch.manual_seed(5)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000, img_size=64, depth=2, embed_dim=96)
    state = vit.state_dict()
    save_file(state, str(tmp_path / "in1k.safetensors"))
    report = load_pretrained_backbone(model, tmp_path / "in1k.safetensors")
    assert "pos_embed" in report.skipped and "head.weight" in report.skipped
    assert report.missing == [] and report.unexpected == []
    for branch in (model.rgb_branch, model.sobel_branch):
        assert torch.equal(branch.vit.blocks[1].mlp.fc2.weight, state["blocks.1.mlp.fc2.weight"])
        assert torch.equal(branch.vit.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert not torch.equal(model.rgb_branch.vit.pos_embed, state["pos_embed"])

    torch.save({"model": {"module." + k: v for k, v in state.items()}, "epoch": 3}, tmp_path / "in1k.pth")
    assert len(load_pretrained_backbone(tiny(), tmp_path / "in1k.pth").loaded) == len(report.loaded)

    bigger = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64, depth=2)
    save_file(bigger.state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_pretrained_backbone(model, tmp_path / "other.safetensors")
    save_file({"foo": torch.zeros(3)}, str(tmp_path / "foo.safetensors"))
    with pytest.raises(CheckpointError, match="no tensor"):
        load_pretrained_backbone(model, tmp_path / "foo.safetensors")


# ---------------------------------------------------------------- inference API


@pytest.fixture(scope="module")
def annotator(tmp_path_factory):
    directory = tmp_path_factory.mktemp("focus_ckpt")
    model = tiny(seed=2)
    save_checkpoint(directory / "best", model, model_name="focus", config=model.config.to_dict(), step=1)
    return load_focus(directory, device="cpu")


def test_annotator_maps_follow_labels(annotator):
    from skimage.data import astronaut

    # 80 px crops: the annotator resizes them to the model's 64 and the maps back to 80.
    img = astronaut()
    crops = np.stack([cv2.resize(img[y:y + 200, x:x + 200], (80, 80), interpolation=cv2.INTER_AREA)
                      for y, x in [(0, 150), (50, 100), (250, 50), (300, 300), (120, 200)]])
    labels = np.array([1, 0, -1, 1, -1])
    maps, probs = annotator(crops, labels, batch_size=2)
    assert maps.shape == (5, 80, 80) and maps.dtype == np.float32
    assert probs.shape == (5,) and probs.dtype == np.float32
    assert np.all(maps[1] == 0)
    assert maps.min() >= 0 and maps.max() <= 1

    # Independent reference: the model on the resized crops, maps upsampled by OpenCV.
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        out = annotator.model(x)
    for i, key in [(0, "a_fus"), (3, "a_fus"), (2, "a_fus_fake"), (4, "a_fus_fake")]:
        ref = cv2.resize(getattr(out, key)[i].numpy(), (80, 80), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(maps[i], ref, atol=1e-5)
    np.testing.assert_allclose(probs, out.logits_fus.softmax(-1)[:, 1].numpy(), atol=1e-6)
    assert not np.allclose(maps[2], cv2.resize(out.a_fus[2].numpy(), (80, 80), interpolation=cv2.INTER_LINEAR))

    maps1, probs1 = annotator(crops, labels, batch_size=64)
    np.testing.assert_allclose(maps1, maps, atol=1e-6)
    np.testing.assert_allclose(probs1, probs, atol=1e-6)
    empty_maps, empty_probs = annotator(np.zeros((0, 80, 80, 3), np.uint8), np.zeros(0, int))
    assert empty_maps.shape == (0, 80, 80) and empty_probs.shape == (0,)


def test_annotator_rejects_bad_input(annotator):
    good = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        annotator(good.astype(np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        annotator(good[..., 0], np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must be"):
        annotator(good, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="got \\[2\\]"):
        annotator(good, np.array([0, 2]))
    with pytest.raises(ValueError, match="batch_size"):
        annotator(good, np.array([0, 1]), batch_size=0)
    assert math.isclose(annotator.img_size, 64)


# ---------------------------------------------------------------- fixes of issue 12


def _cl_with_fixed_scores(score_a: float, score_b: float):
    """A ComplementaryLearning whose scorers output constants (last layer zeroed, bias set)."""
    from ffmask.models.layers import ComplementaryLearning

    cl = ComplementaryLearning(8, tau=1.0)
    with torch.no_grad():
        for scorer, value in ((cl.score_a, score_a), (cl.score_b, score_b)):
            scorer[-1].weight.zero_()
            scorer[-1].bias.fill_(value)
    return cl


@pytest.mark.parametrize("score_a, score_b", [(30.0, -30.0), (0.0, 0.0), (-30.0, 30.0)])
def test_complementary_learning_adds_gumbel_noise_to_probabilities(score_a, score_b):
    """Algorithm 1: noisy = (softmax(s) + g) / tau. With p = softmax(s), modality a wins
    when p_a + g_a > p_b + g_b; g_a - g_b is standard logistic, so P(a) = sigmoid(p_a - p_b),
    between sigmoid(-1) = 0.269 and sigmoid(1) = 0.731. Noise on log-probabilities would
    give P(a) = p_a, i.e. 1.0 / 0.5 / 0.0 here."""
    torch.manual_seed(0)
    cl = _cl_with_fixed_scores(score_a, score_b).train()
    z = torch.randn(50, 400, 8)
    p = torch.softmax(torch.tensor([score_a, score_b]), 0)
    expected = 1.0 / (1.0 + math.exp(-(float(p[0]) - float(p[1]))))
    share = float(cl(z, z).detach().mean())
    assert share == pytest.approx(expected, abs=0.01)
    # Eval: no noise, the argmax of p.
    eval_share = float(cl.eval()(z, z).detach().mean())
    assert eval_share == (1.0 if score_a > score_b else 0.0 if score_a < score_b else eval_share)


def test_model_reports_token_shares_and_cl_probabilities(faces64):
    model = tiny().eval()
    with torch.no_grad():
        out = model(faces64)
    assert out.rgb_share.shape == (4,)
    assert torch.allclose(out.rgb_share, out.mask.mean(dim=1))
    # In eval the kept modality is the more probable one.
    assert torch.equal(out.mask.bool(), out.p_rgb >= 0.5) or torch.equal(out.mask.bool(), out.p_rgb > 0.5)


def test_sobel_input_is_standardised_with_its_own_statistics(faces64):
    """The Sobel magnitude crowds near 0: (x - 0.5) / 0.5 left it nearly constant
    (mean about -0.9). Each Sobel image is standardised with its own mean and std."""
    model = tiny()
    sobel = SobelFilter()(faces64)
    x = model.sobel_input(faces64)
    flat = x.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(4), atol=0.02)
    # An independent computation with numpy.
    ref = sobel.numpy()
    ref = (ref - ref.mean(axis=(1, 2, 3), keepdims=True)) / (ref.std(axis=(1, 2, 3), keepdims=True) + 1e-3)
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-4)
    # A flat image has no gradient: zeros, not noise blown up.
    grey = torch.full((1, 3, 64, 64), 0.5)
    assert torch.count_nonzero(model.sobel_input(grey)) == 0
    # Checkpoints written before the option keep the normalisation they were trained with.
    legacy = tiny(sobel_norm="shared")
    torch.testing.assert_close(legacy.sobel_input(faces64), (sobel - 0.5) / 0.5)


def test_checkpoint_without_sobel_norm_loads_as_legacy(tmp_path, faces64):
    model = tiny(sobel_norm="shared")
    save_checkpoint(tmp_path / "old", model, model_name="focus", config=model.config.to_dict(), step=1)
    doc = json.loads((tmp_path / "old.json").read_text())
    del doc["config"]["sobel_norm"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    loaded = load_focus(tmp_path / "old.json", device="cpu").model
    assert loaded.config.sobel_norm == "shared"
    with torch.no_grad():
        torch.testing.assert_close(loaded(faces64).a_fus, model.eval()(faces64).a_fus)


def test_cnn_branch_tokens_follow_content_not_position():
    """The lite0 variant has no position encoding: moving the content by 2 tokens
    (32 px) moves the central tokens with it, so each central token of the moved
    crop is most similar to the token that saw the same content, not to the one
    at the same grid place (a ViT's sin-cos encodings differ per grid cell)."""
    model = create_model("focus_lite0", img_size=128, maps_per_class=4).eval()
    load_pretrained_backbone(model, "lite0")
    assert not any("pos_embed" in k for k in model.state_dict()) and model.grid == (8, 8)
    from skimage.data import astronaut

    big = cv2.resize(astronaut(), (192, 192), interpolation=cv2.INTER_AREA)
    big = torch.from_numpy(big).permute(2, 0, 1)[None].float() / 255.0
    a, b = big[..., 0:128, 0:128], big[..., 32:160, 32:160]
    with torch.no_grad():
        za = model.rgb_branch(model._normalise(a))[0]  # (64, C), row-major 8 x 8
        zb = model.rgb_branch(model._normalise(b))[0]
    sim = F.normalize(zb, dim=-1) @ F.normalize(za, dim=-1).T  # (64 of b, 64 of a)
    for i, j in itertools.product(range(2, 4), range(2, 4)):
        assert int(sim[i * 8 + j].argmax()) == (i + 2) * 8 + (j + 2), (i, j)
        assert sim[i * 8 + j, (i + 2) * 8 + (j + 2)] > sim[i * 8 + j, i * 8 + j]


def test_lite0_imagenet_weights_fill_both_cnn_branches():
    from ffmask.models.pretrained import lite0_state_dict

    model = create_model("focus_lite0", img_size=64, maps_per_class=4)
    report = load_pretrained_backbone(model, "lite0")
    state = lite0_state_dict()
    assert report.missing == [] and "classifier.weight" in report.unexpected
    assert "conv_head.weight" in report.unexpected  # stages after stride 16 are cut away
    for branch in (model.rgb_branch, model.sobel_branch):
        assert torch.equal(branch.net.conv_stem.weight, state["conv_stem.weight"])
        assert torch.equal(branch.net.blocks[4][0].conv_pwl.weight, state["blocks.4.0.conv_pwl.weight"])


def test_frozen_stages_get_no_gradient_and_keep_batchnorm_statistics():
    torch.manual_seed(0)
    model = create_model("focus_lite0", img_size=64, maps_per_class=4)
    frozen = model.freeze_stages(3)
    net = model.rgb_branch.net
    assert frozen == 2 * sum(p.numel() for m in (net.conv_stem, net.bn1, *net.blocks[:3]) for p in m.parameters())
    model.train()
    assert not net.bn1.training and not net.blocks[2][0].bn1.training and net.blocks[3][0].bn1.training
    stats = net.bn1.running_mean.clone()
    out = model(torch.rand(4, 3, 64, 64))
    (out.logits_rgb.sum() + out.logits_sobel.sum() + out.logits_fus.sum()).backward()
    assert torch.equal(net.bn1.running_mean, stats)
    assert all(p.grad is None for p in net.blocks[2].parameters()) and net.conv_stem.weight.grad is None
    assert net.blocks[3][0].conv_pw.weight.grad is not None and float(net.blocks[3][0].conv_pw.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="can freeze 0..5"):
        model.freeze_stages(9)


def test_cnn_token_stride_8_cuts_lite0_after_its_40_channel_stage():
    """--token-stride 8: tokens from blocks.2 (40 channels), an 8 x 8 grid at 64 px; the stored
    config holds the resolved stride (16 by default), and a ViT refuses CNN-only fields."""
    model = create_model("focus_lite0", img_size=64, maps_per_class=4, token_stride=8)
    assert model.grid == (8, 8) and model.rgb_branch.embed_dim == 40 and model.config.token_stride == 8
    out = model.eval()(torch.rand(2, 3, 64, 64))
    assert out.a_fus_fake.shape == (2, 8, 8) and out.mask.shape == (2, 64)
    assert not any(k.startswith("rgb_branch.net.blocks.3") for k in model.state_dict())  # later stages cut away
    assert create_model("focus_lite0", img_size=64, maps_per_class=4).config.token_stride == 16
    with pytest.raises(ValueError, match="token_stride must be one of"):
        FocusConfig(backbone="tf_efficientnet_lite0", token_stride=12)
    with pytest.raises(ValueError, match="cnn_padding must be one of"):
        FocusConfig(backbone="tf_efficientnet_lite0", cnn_padding="circular")
    for field in ({"token_stride": 8}, {"cnn_padding": "reflect"}):
        with pytest.raises(ValueError, match="applies to CNN backbones only"):
            FocusNet(FocusConfig(**{**TINY, **field}))
    with pytest.raises(ValueError, match="needs img_size >= 64"):
        create_model("focus_lite0", img_size=32, cnn_padding="reflect")


def test_reflect_padding_hides_the_border_from_cnn_tokens():
    """Zero padding tells a border token where it is: on a flat grey image the zero-padded
    lite0 tokens differ between border and centre, the reflect-padded ones are all equal.
    Same parameters (names and values) either way; a TF-"same" stride-2 convolution pads
    (0, 1) on an even input, by reflection."""
    torch.manual_seed(0)
    zeros = create_model("focus_lite0", img_size=64, maps_per_class=4, token_stride=8).eval()
    torch.manual_seed(0)
    reflect = create_model("focus_lite0", img_size=64, maps_per_class=4, token_stride=8, cnn_padding="reflect").eval()
    for m in (zeros, reflect):
        load_pretrained_backbone(m, "lite0")
    sz, sr = zeros.state_dict(), reflect.state_dict()
    assert sz.keys() == sr.keys() and all(torch.equal(sz[k], sr[k]) for k in sz)
    grey = torch.full((1, 3, 64, 64), 0.4)
    with torch.no_grad():
        tz = zeros.rgb_branch(zeros._normalise(grey))[0]  # (64, 40)
        tr = reflect.rgb_branch(reflect._normalise(grey))[0]
        centre = 3 * 8 + 3
        assert float((tz - tz[centre]).abs().amax()) > 0.05
        assert float((tr - tr[centre]).abs().amax()) < 1e-4
        out = reflect(grey)
        assert float(out.a_fus_fake.std()) < 1e-5 and float(out.car_rgb.std()) < 1e-5

    from ffmask.models.focus import _ReflectSameConv2d

    same = [m for m in reflect.rgb_branch.net.modules() if isinstance(m, _ReflectSameConv2d)]
    assert len(same) == 3 and same[0].stride == (2, 2) and same[0].kernel_size == (3, 3)
    conv = same[0]
    x = torch.rand(1, conv.in_channels, 8, 8)
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, 1), (0, 1)), mode="reflect"))
    expected = F.conv2d(padded, conv.weight, conv.bias, stride=2, groups=conv.groups)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-2:] == (4, 4)


def test_reflect_stride8_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("focus_lite0", img_size=64, maps_per_class=4, token_stride=8, cnn_padding="reflect").eval()
    save_checkpoint(tmp_path / "m", model, model_name="focus", config=model.config.to_dict(), step=1)
    loaded = load_focus(tmp_path / "m.json", device="cpu")
    assert loaded.config.cnn_padding == "reflect" and loaded.grid_size == 8
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).a_fus_fake, model(x).a_fus_fake)
