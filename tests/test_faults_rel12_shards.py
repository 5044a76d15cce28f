"""Session 14 (rel12), A2 and A5: whose lock file an export deletes; a zombie attempt's tmp file.

A2: at 06d4739 ``export deepfakebench --out SHARDS --overwrite`` deleted the annotate run's
``run.lock`` when it ended (its lock was ``cleanup="always"``); it now deletes a lock file it
created or one a killed export left (the lock file names its kind), never another command's.
A5: a Dask zombie attempt (H2) that creates ``shard-N.<pid>-<hex>.h5.tmp`` after its run ended
leaves it there until the next annotate run: ``info`` counts it as unfinished, ``export``,
``shards convert`` and ``ShardDataset`` read the finished shards only and leave it alone
(nothing to fix; pinned here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest

from ffmask.annotate import annotate
from ffmask.export.deepfakebench import export_deepfakebench
from ffmask.outdir import RunLock
from ffmask.pipeline import JobSpec
from ffmask.shards import ShardDataset
from ffmask.shards.convert import convert_shards
from ffmask.shards.summary import summarize_shards
from ffmask.synth.tree import build_synth


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    out = tmp_path_factory.mktemp("run") / "out"
    annotate("ff++", root, out, JobSpec(methods=("mscc",), frames=2, size=64), videos_per_shard=2, jobs=1)
    assert (out / "run.lock").is_file()  # annotate keeps its lock file (it names the last run's pid)
    return out


@pytest.fixture
def run(shards, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(shards, copy)  # with annotate's run.lock
    return copy


def test_an_export_into_the_shard_folder_keeps_annotates_lock_file(run):
    before = (run / "run.lock").read_text()
    export_deepfakebench(run, run, overwrite=True)
    assert (run / "dataset_json").is_dir()
    # 06d4739: run.lock deleted (a lock the export did not create)
    assert (run / "run.lock").exists()
    assert (run / "run.lock").read_text().split()[0].isdigit() and before


def test_an_export_deletes_its_own_lock_file_and_one_a_killed_export_left(run, tmp_path):
    fresh = tmp_path / "fresh"
    export_deepfakebench(run, fresh)
    assert not (fresh / "run.lock").exists()
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "run.lock").write_text("123456\nexport\n")  # what an export killed with -9 leaves
    (killed / "FaceForensics++").mkdir()
    export_deepfakebench(run, killed, overwrite=True)
    assert not (killed / "run.lock").exists()
    shard_lock = RunLock(run, cleanup="own", kind="export").acquire()  # annotate's file: kept
    shard_lock.release()
    assert (run / "run.lock").exists()


def test_a_zombie_attempts_tmp_file_is_left_alone_by_readers(run, tmp_path):
    finished = sorted(run.glob("shard-*.h5"))
    zombie = run / f"{finished[1].stem}.4242-0badf00d.h5.tmp"
    shutil.copy(finished[1], zombie)  # a complete attempt that lost the race to link its shard
    torn = run / f"{finished[0].stem}.4243-deadbeef.h5.tmp"
    torn.write_bytes(finished[0].read_bytes()[:5000])  # one still being written (or killed)
    summary = summarize_shards(finished)
    faces = summary["faces"]
    assert faces == sum(len(h5py.File(p, "r")["label"]) for p in finished)
    assert len(ShardDataset(run)) == faces  # the directory: finished shards only
    report = export_deepfakebench(run, tmp_path / "exp")
    assert report.faces == faces and not report.missing_shards
    convert_shards([run], image_codec="png")
    assert zombie.exists() and torn.exists()  # not the reader's to delete: the attempt may still be live
