"""Session 13 (rel11), part B: a full disk (the child's file size limit) in the writers no pass had filled.

At c2a93bc ``ffmask synth --pairs`` wrote no crop at all and said it was done (``cv2.imwrite``
only returns False), and ``synth`` (a tree), ``shards convert`` and ``bench masks`` (its
plots) died with tracebacks. Each is one line naming the file now; what was there stays.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


def cli(*args, limit: int, timeout: float = 240) -> tuple[int, str]:
    """``python -m ffmask ARGS`` whose files may grow to ``limit`` bytes; (exit code, stdout + stderr)."""
    env = dict(os.environ, COLUMNS="300", OMP_NUM_THREADS="1")

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=timeout, preexec_fn=cap)
    return p.returncode, " ".join((p.stdout + p.stderr).replace("│", " ").split())


def test_synth_pairs_on_a_full_disk_is_one_line_not_a_folder_without_crops(tmp_path):
    code, text = cli("synth", tmp_path / "pairs", "--pairs", "2", limit=40_000)
    # c2a93bc: exit 0, "2 samples x 2 compressions", c23/ and c40/ empty
    assert code != 0 and "Traceback" not in text, text[-2000:]
    assert "rror: cannot write " in text and "_real.png: file too large" in text, text[-2000:]


def test_synth_tree_on_a_full_disk_is_one_line_and_leaves_no_tmp(tmp_path):
    out = tmp_path / "tree"
    code, text = cli("synth", out, "-n", "2", "--frames", "4", "-c", "c23", "-m", "DF", "--jobs", "1", limit=4_000)
    assert code == 2 and "Traceback" not in text, text[-2000:]  # c2a93bc: av.error.OSError traceback
    assert "Error: cannot write " in text and "file too large" in text and "with --overwrite" in text, text
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("fulldisk") / "shards"
    annotate("ff++", SAMPLE, out, JobSpec(methods=("mscc",), frames=1, size=64),
             dataset_options={"compression": "c23", "manipulations": ("Deepfakes",)}, videos_per_shard=4, jobs=1)
    return out


def test_shards_convert_on_a_full_disk_is_one_line_and_keeps_each_shard(shards, tmp_path):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards.glob("*.h5")}
    code, text = cli("shards", "convert", shards, "--image-codec", "png", limit=20_000)
    assert code == 2 and "Traceback" not in text, text[-2000:]  # c2a93bc: h5py OSError traceback
    assert "Error: cannot write " in text and "file too large" in text, text
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards.glob("*.h5")}
    assert after == before and not list(shards.glob("*.tmp"))


def test_bench_masks_on_a_full_disk_is_one_line(tmp_path):
    code, text = cli("bench", "masks", SAMPLE, "--out", tmp_path / "bench", "-m", "mscc", "--frames", "1", "-c",
                     "c23", "--manipulations", "Deepfakes", limit=30_000, timeout=300)
    assert code != 0 and "Traceback" not in text, text[-2000:]  # c2a93bc: a traceback from matplotlib's savefig
    assert "rror: cannot write " in text and ".png: file too large" in text, text[-2000:]
