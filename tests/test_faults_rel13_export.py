"""Session 15 (rel13), K2: `export deepfakebench` merging two videos into one entry of the dataset JSON.

DeepfakeBench's JSON keys a video by its name alone (``[label][split]([comp])[name]``). Two videos of one
label key placed in two folders under one name (FF++ shards exported with ``--dataset dfdc``: ``Deepfakes/000_001``
and ``FaceSwap/000_001`` both ``DFDC_Fake`` under ``DFDC/train/<method>/``) passed the folder check (another
folder each) and were listed at 9368f92 as **one video holding both videos' frames** (interleaved by frame
number), while the report counted two. Now the second is a counted skip, as a shared folder already was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffmask.export import export_deepfakebench
from ffmask.shards import FaceRecord, ShardWriter


def _write_shard(path: Path, faces: list[dict], size: int = 16) -> None:
    rng = np.random.default_rng(0)
    with ShardWriter(path, size=size, maps={"hull": "mask"}, config={"dataset": "test"}) as w:
        for f in faces:
            w.append(FaceRecord(
                image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                maps={"hull": rng.random((size, size)) > 0.5}, label=f["label"], video_id=f["video_id"],
                original_id="", manipulation=f.get("manipulation", ""), compression="c23", split=f["split"],
                frame_index=f["frame"], box=np.array([0, 0, 32, 32])))


def test_two_videos_of_one_label_and_name_in_two_folders_are_not_one_json_video(tmp_path):
    faces = [{"video_id": f"{method}/000_001", "label": 1, "manipulation": method, "split": split, "frame": frame}
             for method in ("Deepfakes", "FaceSwap") for split in ("train",) for frame in (0, 5)]
    faces += [{"video_id": "youtube/000", "label": 0, "split": "train", "frame": 0}]
    _write_shard(tmp_path / "s.h5", faces)
    report = export_deepfakebench(tmp_path / "s.h5", tmp_path / "out", dataset="dfdc")
    info = json.loads((tmp_path / "out" / "dataset_json" / "DFDC.json").read_text())["DFDC"]
    entry = info["DFDC_Fake"]["train"]["000_001"]
    # 9368f92: four frames, of Deepfakes/ and FaceSwap/ (two videos as one)
    assert [Path(p).parts[-4] for p in entry["frames"]] == ["Deepfakes", "Deepfakes"]
    assert [Path(p).name for p in entry["frames"]] == ["000.png", "005.png"]
    assert report.faces == 3 and report.videos == 2
    (reason, count), = report.skipped.items()
    assert count == 2 and "two DFDC_Fake videos would be one video '000_001'" in reason
    assert "Deepfakes/000_001" in reason and "FaceSwap/000_001" in reason
    # every frame a listed entry names was written, and nothing else was
    written = sorted(str(p) for p in (tmp_path / "out").rglob("frames/*/*.png"))
    listed = sorted(p for key in info for mode in info[key] for e in info[key][mode].values() for p in e["frames"])
    assert written == sorted(set(listed))
