"""Session 15 (rel13), A: small items the lead left alone.

1. ``train.evaluator.face_table`` read its columns through a second ``ShardIndex`` of the dataset's paths
   (every shard opened and checked again); it reads the open dataset's own index now.
"""

from __future__ import annotations

import numpy as np

import ffmask.shards
import ffmask.shards.index
from ffmask import ShardDataset
from ffmask.train.evaluator import face_table
from tests._evaluator_shards import write_shards


def test_face_table_reads_the_open_datasets_index_and_no_other(tmp_path, monkeypatch):
    paths = write_shards(tmp_path / "run", ["astronaut", "coffee"], frames=3, size=32, noise=False)
    dataset = ShardDataset(paths, maps=["official"], return_meta=False)
    opened = []
    real_init = ffmask.shards.index.ShardIndex.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("paths"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ffmask.shards.index.ShardIndex, "__init__", counting_init)
    table = face_table(dataset)
    assert opened == []  # 9368f92: one more ShardIndex of every shard
    assert len(table["label"]) == len(dataset) == 12
    for i in range(len(dataset)):
        face = dataset.index.read(i, image=False)
        assert table["label"][i] == face["label"] and table["frame_index"][i] == face["frame_index"]
        for name in ("video_id", "original_id", "manipulation", "compression", "split"):
            assert table[name][i] == face[name]
    assert table["label"].dtype == np.int64 and table["video_id"].dtype == object


def test_info_says_the_crop_sizes_of_shards_put_together(tmp_path):
    # K10: shards of two runs at other --size copied into one folder: at 9368f92 `info` summarised them as one
    # set without a size (train refuses them together with one line)
    import shutil

    from ffmask.shards import summarize_shards
    from tests._cli import ffmask_cli

    for name, size in (("a", 32), ("b", 48)):
        (tmp_path / name).mkdir()
        write_shards(tmp_path / name, ["astronaut"], frames=2, size=size, noise=False)
    (tmp_path / "both").mkdir()
    shutil.copy(tmp_path / "a" / "astronaut.h5", tmp_path / "both" / "shard-00000.h5")
    shutil.copy(tmp_path / "b" / "astronaut.h5", tmp_path / "both" / "shard-00001.h5")
    assert summarize_shards(tmp_path / "a")["by_crop_size"] == {32: 4}
    assert summarize_shards(tmp_path / "both")["by_crop_size"] == {32: 4, 48: 4}
    code, out, err = ffmask_cli("info", tmp_path / "both")
    text = " ".join(out.replace("│", " ").split())
    assert "crop size 32 px (4 faces), 48 px (4 faces): crops of several sizes" in text, out + err
