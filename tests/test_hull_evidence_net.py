"""The learned local evidence map of hull (ffmask.targets.experiments.hull_evidence) and its training script: the NumPy
inference against the torch model it was exported from, on real synth crops of any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ffmask  # noqa: F401
from ffmask.targets.experiments import hull_evidence as he
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("scripts/train_hull_evidence.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two real synth pairs (seed 7, CRF 30), cached and trained on for a few steps by the script's own commands."""
    from ffmask.synth.pairs import build_pairs

    tmp = tmp_path_factory.mktemp("evidence")
    folder = tmp / "pairs"
    build_pairs(folder, seed=7, n=2, regions=("nose",), operations=("blur",), compressions=("c30",))
    script = _script()
    assert script.main(["cache", str(folder), "--out", str(tmp / "cache.npz"), "--stride", "1"]) == 0
    assert script.main(["train", str(tmp / "cache.npz"), "--out", str(tmp / "w.npz"), "--minutes", "0.02",
                        "--val-every", "2"]) == 0
    return script, folder, tmp


def test_cache_holds_the_inputs_and_the_area_resized_truth(trained):
    from ffmask.synth.pairs import read_pairs

    _, folder, tmp = trained
    with np.load(tmp / "cache.npz", allow_pickle=False) as z:
        x, y, names = z["x"], z["y"], list(z["names"])
    samples = list(read_pairs(folder))
    assert x.shape == (2, len(he.CHANNELS), 96, 96) and y.shape == (2, 96, 96) and len(names) == 2
    s = samples[0]
    np.testing.assert_allclose(x[0].astype(np.float32), he.evidence_inputs(s.real, s.fake), atol=2e-3, rtol=1e-3)
    # the target is the changed share of each working pixel: its mean is the truth's share of the crop
    assert abs(float(y[0].astype(np.float32).mean()) - float(s.truth.mean())) < 2e-3
    assert 0 < float(y[0].max()) <= 1 and float(y[0].min()) == 0


def test_numpy_inference_equals_the_torch_model_on_real_crops_of_any_size(trained):
    import torch

    script, folder, tmp = trained
    from ffmask.synth.pairs import read_pairs

    net = script.make_net(len(he.CHANNELS))
    net.load_state_dict(torch.load(tmp / "w.pt"))
    layers = he.load_weights(tmp / "w.npz")
    s = next(iter(read_pairs(folder)))
    # the working size (256 -> 96), a crop below it used as it is, a non-square one, and one of 5 x 6 px
    for real, fake in ((s.real, s.fake), (s.real[:60, :50], s.fake[:60, :50]), (s.real[10:200, 30:130],
                                                                                 s.fake[10:200, 30:130]),
                       (s.real[:5, :6], s.fake[:5, :6])):
        x = he.evidence_inputs(real, fake)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)[None])[0, 0].numpy()
        got = he.forward(x, layers)
        assert got.shape == x.shape[1:] and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
        p = he.evidence_map(real, fake, path=tmp / "w.npz")
        assert np.array_equal(p, he.evidence_map(real, fake, path=tmp / "w.npz"))  # deterministic
        assert p.shape == got.shape and (p >= 0).all() and (p <= 1).all()


def test_inputs_are_pair_relative_and_know_no_position(trained):
    _, folder, _ = trained
    from ffmask.synth.pairs import read_pairs

    s = next(iter(read_pairs(folder)))
    x = he.evidence_inputs(s.real, s.fake)
    # mirroring the pair mirrors every input map: nothing encodes where a pixel is
    np.testing.assert_allclose(he.evidence_inputs(s.real[:, ::-1].copy(), s.fake[:, ::-1].copy()), x[:, :, ::-1],
                               atol=1e-5)
    # identical images: no residual at all, the scale at its floor
    same = he.evidence_inputs(s.real, s.real)
    assert not same[:4].any() and np.allclose(same[8], np.log(he.SCALE_FLOOR))
    # a global brightness change of the fake moves the residual, not the original's maps
    brighter = he.evidence_inputs(s.real, np.clip(s.fake.astype(int) + 20, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(brighter[4:8], x[4:8])
    assert brighter[1:4].mean() > x[1:4].mean()


def test_weights_file_is_checked(trained, tmp_path):
    _, _, tmp = trained
    with pytest.raises(ValueError, match="not found"):
        he.load_weights(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read hull evidence weights"):
        he.load_weights(bad)
    with np.load(tmp / "w.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["channels"] = np.array(json.dumps(["log_abs"]))
    other = tmp_path / "other.npz"
    np.savez(other, **arrays)
    with pytest.raises(ValueError, match="other input maps"):
        he.load_weights(other)
    if not he.WEIGHTS.exists():  # no weights ship (session 11's net did not pass its gate): a one-line error
        with pytest.raises(ValueError, match="not found"):
            he.evidence_map(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3), np.uint8))


def test_proxy_scores_the_net_variants_and_their_union(trained):
    # scripts/evidence_proxy.py (the gate's measure): every net variant gets its candidate oracle; the union of the
    # shipped map's and the net's candidates is the better of the two per sample
    proxy = load_script("scripts/evidence_proxy.py")
    _, folder, tmp = trained
    names = ("abs", "net", "gate_abs_net")
    rows = proxy.score_folder(folder, limit=1, stride=1, names=names, net=he.load_weights(tmp / "w.npz"))
    assert len(rows) == 2 and [r["lm"] for r in rows] == [True, False]
    for r in rows:
        assert r["union_abs_net:orc"] == max(r["abs:orc"], r["net:orc"])
        assert all(0 <= r[f"{n}:orc"] <= 1 for n in names)
    assert "net:thr" in rows[0] and "net:thr" not in rows[1]  # the ceilings once per pair
    assert "union_abs_net" in proxy.summary(rows, names)


def test_training_refuses_report_seeds(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "pairs.json").write_text(json.dumps({"seed": 30, "compressions": [], "samples": []}))
    with pytest.raises(SystemExit, match="report seed 30"):
        _script().main(["cache", str(folder), "--out", str(tmp_path / "c.npz")])
    # a folder that is not a pairs folder, a cache that does not exist: one line each, no traceback
    with pytest.raises(SystemExit, match="^error: .*pairs.json"):
        _script().main(["cache", str(tmp_path), "--out", str(tmp_path / "c.npz")])
    with pytest.raises(SystemExit, match="^error: "):
        _script().main(["train", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "w.npz")])
