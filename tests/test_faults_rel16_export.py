"""Session 16, M1: `export deepfakebench` of shards copied without their `run.json`.

Every annotate shard carries its run's config (the ``config`` attribute: what run.json holds), which
``evaluate`` already read for copies (session 15's L4/L5). Export read run.json alone: a copy of the shards
(only the ``.h5`` files, or with the manifest) stopped with ``cannot tell which dataset ... pass --dataset``.
Now both read the run config one way (``ffmask.shards.runconfig.by_shard``): the copy exports as the run
folder does, and shards whose config names no dataset are still one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ffmask.errors import FFMaskError
from ffmask.export import export_deepfakebench
from ffmask.shards import FaceRecord, ShardWriter

from tests._export_runs import annotate_small_ffpp



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return annotate_small_ffpp(tmp_path_factory.mktemp("run"))


def _json_files(out: Path) -> dict:
    """Each dataset JSON's content with the export folder taken out of its paths."""
    return {p.name: json.loads(p.read_text().replace(str(out), "OUT")) for p in sorted((out / "dataset_json").iterdir())}


@pytest.mark.parametrize("kept", [("*.h5",), ("*.h5", "manifest.jsonl")])
def test_a_copy_without_run_json_exports_as_its_run_folder(run, tmp_path, kept):
    copy = tmp_path / "copy"
    copy.mkdir()
    for pattern in kept:
        for p in run.glob(pattern):
            shutil.copy2(p, copy / p.name)
    assert not (copy / "run.json").exists() and len(list(copy.glob("*.h5"))) >= 2
    whole = export_deepfakebench(run, tmp_path / "whole")
    # at 8fb4ccb: FFMaskError "cannot tell which dataset ... holds (no readable run.json ...); pass --dataset"
    copied = export_deepfakebench(copy, tmp_path / "copied")
    assert copied.dataset == whole.dataset == "ff++"
    assert copied.faces == whole.faces > 0 and copied.counts == whole.counts
    assert _json_files(tmp_path / "copied") == _json_files(tmp_path / "whole")
    assert "FaceForensics++.json" in _json_files(tmp_path / "copied")


def test_a_shard_whose_config_names_no_dataset_is_one_line(run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(next(run.glob("*.h5")), copy / "a.h5")
    rng = np.random.default_rng(0)
    with ShardWriter(copy / "b.h5", size=32, maps={"mscc": "mask"}, config={"note": "written by hand"}) as w:
        w.append(FaceRecord(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                            maps={"mscc": np.zeros((32, 32), bool)}, label=0, video_id="youtube/000",
                            original_id="", manipulation="", compression="c23", split="train", frame_index=0,
                            box=np.array([0, 0, 32, 32])))
    with pytest.raises(FFMaskError, match=r"cannot tell which dataset .*b\.h5 holds .*pass --dataset"):
        export_deepfakebench(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    export_deepfakebench(copy, tmp_path / "out", dataset="ff++")  # the way out the line names
