"""hull's learned refinement: shipped weights, behaviour on real synth pairs, training recipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ffmask  # noqa: F401
from _mask_contract import check_pair_mask_contract
from ffmask import targets
from ffmask.targets import hull_net
from ffmask.targets.hull import hull_mask, hull_net_mask, hull_rules_mask

ROOT = Path(__file__).resolve().parents[1]


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


@pytest.fixture(scope="module")
def held_out_pairs(tmp_path_factory):
    """Real synth pairs of families and a person the net never saw (mouth / eyes / inner; swap / warp /
    sharpen; Obama), x264 CRF 40, 256 px, dlib landmarks: seed 5 (not a benchmark seed)."""
    from ffmask.synth.pairs import build_pairs, read_pairs

    out = tmp_path_factory.mktemp("pairs")
    build_pairs(out, seed=5, n=8, identities=("obama", "obama2-mirrored"), regions=("mouth", "eyes", "inner"),
                operations=("swap", "warp", "sharpen"), compressions=("c40",))
    return list(read_pairs(out))


def test_weights_are_small_safetensors_for_this_architecture():
    from safetensors import safe_open

    assert hull_net.WEIGHTS.is_file() and hull_net.WEIGHTS.stat().st_size < 1_000_000
    with safe_open(str(hull_net.WEIGHTS), framework="pt", device="cpu") as fh:
        meta = fh.metadata()
        n = sum(fh.get_tensor(k).numel() for k in fh.keys())
    assert '"res": 64' in meta["config"] and "tuning" in meta["info"]
    assert 5_000 < n < 200_000
    assert hull_net.load_net() is hull_net.load_net()  # cached per process


def test_held_out_families_at_c40_beat_mscc_and_keep_up_with_the_rules(held_out_pairs):
    # On the 300-face held-out benchmark (seed 23) the refinement gains only
    # +0.014 IoU over the rules at c40 (docs/hull.md); on these 8 pairs it may
    # trail them a little, so the test holds it to the rules within 0.06 and
    # to a clear margin over mscc, with and without landmarks.
    refined = np.mean([_iou(hull_net_mask(s.real, s.fake, s.landmarks), s.truth) for s in held_out_pairs])
    rules = np.mean([_iou(hull_rules_mask(s.real, s.fake, s.landmarks), s.truth) for s in held_out_pairs])
    mscc = np.mean([_iou(targets.mscc_mask(s.real, s.fake), s.truth) for s in held_out_pairs])
    nolm = np.mean([_iou(hull_net_mask(s.real, s.fake), s.truth) for s in held_out_pairs])
    assert refined > rules - 0.06, (refined, rules)
    assert refined > mscc + 0.15, (refined, mscc)
    assert nolm > mscc + 0.1, (nolm, mscc)


def test_deterministic_any_size_and_empty_for_identical_images(held_out_pairs):
    s = held_out_pairs[0]
    real, fake = check_pair_mask_contract(hull_net_mask, s)
    assert hull_net_mask(real[:97, :97], fake[:97, :97]).shape == (97, 97)


def test_shape_options_and_bad_options(held_out_pairs):
    s = held_out_pairs[1]
    raw = hull_net_mask(s.real, s.fake, s.landmarks)  # default: the pixels as they are
    per_component = hull_net_mask(s.real, s.fake, s.landmarks, shape="component")
    largest = hull_net_mask(s.real, s.fake, s.landmarks, shape="largest")
    assert raw.any() and (largest <= per_component).all() and (raw <= per_component).all()
    # the rules' mask is part of the default mask (but for specks below min_area, dropped);
    # the net alone at a high threshold is smaller
    rules = hull_rules_mask(s.real, s.fake, s.landmarks)
    assert rules.any() and np.count_nonzero(rules & ~raw) <= 0.002 * rules.size
    assert (hull_net_mask(s.real, s.fake, s.landmarks, with_rules=False, threshold=0.9) <= raw).all()
    with pytest.raises(ValueError, match="shape"):
        hull_net_mask(s.real, s.fake, shape="star")
    with pytest.raises(ValueError, match="threshold"):
        hull_net_mask(s.real, s.fake, threshold=1.0)
    with pytest.raises(ValueError, match="not found"):
        hull_net_mask(s.real, s.fake, weights=Path("/nonexistent/w.safetensors"))


def test_registered_as_hull_net_next_to_hull_and_the_rules():
    assert targets.get_method("hull-net").fn is hull_net_mask and targets.get_method("hull-net").landmarks
    assert targets.get_method("hull").fn is hull_mask
    assert targets.get_method("hull-rules").fn is hull_rules_mask


def test_importing_targets_does_not_import_torch():
    code = "import sys, ffmask.targets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_training_recipe_smoke_run_writes_loadable_weights(tmp_path, held_out_pairs):
    out = tmp_path / "w.safetensors"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_hull_refine.py"), "--smoke",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and out.stat().st_size < 1_000_000
    net = hull_net.load_net(out)
    assert net is not hull_net.load_net()
    s = held_out_pairs[0]
    mask = hull_net_mask(s.real, s.fake, s.landmarks, weights=out)
    assert mask.shape == s.truth.shape


def test_training_is_deterministic_per_seed():
    import torch

    from ffmask.targets import hull_train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, len(hull_net.CHANNELS), 64, 64)).astype(np.float16)
    y = (rng.random((6, 1, 64, 64)) > 0.7).astype(np.float16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b, c = (hull_train.train(x, y, steps=3, batch=4, seed=s, log=lambda m: None) for s in (1, 1, 2))
    finally:
        torch.set_num_threads(threads)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
