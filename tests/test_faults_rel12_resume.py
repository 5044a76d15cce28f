"""Session 14 (rel12), B: a video file replaced between a run and its resume.

A resume knows a video by its id. At 06d4739 a file replaced under the same name (a wrong
download fixed, a truncated one downloaded again) kept what the first run recorded:
``a.mp4`` replaced by another video kept the old video's faces under the id ``a``
(``Resuming: 3 of 3 videos already done``), and ``b.mp4``, skipped as unreadable and then
downloaded whole, stayed skipped for good. Each manifest entry now records its files'
fingerprints (``resume.input_fingerprints``); a changed one is redone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ffmask.annotate import annotate
from ffmask.datasets.base import VideoItem
from ffmask.pipeline import JobSpec
from ffmask.resume import changed_inputs, input_fingerprints
from ffmask.shards import ShardDataset

VIDEOS = Path(__file__).resolve().parents[1] / "sample_data" / "ff++" / "original_sequences/youtube/c23/videos"
SPEC = JobSpec(methods=("noise",), frames=2, size=64)


def _faces(out: Path, video_id: str) -> list:
    data = ShardDataset(out, maps=[])
    faces = [data[i] for i in range(len(data))]
    return [np.asarray(f["image"]) for f in faces if f["meta"]["video_id"] == video_id]


def test_a_file_replaced_under_its_name_is_redone_on_resume(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(VIDEOS / "000.mp4", root / "a.mp4")
    (root / "b.mp4").write_bytes((VIDEOS / "002.mp4").read_bytes()[:3000])  # a download cut short
    shutil.copy(VIDEOS / "003.mp4", root / "c.mp4")
    out = tmp_path / "out"
    first = annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    assert first.videos == {"ok": 2, "skipped": 1}
    old_a = _faces(out, "a")
    shutil.copy(VIDEOS / "001.mp4", root / "a.mp4")  # the right video, fixed under the same name
    shutil.copy(VIDEOS / "002.mp4", root / "b.mp4")  # downloaded again, whole
    os.utime(root / "c.mp4")  # touched (a copy without its times): the same content, not redone
    again = annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    # 06d4739: "0 to do": a kept 000's faces, b stayed skipped
    assert again.videos == {"ok": 2}, again
    assert any("holds videos that changed since they were annotated (a: its file)" in line
               for line in again.redone_shards), again.redone_shards
    assert any(line.startswith("b was skipped (unreadable video:") and "its file changed since: redone" in line
               for line in again.redone_videos), again.redone_videos
    fresh = tmp_path / "fresh"
    annotate("folder", root, fresh, SPEC, videos_per_shard=1, jobs=1)
    new_a, fresh_a = _faces(out, "a"), _faces(fresh, "a")
    assert len(new_a) == len(fresh_a) and all(np.array_equal(x, y) for x, y in zip(new_a, fresh_a))
    assert not all(np.array_equal(x, y) for x, y in zip(new_a, old_a))
    assert len(_faces(out, "b")) == len(_faces(fresh, "b")) > 0
    assert len(_faces(out, "c")) == 2  # not redone twice
    third = annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    assert third.videos_todo == 0 and not third.redone_shards and not third.redone_videos


def test_a_fake_whose_original_was_replaced_is_changed(tmp_path):
    real, fake, other = (tmp_path / n for n in ("000.mp4", "000_001.mp4", "x.mp4"))
    for dst, src in ((real, "000.mp4"), (fake, "001.mp4"), (other, "002.mp4")):
        shutil.copy(VIDEOS / src, dst)
    original = VideoItem(video_id="youtube/000", path=real, label=0)
    item = VideoItem(video_id="Deepfakes/000_001", path=fake, label=1, original=original)
    done = {item.video_id: {"status": "ok", "files": input_fingerprints(item)},
            original.video_id: {"status": "ok", "files": input_fingerprints(original)}}
    items = {item.video_id: item, original.video_id: original}
    assert changed_inputs(done, items) == {}
    shutil.copy(other, real)
    assert changed_inputs(done, items) == {"Deepfakes/000_001": "its original's file", "youtube/000": "its file"}
    elsewhere = VideoItem(video_id=item.video_id, path=fake, label=1, original=VideoItem("youtube/002", other, 0))
    shutil.copy(VIDEOS / "000.mp4", real)
    assert changed_inputs(done, {item.video_id: elsewhere}) == {"Deepfakes/000_001": "its original's file"}


def test_a_label_fixed_since_the_run_is_not_kept_by_the_resume(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(VIDEOS / "000.mp4", root / "a.mp4")
    shutil.copy(VIDEOS / "001.mp4", root / "b.mp4")
    (root / "labels.csv").write_text("a.mp4,1\nb.mp4,0\n")
    out = tmp_path / "out"
    annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    (root / "labels.csv").write_text("a.mp4,0\nb.mp4,0\n")  # a was real after all
    again = annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    # 06d4739: "Resuming: 2 of 2 videos already done"; a's faces kept label 1 (fake)
    assert again.videos == {"ok": 1}, again
    assert any("(a: its label (1 then, 0 now))" in line for line in again.redone_shards), again.redone_shards
    data = ShardDataset(out, maps=[])
    labels = {(data[i]["meta"]["video_id"], int(data[i]["label"])) for i in range(len(data))}
    assert labels == {("a", 0), ("b", 0)}, labels


def test_a_video_deleted_since_the_run_is_said_to_stay_in_the_shards(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(VIDEOS / "000.mp4", root / "a.mp4")
    shutil.copy(VIDEOS / "001.mp4", root / "b.mp4")
    out = tmp_path / "out"
    annotate("folder", root, out, SPEC, jobs=1)
    (root / "b.mp4").unlink()  # deleted as a bad video
    again = annotate("folder", root, out, SPEC, jobs=1)
    # 06d4739: "Resuming: 1 of 1 videos already done", b's faces still read from the folder, no word
    assert again.gone_videos == ["b"] and again.videos_todo == 0
    assert {ShardDataset(out, maps=[])[i]["meta"]["video_id"] for i in range(4)} == {"a", "b"}


def test_a_folder_of_frames_with_a_frame_replaced_is_redone(tmp_path):
    portraits = Path(__file__).resolve().parents[1] / "ffmask" / "synth" / "portraits"
    root = tmp_path / "clips"
    (root / "seq").mkdir(parents=True)
    shutil.copy(VIDEOS / "000.mp4", root / "a.mp4")
    for i in (1, 2):
        shutil.copy(portraits / "biden.jpg", root / "seq" / f"{i:04d}.jpg")
    out = tmp_path / "out"
    annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    shutil.copy(portraits / "obama.jpg", root / "seq" / "0002.jpg")  # another frame under the same name
    again = annotate("folder", root, out, SPEC, videos_per_shard=1, jobs=1)
    assert again.videos == {"ok": 1}, again
    assert any("(seq: its file)" in line for line in again.redone_shards), again.redone_shards
