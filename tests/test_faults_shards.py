"""Faults of finished shard directories seen by `ffmask info`, `ffmask preview` and
`ffmask shards convert`: a shard that cannot be read among good ones, a shard the
manifest does not list (a run stopped between renaming the shard into place and
appending its manifest lines), and a conversion while another run holds the lock.

Real shards from a tiny `annotate` run, real `python -m ffmask` subprocesses and a
real second process holding `run.lock`. Expected counts are read straight from the
HDF5 files with h5py, not through the summary code under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import pytest

from _cli import ffmask_cli as cli, private_copy

from ffmask.annotate import annotate
from ffmask.errors import RunLockedError
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth
from tests._cli import held_run_lock

SPEC = JobSpec(methods=("mscc", "noise"), frames=2, size=64)
VPS = 2  # an original and its fake per shard -> 2 shards


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    return root


@pytest.fixture(scope="module")
def shards(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    annotate("ff++", root, out, SPEC, videos_per_shard=VPS, jobs=1)
    assert len(sorted(out.glob("shard-*.h5"))) == 2
    return out


@pytest.fixture
def run(shards, tmp_path):
    """A private copy of the finished run, to damage."""
    return private_copy(shards, tmp_path)


def shard_content(path: Path) -> tuple[int, dict[str, int]]:
    """(faces, {video_id: faces}) of a shard, read with h5py."""
    with h5py.File(path, "r") as f:
        ids = [v.decode() for v in f["video_id"][()]]
    return len(ids), {v: ids.count(v) for v in set(ids)}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:4000])  # a copy cut short


def drop_label(path: Path) -> None:
    with h5py.File(path, "r+") as f:  # opens fine, but is no longer a complete shard
        del f["label"]


@pytest.mark.parametrize("damage, why", [(truncate, "truncated file"), (drop_label, "label")])
def test_info_summarises_the_readable_shards_and_lists_the_unreadable_one(run, damage, why):
    good, bad = sorted(run.glob("shard-*.h5"))
    faces, videos = shard_content(good)
    damage(bad)

    rc, out, err = cli("info", run)
    assert rc == 1, out + err
    assert "Traceback" not in out + err
    assert "manifest: 4 videos" in out  # the summary is printed
    assert "2 (1 unreadable, not counted below)" in out
    lines = [line for line in out.splitlines() if bad.name in line]
    assert lines and any(why in line for line in out[out.index(bad.name):].splitlines()[:3]), out

    rc, out, err = cli("info", run, "--json")
    assert rc == 1, err
    summary = json.loads(out)
    assert summary["shards"] == 2 and summary["faces"] == faces and summary["videos"] == len(videos)
    assert list(summary["unreadable"]) == [str(bad.resolve())]
    assert why in " ".join(summary["problems"][str(bad.resolve())])
    assert summary["maps"]["mscc"]["faces"] == faces


def test_preview_skips_an_unreadable_shard_with_a_warning_naming_it(run, tmp_path):
    good, bad = sorted(run.glob("shard-*.h5"))
    faces, _ = shard_content(good)
    truncate(bad)
    sheet = tmp_path / "sheet.png"
    rc, out, err = cli("preview", run, "--out", sheet)
    assert rc == 0, out + err
    assert f"Warning: skipped an unreadable shard: cannot open shard {bad.resolve()}" in err
    assert "truncated file" in err
    assert sheet.is_file() and f"({faces} faces x 3 columns" in out

    # nothing readable at all: one error line, no sheet
    truncate(good)
    rc, out, err = cli("preview", run, "--out", tmp_path / "none.png")
    assert rc != 0 and "Traceback" not in out + err
    assert err.strip().startswith("Error: no readable shard at") and len(err.strip().splitlines()) == 1, err
    assert good.name in err and bad.name in err
    assert not (tmp_path / "none.png").exists()


def test_info_names_a_shard_the_manifest_lacks_and_a_resume_redoes_it(run, root):
    first, last = sorted(run.glob("shard-*.h5"))
    faces, videos = shard_content(last)
    manifest = run / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    kept = [x for x in lines if json.loads(x).get("shard") != last.name]
    assert len(kept) == len(lines) - len(videos)
    manifest.write_text("".join(x + "\n" for x in kept))  # killed between the rename and the append

    rc, out, err = cli("info", run)
    assert rc == 0, out + err
    assert (f"{last.name} holds {len(videos)} video(s) ({faces} faces) the manifest does not list there"
            in out), out
    assert "a resume will redo them" in out
    rc, out, err = cli("info", run, "--json")
    assert json.loads(out)["manifest"]["unlisted_shards"] == {
        last.name: {"videos": len(videos), "faces": faces, "listed_elsewhere": 0, "another_run": None}}

    # the reverse as well: the manifest names a shard that is gone
    first.unlink()
    rc, out, err = cli("info", run)
    assert f"the manifest names 1 missing shard(s): {first.name}" in out, out
    assert f"{last.name} holds {len(videos)} video(s)" in out

    # what the message promises: the same annotate command redoes both
    report = annotate("ff++", root, run, SPEC, videos_per_shard=VPS, jobs=1)
    assert report.tasks_done_before == 0
    rc, out, err = cli("info", run, "--json")
    summary = json.loads(out)
    assert rc == 0 and summary["manifest"]["unlisted_shards"] == {} and summary["manifest"]["missing_shards"] == []
    assert summary["manifest"]["ok"] == 4 and summary["faces"] == 8


def digests(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.glob("shard-*"))}


def test_convert_is_refused_while_another_run_holds_the_directory(run):
    from ffmask.shards.convert import convert_shard

    before = digests(run)
    with held_run_lock(run) as holder:
        rc, out, err = cli("shards", "convert", run, "--image-codec", "png")  # would re-encode every shard
        assert rc != 0 and "Traceback" not in out + err
        assert err.strip() == (f"Error: {run.resolve()} is in use by another ffmask run (pid {holder.pid}); "
                               "wait for it to finish, then convert its shards"), err
        assert digests(run) == before  # nothing rewritten, no .tmp left
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            convert_shard(sorted(run.glob("shard-*.h5"))[0], image_codec="png")
        assert digests(run) == before
    rc, out, err = cli("shards", "convert", run, "--image-codec", "png")
    assert rc == 0, out + err
    after = digests(run)
    assert set(after) == set(before) and all(after[k] != before[k] for k in before)


def test_info_names_a_copy_of_a_shard_whose_faces_would_count_twice(run):
    first, _ = sorted(run.glob("shard-*.h5"))
    faces, videos = shard_content(first)
    shutil.copy(first, run / "shard-00007.h5")  # a backup copy named like a shard: every reader takes it
    rc, out, err = cli("info", run)
    assert rc == 1, out + err  # faces counted twice: a problem (session 10)
    assert "shard-00007.h5: 1 problem(s)" in out, out
    assert (f"- holds {len(videos)} video(s) ({faces} faces) the manifest does not list there, "
            f"{len(videos)} of them listed as skipped or in another shard") in out, out
    assert "a resume will redo them" not in out
    assert first.name + " holds" not in out
