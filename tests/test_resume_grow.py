"""Resume after the dataset grew, or after a run stopped between a shard and its manifest lines.

Shards used to be named by their task's index over ALL items, recomputed on
every run: a video added before existing ones took a finished shard's name
and replaced its file (silent data loss, the manifest still naming the lost
videos), and a group grown by a later download was redone whole, its done
videos written a second time. Every check here reads the shards back through
:class:`ffmask.shards.ShardIndex` (the reader every consumer uses, which reads
every row of every shard of a folder) and compares them with a fresh run.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from _shards_read import read_faces
from ffmask.annotate import annotate
from ffmask.cli import app
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest, find_shards
from ffmask.synth.tree import build_synth

FF_SPEC = JobSpec(methods=("mscc", "noise"), frames=3, size=64)
FOLDER_SPEC = JobSpec(methods=("noise",), frames=2, size=64)
VPS = 3  # an original and its two fakes per shard


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=4, frames=5, compressions=("c23",),
                manipulations=("Deepfakes", "Face2Face"))
    return root


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    annotate("ff++", synth, out, FF_SPEC, videos_per_shard=VPS)
    return out


def faces_by_key(out: Path) -> dict:
    """(video_id, frame_index) -> face; fails if any face is read twice."""
    found = {}
    for face in read_faces(out):
        key = (face["video_id"], face["frame_index"])
        assert key not in found, f"{key} is read twice"
        found[key] = face
    return found


def assert_same_faces(a: Path, b: Path) -> None:
    fa, fb = faces_by_key(a), faces_by_key(b)
    assert sorted(fa) == sorted(fb)
    for key, face in fa.items():
        np.testing.assert_array_equal(face["image"], fb[key]["image"])
        assert face["maps"].keys() == fb[key]["maps"].keys()
        for name, arr in face["maps"].items():
            np.testing.assert_array_equal(arr, fb[key]["maps"][name], err_msg=f"{key} {name}")


def assert_manifest_true(out: Path) -> None:
    """Every ok line points at a shard that holds exactly its faces, and every
    shard holds only videos the manifest puts there; `ffmask info` agrees."""
    done = Manifest(out / "manifest.jsonl").load()
    held = {}
    for path in find_shards(out):
        with h5py.File(path, "r") as f:
            held[path.name] = Counter(v.decode() for v in f["video_id"][:])
    for video_id, entry in done.items():
        if entry["status"] == "ok":
            assert held[entry["shard"]][video_id] == entry["faces"] > 0, video_id
    for name, counts in held.items():
        for video_id in counts:
            assert done[video_id].get("shard") == name, f"{video_id} in {name}, manifest says {done[video_id]}"
    result = CliRunner().invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "does not hold" not in text and "not list" not in text and "missing" not in text, text


def shard_datasets(path: Path) -> dict:
    """Every dataset of a shard (name -> array)."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_shards(a: Path, b: Path) -> None:
    """The same shard names, each with the same datasets, value for value."""
    names = [p.name for p in find_shards(a)]
    assert names == [p.name for p in find_shards(b)]
    for name in names:
        da, db = shard_datasets(a / name), shard_datasets(b / name)
        assert da.keys() == db.keys(), name
        for key in da:
            np.testing.assert_array_equal(da[key], db[key], err_msg=f"{name}/{key}")


def drop_last_lines(out: Path, shard: str) -> list[dict]:
    """Remove the manifest lines of ``shard`` (a run killed after the rename, before the lines)."""
    path = out / "manifest.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [e for e in lines if e.get("task") is None or f"shard-{e['task']:05d}.h5" != shard]
    assert len(kept) < len(lines)
    path.write_text("".join(json.dumps(e) + "\n" for e in kept))
    return kept


# ---------------------------------------------------------------- a folder grows


def test_a_video_sorting_before_finished_ones_gets_a_new_shard(synth, tmp_path):
    videos = sorted((synth / "original_sequences" / "youtube" / "c23" / "videos").glob("*.mp4"))
    full, grown = tmp_path / "full", tmp_path / "grown"
    for folder in (full, grown):
        folder.mkdir()
    for name, src in zip("abcd", videos):
        shutil.copy(src, full / f"{name}.mp4")
        if name != "b":
            shutil.copy(src, grown / f"{name}.mp4")
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = annotate("folder", grown, out, FOLDER_SPEC, videos_per_shard=1)
    assert first.videos["ok"] == 3 and first.tasks_total == 3
    before = {p.name: p.read_bytes() for p in find_shards(out)}

    shutil.copy(full / "b.mp4", grown / "b.mp4")
    plans = []
    report = annotate("folder", grown, out, FOLDER_SPEC, videos_per_shard=1, on_plan=lambda *a: plans.append(a))
    # only b is done now, into a fourth shard; the three finished shards are untouched
    assert plans == [(1, 1, 4, 3)]
    assert (report.videos_done_before, report.videos_todo, report.tasks_done_before, report.tasks_total) == (3, 1, 3, 4)
    assert report.videos["ok"] == 1 and report.redone_shards == []
    after = {p.name: p.read_bytes() for p in find_shards(out)}
    assert sorted(after) == sorted(before) + ["shard-00003.h5"]
    assert all(after[name] == data for name, data in before.items())
    assert Manifest(out / "manifest.jsonl").load()["b"]["shard"] == "shard-00003.h5"

    annotate("folder", full, fresh, FOLDER_SPEC, videos_per_shard=1)
    assert {k[0] for k in faces_by_key(out)} == set("abcd")
    assert_same_faces(fresh, out)
    assert_manifest_true(out)
    # and a further rerun has nothing to do
    again = annotate("folder", grown, out, FOLDER_SPEC, videos_per_shard=1)
    assert again.faces == 0 and again.videos_todo == 0 and again.tasks_done_before == again.tasks_total == 4


