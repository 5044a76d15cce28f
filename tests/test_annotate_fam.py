"""``--method fam``: Forgery Attention Maps of a trained evaluator, end to end on real files, and ``--checkpoint``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ffmask.annotate import annotate
from ffmask.cli import app
from ffmask.errors import CheckpointError, OptionError
from ffmask.metrics import roc_auc
from ffmask.models.checkpoint import save_checkpoint
from ffmask.pipeline import JobSpec
from ffmask.shards import ShardIndex, find_shards, validate_shard
from ffmask.synth.tree import build_synth
from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

SIZE = 64
HELD_OUT = ("004", "005")  # originals 004/005 and the fakes whose target they are: never trained on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synth FF++ tree, 64 px shards with the true masks, and an efb4-fpn detector trained on originals 000-003."""
    base = tmp_path_factory.mktemp("fam")
    root = base / "tree"
    build_synth(root, seed=7, identities=6, frames=8, compressions=("c23",),
                manipulations=("Deepfakes", "FaceSwap"), jobs=1)
    annotate("ff++", root, base / "shards", JobSpec(methods=("official",), frames=4, size=SIZE), videos_per_shard=1)
    shards = sorted(find_shards(base / "shards"))
    assert len(shards) == 6  # one per original: shard k = original k and the fakes targeting it
    run = base / "run"
    train_evaluator(shards[:4], run, model="efb4-fpn",
                    config={"backbone": "tf_efficientnet_lite0", "img_size": SIZE, "map_size": 16, "fpn_channels": 8},
                    args=EvaluatorTrainArgs(iters=25, batch_size=12, lr=1e-3, val_every=0, seed=0, device="cpu",
                                            pretrained="lite0"))
    return {"root": root, "run": run}


def _faces(out):
    for p in find_shards(out):
        assert validate_shard(p) == []
    index = ShardIndex(out, ["fam", "official"])
    return [index.read(i) for i in range(len(index))]


def test_cli_fam_concentrates_on_the_true_masks_of_held_out_fakes(trained, tmp_path):
    from ffmask.models.fam_method import fam_batch, load_model

    out = tmp_path / "fam"
    argv = ["annotate", "ff++", trained["root"], "--method", "fam,official", "--checkpoint", f"fam={trained['run']}",
            "--frames", 4, "--size", SIZE, "--out", out, "--jobs", 1]
    result = CliRunner().invoke(app, [str(a) for a in argv])
    assert result.exit_code == 0, (result.output, result.exception)
    faces = _faces(out)
    assert len(faces) == 72
    for f in faces:
        m = f["maps"]["fam"]
        assert m.shape == (SIZE, SIZE) and m.min() >= 0 and m.max() == pytest.approx(1.0, abs=2e-3)  # per face
    held = [f for f in faces if f["label"] == 1 and f["original_id"].endswith(HELD_OUT)]
    assert len(held) == 16
    truth = np.concatenate([f["maps"]["official"].ravel() > 0.5 for f in held])
    auc = roc_auc(truth, np.concatenate([f["maps"]["fam"].ravel() for f in held]))
    print(f"FAM pixel AUC vs true masks, held-out fakes: {auc:.3f} (a uniform map: 0.5)")
    assert auc > 0.6
    # the stored maps and probabilities are the checkpoint's FAMs of the stored crops
    some = faces[::9]
    maps, extras = fam_batch(load_model(str(trained["run"]), "cpu"), np.stack([f["image"] for f in some]),
                             np.array([f["label"] for f in some]))
    np.testing.assert_allclose(np.stack([f["maps"]["fam"] for f in some]), maps, rtol=0, atol=2.5e-3)  # stored at 8 bits
    np.testing.assert_allclose([f["fam_prob"] for f in some], extras["fam_prob"], rtol=0, atol=1e-5)


def test_fam_on_an_unpaired_folder_with_a_bare_checkpoint(trained, tmp_path):
    folder = trained["root"] / "manipulated_sequences" / "FaceSwap"
    spec = JobSpec(methods=("fam", "noise"), frames=2, size=SIZE, checkpoints=str(trained["run"]))
    assert spec.checkpoints == (("fam", str(trained["run"])),)
    report = annotate("folder", folder, tmp_path / "o", spec, limit=2)
    assert report.videos["ok"] == 2
    faces = ShardIndex(tmp_path / "o", ["fam"])
    assert len(faces) == 4 and "fam_prob" in faces.extras
    for i in range(len(faces)):
        f = faces.read(i)
        assert f["label"] == -1 and f["maps"]["fam"].max() == pytest.approx(1.0, abs=2e-3)
        assert 0 <= f["fam_prob"] <= 1


