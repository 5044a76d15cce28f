"""Special needs of a method are fields of its registry entry, never names in the pipeline.

A third model-backed method is registered here and annotated end to end
without any change to the pipeline; noise σ comes from the item; landmarks
are predicted only when a requested method takes them.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ffmask import targets
from ffmask.annotate import annotate
from ffmask.errors import CheckpointError
from ffmask.pipeline import JobSpec, annotate_groups, plan_groups
from ffmask.shards import ShardIndex
from ffmask.targets import registry


@pytest.fixture
def luma_method():
    """A model-backed method: the 'model' is a per-channel weight vector."""
    loads, batches = [], []

    def load(options):
        loads.append(options)
        return np.array([0.2, 0.5, 0.3], np.float32)

    def run(model, images, labels):
        batches.append(len(images))
        maps = (images.astype(np.float32) @ model) / 255.0
        return maps, {"luma_mean": maps.reshape(len(maps), -1).mean(axis=1)}

    targets.register_method("luma", run, kind="continuous", input="image", model=load, extras=("luma_mean",))
    yield SimpleNamespace(loads=loads, batches=batches)
    registry._SPECS.pop("luma")


def test_a_new_model_method_needs_no_pipeline_change(small_ff_root, tmp_path, luma_method):
    out = tmp_path / "o"
    report = annotate("ff++", small_ff_root, out, JobSpec(methods=("luma", "mscc"), frames=3, size=64),
                      videos_per_shard=10)
    assert report.videos["ok"] == 4 and report.faces > 0
    assert len(luma_method.loads) == 1  # loaded once in the (only) worker
    # one batch spans the four videos of the task, not one batch per video
    assert luma_method.batches == [report.faces]
    index = ShardIndex(out, ["luma"])
    assert index.extras == ("luma_mean",)
    for i in range(len(index)):
        face = index.read(i)
        expected = (0.2 * face["image"][..., 0] + 0.5 * face["image"][..., 1] + 0.3 * face["image"][..., 2]) / 255
        np.testing.assert_allclose(face["maps"]["luma"].astype(np.float32), expected, atol=2.5e-3)
        assert face["luma_mean"] == pytest.approx(expected.mean(), abs=2.5e-3)


def test_model_batches_are_bounded(small_ff_root, luma_method):
    from ffmask.datasets import get_dataset

    items = list(get_dataset("ff++", small_ff_root).items)
    groups = plan_groups(items, paired=True)
    results = list(annotate_groups(groups, JobSpec(methods=("luma",), frames=3, size=48), batch=1))
    assert len(results) == len(groups)
    # batch=1: released after every group, so no batch is larger than one group's faces
    assert len(luma_method.batches) == len(groups)
    assert sum(luma_method.batches) == sum(len(r.records) for r in results)


def test_noise_sigma_comes_from_the_item():
    spec = targets.get_method("noise")
    c23, c40 = SimpleNamespace(compression="c23"), SimpleNamespace(compression="c40")
    assert spec.item_kwargs(c23, JobSpec(methods=("noise",))) == {"sigma": 5.0}
    assert spec.item_kwargs(c40, JobSpec(methods=("noise",))) == {"sigma": 10.0}
    assert spec.item_kwargs(c40, JobSpec(methods=("noise",), noise_sigma=7.0)) == {"sigma": 7.0}
    assert targets.get_method("noise@3").item_kwargs is None  # the name fixes σ


def test_landmarks_only_when_a_method_takes_them(small_ff_root):
    from ffmask.datasets import get_dataset

    items = [i for i in get_dataset("ff++", small_ff_root).items if i.label == 1][:1]
    groups = plan_groups(items, paired=True)
    plain = next(annotate_groups(groups, JobSpec(methods=("mscc",), frames=2, size=64)))
    with_hull = next(annotate_groups(groups, JobSpec(methods=("hull",), frames=2, size=64)))
    assert plain.records and with_hull.records
    assert all(r.landmarks is None for r in plain.records)
    assert all(r.landmarks is not None and r.landmarks.shape == (68, 2) for r in with_hull.records)


def test_focus_is_checked_in_the_parent_without_loading(tmp_path, monkeypatch):
    import ffmask.models.focus as focus

    def no_load(*a, **k):
        raise AssertionError("the parent must not load the model")

    monkeypatch.setattr(focus, "load_focus", no_load)
    spec = targets.get_method("focus")
    assert spec.batched and spec.extras == ("focus_prob",) and "focus" not in targets.METHODS
    spec.check(JobSpec(methods=("focus",)))  # the bundled checkpoint is fine
    with pytest.raises(CheckpointError):
        spec.check(JobSpec(methods=("focus",), checkpoints=str(tmp_path / "missing.safetensors")))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="continuous", input="pair", model=lambda o: None), "model-backed"),
    (dict(kind="mask", input="image", model=lambda o: None), "model-backed"),
    (dict(kind="continuous", input="image", extras=("x",)), "only model-backed"),
    (dict(kind="continuous", input="image", item_kwargs=3), "item_kwargs must be callable"),
])
def test_bad_entries_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        targets.register_method("bad_entry", lambda *a: None, **kwargs)
    assert "bad_entry" not in registry._SPECS


def test_noise_derived_on_read_uses_the_items_sigma(small_ff_root, tmp_path):
    """annotate(shard_options) stores σ only; readers recompute the exact noise map."""
    from ffmask.errors import FFMaskError

    out = tmp_path / "d"
    annotate("ff++", small_ff_root, out, JobSpec(methods=("noise",), frames=2, size=64),
             shard_options={"noise_storage": "derived"}, limit=3)
    index = ShardIndex(out, ["noise"])
    assert len(index) > 0
    for i in range(len(index)):
        face = index.read(i)
        assert face["compression"] == "c23"
        expected = targets.noise_map(face["image"], sigma=5.0).astype(np.float16)
        np.testing.assert_array_equal(face["maps"]["noise"], expected)
    with pytest.raises(FFMaskError, match="image_codec"):
        annotate("ff++", small_ff_root, tmp_path / "e", JobSpec(methods=("noise",), frames=2, size=64),
                 shard_options={"image_codec": "gif"})


def test_cli_storage_options_reach_the_shards(small_ff_root, tmp_path):
    import h5py
    from typer.testing import CliRunner

    from ffmask.cli import app

    out = tmp_path / "cli"
    args = ["annotate", "ff++", str(small_ff_root), "--method", "noise,mscc", "--frames", "2", "--size", "64",
            "--limit", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args + ["--noise-storage", "derived", "--image-codec", "png"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with h5py.File(next(out.glob("*.h5"))) as f:
        assert f["images"].attrs["codec"] == "png" and f["maps/noise"].attrs["encoding"] == "derived"
    bad = CliRunner().invoke(app, args + ["--image-codec", "jpeg", "--overwrite"])
    assert bad.exit_code != 0 and "jpeg-quality" in bad.output


@pytest.mark.parametrize("methods", [("diff@0.1", "diff@0.10"), ("noise@5", "noise@5.0"), ("mscc", "diff@.5", "diff@0.5")])
def test_one_map_spelt_twice_is_refused(methods):
    """Two spellings of one parametrised method would compute and store the same map twice."""
    from ffmask.errors import OptionError
    from ffmask.pipeline import JobSpec

    with pytest.raises(OptionError, match="same method"):
        JobSpec(methods=methods)


def test_different_parameters_of_one_family_are_two_maps():
    from ffmask.pipeline import JobSpec

    assert JobSpec(methods=("diff@0.1", "diff@0.2", "noise@5", "noise@6")).methods == (
        "diff@0.1", "diff@0.2", "noise@5", "noise@6")
