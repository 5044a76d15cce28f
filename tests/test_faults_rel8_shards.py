"""Session 10 (rel8), items 2, 3, 5 and 6: `ffmask info` on a copied shard and on a manifest
with a bad line in the middle, and the run lock `shards convert` takes.

Real shards from a tiny `annotate` run, real `python -m ffmask` subprocesses, a real
second process holding `run.lock`. Expected counts are read with h5py and from the
manifest's text, not through the summary code under test. These tests fail at 589437d.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import h5py
import pytest

from _cli import ffmask_cli as cli, private_copy

from ffmask.annotate import annotate
from ffmask.errors import RunLockedError
from ffmask.outdir import RunLock
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth
from tests._cli import held_run_lock

SPEC = JobSpec(methods=("mscc",), frames=2, size=64)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    out = tmp_path_factory.mktemp("run") / "out"
    annotate("ff++", root, out, SPEC, videos_per_shard=2, jobs=1)
    assert len(sorted(out.glob("shard-*.h5"))) == 2
    return out


@pytest.fixture
def run(shards, tmp_path):
    return private_copy(shards, tmp_path)


def faces_in(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return len(f["label"])


def test_info_exits_1_for_a_copy_of_a_shard_and_for_a_missing_shard(run):
    first, second = sorted(run.glob("shard-*.h5"))
    copy = run / "shard-00007.h5"
    shutil.copy(first, copy)  # a backup copy named like a shard: every reader counts its faces twice
    rc, out, err = cli("info", run)
    assert rc == 1, out + err
    assert "Traceback" not in out + err
    assert f"{copy.name}: 1 problem(s)" in out and "faces may count twice" in out, out
    rc, out, _ = cli("info", run, "--json")
    summary = json.loads(out)
    assert rc == 1 and list(summary["problems"]) == [str(copy.resolve())], summary["problems"]
    assert summary["faces"] == 2 * faces_in(first) + faces_in(second)  # the summary is still there

    copy.unlink()
    second.unlink()  # the manifest names it for ok videos: their faces are gone
    rc, out, err = cli("info", run, "--json")
    summary = json.loads(out)
    assert rc == 1, err
    assert list(summary["problems"]) == [str(second.resolve())]
    assert "not on disk" in summary["problems"][str(second.resolve())][0]
    assert summary["faces"] == faces_in(first)


def test_info_reports_a_bad_manifest_line_and_summarises_the_rest(run):
    manifest = run / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    assert len(lines) == 4
    bad = lines[1][: len(lines[1]) // 2]  # a line cut in the middle (a hand edit, a bad merge)
    manifest.write_text("\n".join([lines[0], bad, *lines[2:]]) + "\n")
    lost = json.loads(lines[1])["video_id"]
    ok_left = sum(json.loads(x)["status"] == "ok" for i, x in enumerate(lines) if i != 1)

    rc, out, err = cli("info", run)
    assert rc == 1, out + err
    assert "Traceback" not in out + err and not err.strip(), err
    assert "manifest: 3 videos" in out, out  # the readable lines are summarised
    assert f"{manifest.resolve()}: 1 problem(s)" in out or f"{manifest}: 1 problem(s)" in out, out
    assert "line 2 is malformed" in out

    rc, out, _ = cli("info", run, "--json")
    summary = json.loads(out)
    assert rc == 1
    assert summary["manifest"]["videos"] == 3 and summary["manifest"]["ok"] == ok_left
    (where, found), = summary["problems"].items()
    assert Path(where).name == "manifest.jsonl" and found[0].startswith("line 2 is malformed")
    assert summary["faces"] == sum(faces_in(p) for p in run.glob("shard-*.h5"))
    # the video of the bad line is still in its shard: the summary says so (a resume would redo it)
    assert any(v["videos"] == 1 for v in summary["manifest"]["unlisted_shards"].values()), lost

    # a torn LAST line is what a killed run leaves: forgiven, as a resume forgives it
    manifest.write_text("\n".join(lines) + "\n" + lines[0][:20])
    rc, out, _ = cli("info", run, "--json")
    assert rc == 0 and json.loads(out)["problems"] == {}


def test_convert_leaves_no_run_lock_it_made_and_keeps_one_that_was_there(run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run, other)
    (other / "run.lock").write_text("")  # annotate's lock file, left by its run
    rc, out, err = cli("shards", "convert", run, other, "--image-codec", "png")
    assert rc == 0, out + err
    assert "converted" in out + err
    assert not (run / "run.lock").exists()
    assert (other / "run.lock").exists()


def test_run_locked_error_carries_the_holders_pid(run):
    from ffmask.shards.convert import convert_shards

    with held_run_lock(run) as holder:
        with pytest.raises(RunLockedError) as caught:
            RunLock(run).acquire()
        assert caught.value.pid == str(holder.pid)
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}\); wait for it to finish, then convert") as caught:
            convert_shards(run, image_codec="png")
        assert caught.value.pid == str(holder.pid)
        assert (run / "run.lock").exists()  # the holder's lock file is not removed by the refused convert


def test_a_lock_file_deleted_by_its_holder_is_not_locked_by_a_late_opener(tmp_path, monkeypatch):
    # B opened run.lock just before A (cleanup="created") deleted it on release: B's flock then
    # succeeds on the deleted file while C locks the new one. RunLock must notice and relock.
    a = RunLock(tmp_path, cleanup="created").acquire()
    stale = open(tmp_path / "run.lock", "r+")
    a.release()
    assert not (tmp_path / "run.lock").exists()
    c = RunLock(tmp_path).acquire()  # the new file, held
    b = RunLock(tmp_path)
    real_open = RunLock._open
    calls = []

    def open_stale_first(self):
        calls.append(1)
        return (stale, False) if len(calls) == 1 else real_open(self)

    monkeypatch.setattr(RunLock, "_open", open_stale_first)
    with pytest.raises(RunLockedError):  # not a lock on the deleted file: C holds the real one
        b.acquire()
    assert len(calls) == 2
    c.release()
    b.acquire()
    fh = open(tmp_path / "run.lock")
    with pytest.raises(BlockingIOError):
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.close()
    b.release()


def test_a_second_export_into_the_same_out_is_refused_and_a_finished_one_leaves_no_lock(run, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    with held_run_lock(out, kind="export") as holder:  # an export running there (589437d exported beside it: two exports' files under one JSON)
        rc, text, err = cli("export", "deepfakebench", run, "--out", out)
        assert rc != 0 and "Traceback" not in text + err
        assert err.strip() == (f"Error: {out.resolve()} is in use by another ffmask run (pid {holder.pid}); "
                               "wait for it to finish or pick another --out"), err
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]
    rc, text, err = cli("export", "deepfakebench", run, "--out", out)  # the leftover lock file alone: not "in use"
    assert rc == 0, text + err
    assert (out / "dataset_json").is_dir() and not (out / "run.lock").exists()


def test_export_says_when_an_annotate_run_is_still_writing_the_shards(run, tmp_path):
    from ffmask.outdir import lock_holder

    assert lock_holder(run) is None and not (run / "run.lock").exists()
    with held_run_lock(run) as holder:  # an annotate run still going there: 589437d exported the shards finished so far, without a word
        assert lock_holder(run) == str(holder.pid)
        rc, text, err = cli("export", "deepfakebench", run, "--out", tmp_path / "export")
        assert rc == 0, text + err
        assert f"is being written by another ffmask run (pid {holder.pid})" in text + err, text + err
    assert lock_holder(run) is None  # the lock file stays, unlocked
    rc, text, err = cli("export", "deepfakebench", run, "--out", tmp_path / "export2")
    assert rc == 0 and "being written" not in text + err


def test_info_names_ok_videos_whose_shard_no_longer_holds_them(run):
    # what a resume after a video was added in the middle of the dataset leaves (annotate names a
    # shard by its task's index, and the tasks moved: docs/reliability_audit.md S14): a shard of
    # other videos under the name the manifest gives for these
    first, second = sorted(run.glob("shard-*.h5"))
    with h5py.File(first, "r") as f:
        held = sorted({v.decode() for v in f["video_id"][()]})
    shutil.copy(second, first)
    rc, out, err = cli("info", run, "--json")
    summary = json.loads(out)
    assert rc == 1, err  # 589437d: exit 0, and only that the copy counts faces twice, not that these are gone
    assert summary["manifest"]["videos_not_in_their_shard"] == {first.name: held}
    assert any("does not hold" in why for why in summary["problems"][str(first.resolve())])