@pytest.fixture(scope="module")
def tiny_rfm(tmp_path_factory):
    from ffmask.models.evaluators import create_evaluator

    model = create_evaluator("rfm", backbone="tf_efficientnet_lite0", img_size=32)
    stem = tmp_path_factory.mktemp("ckpt") / "rfm"
    save_checkpoint(stem, model, model_name="rfm", config=model.config.to_dict())
    return stem.with_name("rfm.json")


def test_checkpoint_option_per_method():
    both = ("fam", "focus")
    spec = JobSpec(methods=both, checkpoints="fam=a/b.json, focus=c")
    assert spec.checkpoint_for("fam") == "a/b.json" and spec.checkpoint_for("focus") == "c"
    spec = JobSpec(methods=both, checkpoints={"fam": "x"})
    assert spec.checkpoint_for("fam") == "x" and spec.checkpoint_for("focus") is None  # focus: the bundled one
    assert JobSpec(methods=("focus",), checkpoints="we=ird,path").checkpoint_for("focus") == "we=ird,path"
    assert JobSpec(methods=("fam",)).checkpoints == ()
    for methods, value, message in [
        (both, "ckpt/", "ambiguous with several model-backed methods"),
        (("mscc",), "ckpt/", "none is requested"),
        (("fam", "mscc"), "fam=a,mscc=b", "'mscc', which is not a requested model-backed method"),
        (("fam",), "focus=a", "'focus', which is not a requested model-backed method"),
        (both, "fam=a,b", "METHOD=PATH for every entry"),
        (("fam",), "fam=", "the path is empty"),
        (("fam",), 3, "checkpoints must be"),
    ]:
        with pytest.raises(OptionError, match=message):
            JobSpec(methods=methods, checkpoints=value)


def test_fam_checks_its_checkpoint_before_any_work(trained, tiny_rfm, tmp_path):
    from ffmask import targets

    spec = targets.get_method("fam")
    assert spec.batched and spec.extras == ("fam_prob",) and "fam" not in targets.METHODS
    spec.check(JobSpec(methods=("fam",), checkpoints=str(tiny_rfm)))  # any evaluator's checkpoint
    with pytest.raises(OptionError, match="--checkpoint fam=CKPT"):
        annotate("ff++", trained["root"], tmp_path / "a", JobSpec(methods=("fam",), frames=1, size=SIZE))
    focus_like = tmp_path / "f"
    focus_like.mkdir()
    (focus_like / "m.json").write_text(tiny_rfm.read_text().replace('"model": "rfm"', '"model": "focus"'))
    (focus_like / "m.safetensors").write_bytes(tiny_rfm.with_suffix(".safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="not an evaluator"):
        annotate("ff++", trained["root"], tmp_path / "b", JobSpec(methods=("fam",), frames=1, size=SIZE,
                                                                 checkpoints=str(focus_like / "m.json")))
    with pytest.raises(CheckpointError, match="not found"):
        spec.check(JobSpec(methods=("fam",), checkpoints=str(tmp_path / "missing.json")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # the console script: one line, no traceback
    proc = subprocess.run([sys.executable, "-m", "ffmask", "annotate", "ff++", str(trained["root"]), "--method",
                           "fam,focus", "--checkpoint", str(tiny_rfm), "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ambiguous" in proc.stderr and "fam=PATH,focus=PATH" in proc.stderr


def test_runs_recorded_before_checkpoints_still_resume():
    from dataclasses import asdict

    from ffmask.shards.runconfig import comparable as _comparable

    new = {"job": asdict(JobSpec(methods=("focus", "mscc"), checkpoints="focus=ck/")), "jobs": 2}
    new = __import__("json").loads(__import__("json").dumps(new))
    old = {"job": dict(new["job"], focus_checkpoint="ck/"), "jobs": 1}
    del old["job"]["checkpoints"]
    assert _comparable(old) == _comparable(new)
    old["job"]["focus_checkpoint"] = None
    assert _comparable(old) != _comparable(new)
    assert _comparable(old)["job"]["checkpoints"] == []