def test_the_cli_says_videos_done_and_to_do(synth, tmp_path):
    videos = sorted((synth / "original_sequences" / "youtube" / "c23" / "videos").glob("*.mp4"))
    folder = tmp_path / "v"
    folder.mkdir()
    for name in "ac":
        shutil.copy(videos[0], folder / f"{name}.mp4")
    args = ["annotate", "folder", str(folder), "--method", "noise", "--frames", "2", "--size", "64",
            "--videos-per-shard", "1", "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(app, args).exit_code == 0
    shutil.copy(videos[1], folder / "b.mp4")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Resuming: 2 of 3 videos already done (in 2 shards); 1 to do in 1 new shards." in text


# ---------------------------------------------------------------- an FF++ group grows


def test_a_group_gaining_a_fake_writes_only_the_fake(synth, reference, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(synth, root)
    held = tmp_path / "held"
    held.mkdir()
    # Face2Face's fake of the second original was not downloaded yet
    fake = sorted((root / "manipulated_sequences" / "Face2Face" / "c23" / "videos").glob("*.mp4"))[1]
    moved = [p for p in (root / "manipulated_sequences" / "Face2Face").rglob(fake.name)]
    for i, p in enumerate(moved):
        shutil.move(p, held / f"{i}.mp4")
    out = tmp_path / "out"
    first = annotate("ff++", root, out, FF_SPEC, videos_per_shard=VPS)
    assert first.videos["ok"] == 11
    before = {p.name: p.read_bytes() for p in find_shards(out)}

    for i, p in enumerate(moved):
        shutil.move(held / f"{i}.mp4", p)
    report = annotate("ff++", root, out, FF_SPEC, videos_per_shard=VPS)
    video_id = f"Face2Face/{fake.stem}"
    # the fake alone is written (compared with its done original, not a second copy of it)
    assert report.videos_todo == 1 and report.videos["ok"] == 1 and report.videos_done_before == 11
    after = {p.name: p.read_bytes() for p in find_shards(out)}
    new = sorted(set(after) - set(before))
    assert len(new) == 1 and all(after[name] == data for name, data in before.items())
    with h5py.File(out / new[0], "r") as f:
        assert {v.decode() for v in f["video_id"][:]} == {video_id}
    assert_same_faces(reference, out)
    assert_manifest_true(out)


# ---------------------------------------------------------------- a run stopped between a shard and its lines


def test_a_shard_no_manifest_line_names_is_deleted_and_redone(reference, synth, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    last = find_shards(out)[-1].name
    drop_last_lines(out, last)
    report = annotate("ff++", synth, out, FF_SPEC, videos_per_shard=VPS)
    assert report.videos_todo == 3 and report.tasks_done_before == 3 and report.tasks_total == 4
    assert any(line.startswith(f"{last} is in no manifest line") for line in report.redone_shards)
    # the same name and contents as the uninterrupted run, every face once
    assert_same_shards(reference, out)
    assert_same_faces(reference, out)
    assert_manifest_true(out)


def test_plain_resume_after_a_kill_makes_the_same_shards(reference, synth, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    shards = find_shards(out)
    for path in shards[2:]:  # the last two tasks never finished: no lines, one still .tmp
        drop_last_lines(out, path.name)
        path.unlink()
    (out / (shards[3].name + ".tmp")).write_bytes(b"half a shard")
    report = annotate("ff++", synth, out, FF_SPEC, videos_per_shard=VPS)
    assert report.tasks_done_before == 2 and report.tasks_total == 4 and report.videos_todo == 6
    assert report.redone_shards == [f"{shards[3].name}.tmp is an unfinished shard of a stopped run: "
                                    "deleted, its videos are redone"]
    assert not list(out.glob("*.tmp"))
    assert_same_shards(reference, out)
    assert_manifest_true(out)


def test_a_shard_replaced_by_one_with_as_many_faces_is_redone(reference, synth, tmp_path):
    # what an older ffmask left: a finished shard's file replaced by other videos' faces, same count
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    a, b = find_shards(out)[:2]
    tmp = out / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    report = annotate("ff++", synth, out, FF_SPEC, videos_per_shard=VPS)
    assert sorted(line.split()[0] for line in report.redone_shards) == [a.name, b.name]
    assert all("does not put there" in line for line in report.redone_shards)
    assert report.videos_todo == 6
    assert_same_faces(reference, out)
    assert_manifest_true(out)
