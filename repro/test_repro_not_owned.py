"""Reproducers of audit findings in files the audit did not own (pipeline, shards).

Each test asserts the *desired* behaviour, so it FAILS on the code as it is;
run one with
    PYTHONPATH=$PWD python -m pytest -q -p no:cacheprovider repro/test_repro_not_owned.py -k NAME
after the fix it should pass and can move into tests/. Not collected by the
suite (repro/ is outside tests/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ffmask.annotate import annotate
from ffmask.errors import OptionError
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    return root


@pytest.fixture(scope="module")
def shards(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    annotate("ff++", root, out, JobSpec(methods=("mscc", "noise"), frames=2, size=64), videos_per_shard=2, jobs=1)
    return out


def cli(*args):
    env = dict(os.environ, COLUMNS="200")
    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=env, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


# pipeline.JobSpec: one map asked for twice under two spellings is computed and stored twice
@pytest.mark.parametrize("methods", [("diff@0.1", "diff@0.10"), ("noise@5", "noise@5.0")])
def test_jobspec_refuses_one_map_spelt_twice(methods):
    with pytest.raises(OptionError, match="twice"):
        JobSpec(methods=methods)


# shards: no checksum on the datasets, so a flipped byte (bit rot, a bad copy) is read back silently
def test_a_damaged_chunk_is_a_read_error_not_other_values(shards, tmp_path):
    from ffmask.shards import find_shards

    damaged = tmp_path / "run"
    shutil.copytree(shards, damaged)
    path = find_shards(damaged)[0]
    with h5py.File(path, "r") as f:
        ds = f["maps/noise"]
        offset = ds.id.get_chunk_info(0).byte_offset if ds.chunks else ds.id.get_offset()
        size = ds.id.get_chunk_info(0).size if ds.chunks else ds.nbytes
        before = np.asarray(ds[0])
    data = bytearray(path.read_bytes())
    for i in range(offset + size // 3, offset + size // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        with h5py.File(path, "r") as f:
            after = np.asarray(f["maps/noise"][0])
    except OSError:
        return  # the wanted outcome: the damage is seen
    assert np.array_equal(before, after), "damaged bytes were read back as other noise values, silently"


# ffmask info: one truncated shard aborts the whole summary instead of being listed as a problem
def test_info_lists_a_truncated_shard_and_summarises_the_rest(shards, tmp_path):
    from ffmask.shards import find_shards

    damaged = tmp_path / "run"
    shutil.copytree(shards, damaged)
    path = find_shards(damaged)[-1]
    path.write_bytes(path.read_bytes()[:4000])
    rc, text = cli("info", damaged)
    assert rc == 1 and "manifest:" in text and path.name in text, text


# ffmask info: a shard holding videos the manifest does not list (a run killed between renaming the
# shard into place and appending its manifest lines) is not mentioned
def test_info_flags_a_shard_the_manifest_does_not_list(shards, tmp_path):
    from ffmask.shards import find_shards

    damaged = tmp_path / "run"
    shutil.copytree(shards, damaged)
    last = find_shards(damaged)[-1].name
    lines = (damaged / "manifest.jsonl").read_text().splitlines()
    (damaged / "manifest.jsonl").write_text("".join(x + "\n" for x in lines if json.loads(x).get("shard") != last))
    rc, text = cli("info", damaged)
    assert last in text, text


# annotate.prepare_out_dir: a run.json that is JSON but not an object ("[]", a copy of another file)
def test_run_json_that_is_not_an_object_is_one_line(root, shards, tmp_path):
    damaged = tmp_path / "run"
    shutil.copytree(shards, damaged)
    (damaged / "run.json").write_text("[]")
    rc, text = cli("annotate", "ff++", root, "--out", damaged, "--method", "mscc,noise", "--frames", "2", "--size", "64",
                   "--videos-per-shard", "2", "--jobs", "1")
    assert rc == 2 and "Traceback" not in text and "run.json" in text, text
