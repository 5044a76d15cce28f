"""`--method focus` in the pipeline, with a small real FoCus checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from ffmask.annotate import annotate
from ffmask.errors import CheckpointError
from ffmask.models import create_model
from ffmask.models.checkpoint import save_checkpoint
from ffmask.pipeline import JobSpec
from ffmask.shards import ShardIndex, find_shards, validate_shard
from ffmask.synth.tree import build_synth


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    cfg = dict(backbone="vit_tiny_patch16_224", img_size=64, depth=1)
    model = create_model("focus", **cfg)
    stem = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(stem, model, model_name="focus", config=model.config.to_dict())
    return stem.with_name("tiny.safetensors")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=5, identities=2, frames=6, compressions=("c23",), manipulations=("Deepfakes",))
    return root


def _read(out):
    rows = []
    for p in find_shards(out):
        assert validate_shard(p) == []
    index = ShardIndex(out, ["focus"])
    for i in range(len(index)):
        face = index.read(i)
        rows.append((face["label"], face["maps"]["focus"].astype(np.float32), face["focus_prob"], face["image"]))
    return rows


def _assert_model_made_them(rows, checkpoint):
    """The stored maps and probabilities are the checkpoint's output on the
    stored crops with the stored labels: no other face, label branch or model."""
    from ffmask.models.focus import load_focus

    crops = np.stack([r[3] for r in rows])
    labels = np.array([r[0] for r in rows])
    maps, probs = load_focus(checkpoint, device="cpu")(crops, labels)
    stored = np.stack([r[1] for r in rows])
    np.testing.assert_allclose(stored, np.asarray(maps, np.float32), rtol=0, atol=4e-3)  # the model grid stored as float16, upsampled on read
    np.testing.assert_allclose([r[2] for r in rows], np.asarray(probs, np.float64), rtol=0, atol=1e-5)
    # the label branch matters: the same crops read as unlabelled give other maps
    if (labels == 1).any():
        other, _ = load_focus(checkpoint, device="cpu")(crops, np.full_like(labels, -1))
        fake = labels == 1
        assert np.abs(np.asarray(other)[fake] - stored[fake]).max() > 1e-2


def test_paired_focus_real_faces_zero_fakes_mapped(synth_root, tiny_checkpoint, tmp_path):
    spec = JobSpec(methods=("focus", "mscc"), frames=2, size=64, checkpoints=str(tiny_checkpoint))
    report = annotate("ff++", synth_root, tmp_path / "o", spec)
    assert report.videos["ok"] == 4
    rows = _read(tmp_path / "o")
    reals = [r for r in rows if r[0] == 0]
    fakes = [r for r in rows if r[0] == 1]
    assert reals and fakes
    assert all(not r[1].any() for r in reals)  # known real faces get zeros, as the paper does
    for _, m, p, _ in fakes:
        assert m.shape == (64, 64) and 0 <= m.min() and m.max() <= 1 and m.std() > 0
        assert 0 <= p <= 1
    _assert_model_made_them(rows, tiny_checkpoint)


def test_unpaired_folder_gets_fake_class_maps(synth_root, tiny_checkpoint, tmp_path):
    folder = synth_root / "manipulated_sequences"
    spec = JobSpec(methods=("focus", "noise"), frames=2, size=64, checkpoints=str(tiny_checkpoint))
    report = annotate("folder", folder, tmp_path / "o", spec)
    rows = _read(tmp_path / "o")
    assert rows and all(r[0] == -1 for r in rows)
    assert all(r[1].max() > 0 for r in rows)  # unlabelled faces get a'_fus, not zeros
    _assert_model_made_them(rows, tiny_checkpoint)
    # the summary counts them as unlabelled, not as fakes
    s_fake, n_fake, _, n_real, s_unl, n_unl = report.coverage["focus"]
    assert (n_fake, n_real, n_unl) == (0, 0, len(rows))
    # the summary averages the model grid, readers get it upsampled (and in 1/255 steps)
    assert s_unl / n_unl == pytest.approx(np.mean([r[1].mean() for r in rows]), rel=0.02)


def test_default_bundled_model_on_a_folder_of_videos(synth_root, tmp_path):
    """`ffmask annotate folder VIDEOS --method focus,noise` with no checkpoint."""
    from typer.testing import CliRunner

    from ffmask.cli import app

    videos = tmp_path / "videos"
    videos.mkdir()
    for src in sorted((synth_root / "manipulated_sequences" / "Deepfakes" / "c23" / "videos").glob("*.mp4"))[:2]:
        (videos / src.name).write_bytes(src.read_bytes())
    result = CliRunner().invoke(app, ["annotate", "folder", str(videos), "--method", "focus,noise", "--frames", "2",
                                      "--size", "96", "--out", str(tmp_path / "o"), "--device", "cpu"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "unlabelled" in result.output
    rows = _read(tmp_path / "o")
    assert len(rows) == 4 and all(r[0] == -1 and r[1].shape == (96, 96) and r[1].std() > 0 for r in rows)
    _assert_model_made_them(rows, None)  # the bundled checkpoint


def test_untrusted_checkpoint_is_refused_before_any_work(synth_root, tmp_path):
    import pickle

    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps({"x": object()}))
    spec = JobSpec(methods=("focus",), frames=2, size=64, checkpoints=str(bad))
    with pytest.raises(CheckpointError):
        annotate("ff++", synth_root, tmp_path / "o", spec)
    assert not (tmp_path / "o").exists()
