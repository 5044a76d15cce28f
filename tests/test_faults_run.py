"""Run-level faults of `ffmask annotate` (#9): bad options, resume after damage,
a second run, a full disk, an unwritable --out, dead workers, a dead parent.

Every case runs on real files: a synth FF++ tree of PyAV-made videos, real
HDF5 shards, real second processes, and a real full file system (a small
tmpfs when this user may mount one, else a file size limit).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from ffmask.annotate import annotate
from ffmask.datasets import get_dataset
from ffmask.errors import FFMaskError, OptionError, OutputError, RunLockedError
from ffmask.pipeline import JobSpec
from _shards_read import read_faces
from ffmask.shards import Manifest, find_shards, validate_shard
from ffmask.synth.tree import build_synth

SPEC = JobSpec(methods=("mscc",), frames=3, size=64)
VPS = 3  # an original and its two fakes per shard → 4 shards
CLI_ARGS = ["--method", "mscc", "--frames", "3", "--size", "64", "--videos-per-shard", str(VPS)]
# what the CLI passes, so an in-process run resumes a CLI one
CLI_DATASET = {"manipulations": None, "compression": "c23", "split": "all", "include_originals": True}


def resume_in_process(root, out, **kw):
    return annotate("ff++", root, out, SPEC, videos_per_shard=VPS, dataset_options=CLI_DATASET, **kw)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=5, identities=4, frames=6, compressions=("c23",),
                manipulations=("Deepfakes", "Face2Face"))
    return root


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
    return out


def records(out: Path) -> dict:
    """(video_id, frame_index) -> (image, mscc map), read straight from HDF5."""
    found = {}
    for face in read_faces(out, validate=False):
        key = (face["video_id"], face["frame_index"])
        assert key not in found, f"{key} written twice"
        found[key] = (face["image"], face["maps"]["mscc"])
    return found


def assert_same_records(a: Path, b: Path) -> None:
    ra, rb = records(a), records(b)
    assert ra.keys() == rb.keys()
    for key in ra:
        np.testing.assert_array_equal(ra[key][0], rb[key][0])
        np.testing.assert_array_equal(ra[key][1], rb[key][1])


def cli(*args, env=None, **kw) -> subprocess.Popen:
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "ffmask", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def finish(p: subprocess.Popen, timeout=300) -> tuple[int, str]:
    text = p.communicate(timeout=timeout)[0].decode()
    return p.returncode, text


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


def assert_one_line_error(rc: int, text: str, *needles: str) -> str:
    assert rc == 2, text
    assert "Traceback" not in text and "Segmentation" not in text, text
    (line,) = error_lines(text)
    for needle in needles:
        assert needle in line, line
    return line


# -- 8, 7: every option is checked before --out is touched ------------------

@pytest.mark.parametrize("kwargs, flag", [
    (dict(frames=0), "--frames"),
    (dict(frames=-3), "--frames"),
    (dict(frames=None), "--frames"),
    (dict(every=0), "--every"),
    (dict(size=4), "--size"),
    (dict(size=64.0), "--size"),
    (dict(scale=0), "--scale"),
    (dict(scale=float("nan")), "--scale"),
    (dict(noise_sigma=-1.0), "--noise-sigma"),
    (dict(noise_sigma=float("nan")), "--noise-sigma"),
    (dict(noise_sigma=float("inf")), "--noise-sigma"),
    (dict(detector="hog"), "--detector"),
    (dict(methods=()), "--method"),
    (dict(methods=("mscc", "nope")), "nope"),
    (dict(methods=("mscc", "mscc")), "twice"),
])
def test_jobspec_refuses_bad_values(kwargs, flag):
    base = dict(methods=("mscc",), frames=3)
    with pytest.raises(OptionError, match=flag) as info:
        JobSpec(**{**base, **kwargs})
    assert isinstance(info.value, ValueError)


def test_jobspec_every_replaces_frames_and_numbers_are_normalised():
    spec = JobSpec(methods=["mscc", "noise"], every=4, scale=2, noise_sigma=np.float32(7))
    assert spec.methods == ("mscc", "noise") and spec.frames is None and spec.every == 4
    assert spec.scale == 2.0 and type(spec.noise_sigma) is float


@pytest.mark.parametrize("kwargs, flag", [
    (dict(videos_per_shard=0), "--videos-per-shard"),
    (dict(limit=0), "--limit"),
    (dict(limit=-1), "--limit"),
    (dict(limit=2.5), "--limit"),
])
def test_annotate_refuses_bad_options_before_touching_out(root, tmp_path, kwargs, flag):
    out = tmp_path / "out"
    with pytest.raises(OptionError, match=flag):
        annotate("ff++", root, out, SPEC, **kwargs)
    assert not out.exists()


def test_bad_jobs_refused_before_touching_out(root, tmp_path):
    out = tmp_path / "out"
    for jobs in (0, -2, 1.5):
        with pytest.raises(FFMaskError, match="--jobs"):
            annotate("ff++", root, out, SPEC, jobs=jobs)
    assert not out.exists()


def test_cli_bad_value_writes_nothing_and_the_corrected_command_runs(root, tmp_path, reference):
    out = tmp_path / "out"
    # (every other bad value is checked in-process above; the CLI only adds the one line)
    for bad in (["--noise-sigma", "nan"], ["--videos-per-shard", "0"]):
        rc, text = finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS, *bad))
        assert_one_line_error(rc, text, bad[0])
        assert not out.exists(), bad
    rc, text = finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS, "--noise-sigma", "5"))
    assert rc == 0, text
    assert_same_records(reference, out)


def test_limit_takes_whole_groups_an_original_then_its_fakes(root, tmp_path):
    items = get_dataset("ff++", root).items
    originals = [i.video_id for i in items if i.label == 0]
    fakes_of = {o: [i.video_id for i in items if i.original is not None and i.original.video_id == o]
                for o in originals}
    # The scan lists every original before any fake: its first N would be originals only, nothing to compare.
    assert all(i.label == 0 for i in items[:len(originals)])
    for n, expected in ((1, [originals[0]]), (2, [originals[0], fakes_of[originals[0]][0]]),
                        (4, [originals[0], *fakes_of[originals[0]], originals[1]])):
        out = tmp_path / f"limit{n}"
        report = annotate("ff++", root, out, JobSpec(methods=("mscc",), frames=1, size=64), limit=n)
        assert sorted(Manifest(out / "manifest.jsonl").load()) == sorted(expected)
        labels = {face["label"] for face in read_faces(out, validate=False)}
        assert labels == ({0} if n == 1 else {0, 1}), n
        assert report.videos["ok"] == n


# -- 9: --device is for MTCNN and FoCus, never for dlib ---------------------

@pytest.mark.parametrize("device", ["auto", "cuda", "cpu"])
def test_device_never_reaches_the_dlib_detector(root, tmp_path, device):
    out = tmp_path / "out"
    spec = JobSpec(methods=("mscc",), frames=1, size=64, device=device)
    assert spec.detector_device is None
    report = annotate("ff++", root, out, spec, videos_per_shard=VPS, limit=8)
    assert report.videos["ok"] == 8 and not report.skip_reasons


def test_device_is_checked_when_mtcnn_or_focus_use_it(root, tmp_path):
    assert JobSpec(methods=("mscc",), detector="mtcnn", device="cpu").detector_device == "cpu"
    with pytest.raises(OptionError, match="--device"):
        annotate("ff++", root, tmp_path / "a", JobSpec(methods=("mscc",), detector="mtcnn", device="gpu0"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(FFMaskError, match="CUDA is not available"):
            annotate("ff++", root, tmp_path / "b", JobSpec(methods=("focus",), device="cuda"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- 2: an FF++ root without manipulated_sequences/ -------------------------

def test_ffpp_without_fakes_is_a_problem_and_paired_methods_refuse(root, tmp_path):
    real_only = tmp_path / "ff++"
    shutil.copytree(root / "original_sequences", real_only / "original_sequences")
    with pytest.raises(FFMaskError, match="manipulated_sequences"):
        annotate("ff++", real_only, tmp_path / "paired", SPEC)
    assert not (tmp_path / "paired").exists()
    report = annotate("ff++", real_only, tmp_path / "noise", JobSpec(methods=("noise",), frames=1, size=64))
    assert report.videos["ok"] == 4
    assert any(p.startswith("manipulated_sequences: folder missing") for p in report.problems)
    rc, text = finish(cli("annotate", "ff++", real_only, "--out", tmp_path / "cli", "--method", "noise",
                          "--frames", "1", "--size", "64"))
    assert rc == 0 and "dataset problem: manipulated_sequences: folder missing" in " ".join(text.split()), text


# -- 3: resume re-checks every shard the manifest names ---------------------

def test_resume_redoes_missing_truncated_and_unreadable_shards(root, tmp_path, reference, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    shards = sorted(out.glob("shard-*.h5"))
    assert len(shards) == 4
    shards[0].write_bytes(shards[0].read_bytes()[: shards[0].stat().st_size // 2])  # truncated
    shards[1].unlink()  # missing
    from ffmask.shards import summarize_shards

    assert summarize_shards(shards[3])["manifest"]["missing_shards"] == [shards[1].name]  # `ffmask info` says so
    shards[2].write_bytes(b"\0" * 4096)  # not HDF5 at all
    with h5py.File(shards[3], "a") as f:  # readable, but one record short of the manifest
        for name in ("images", "label", "video_id"):
            f[name].resize(f[name].shape[0] - 1, axis=0)

    report = annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
    redone = {line.split()[0]: line for line in report.redone_shards}
    assert sorted(redone) == [p.name for p in shards]
    assert "unreadable" in redone[shards[0].name] and "truncated" in redone[shards[0].name]
    assert "missing" in redone[shards[1].name]
    assert "unreadable" in redone[shards[2].name]
    assert "records" in redone[shards[3].name]
    assert all(line.endswith("its 3 videos are redone") for line in report.redone_shards)
    assert report.tasks_done_before == 0 and report.videos["ok"] == 12
    assert_same_records(reference, out)
    # the summary the CLI prints says so
    from ffmask.cli._report import print_annotate_summary

    print_annotate_summary(report)
    captured = capsys.readouterr()
    printed = " ".join((captured.out + captured.err).split())
    assert f"resume: shard {shards[1].name} is missing: its 3 videos are redone" in printed
    assert "shards redone (missing or damaged) │ 4" in printed
    for path in find_shards(out):
        assert validate_shard(path) == []
    # and now every shard is sound: nothing is redone
    again = annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
    assert again.redone_shards == [] and again.tasks_done_before == 4 and again.faces == 0


# -- 11: one run per --out --------------------------------------------------

_HOLD_LOCK = """
import sys, time
from ffmask.outdir import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_run_into_the_same_out_is_refused_naming_the_first(root, tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}\\b"):
            annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing else touched
        rc, text = finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS))
        assert_one_line_error(rc, text, "in use by another ffmask run", f"pid {holder.pid}")
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
    assert_same_records(reference, out)


# -- 10: a full disk --------------------------------------------------------

def _mount_tmpfs(path: Path, size: int, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def test_disk_full_is_one_line_leaves_no_tmp_and_resumes(root, tmp_path, reference):
    shard_bytes = max(p.stat().st_size for p in find_shards(reference))
    # One small disk per run, so that each run meets a full disk while writing a shard
    # whatever the shards' exact sizes (the first shard fits, not all four).
    disks = {jobs: tmp_path / f"disk{jobs}" for jobs in (1, 2)}
    mounted = all([_mount_tmpfs(d, int(1.5 * shard_bytes) + (64 << 10)) for d in disks.values()])
    try:
        def run(out, jobs, limit=None):
            def small_files():
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            return finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS, "--jobs", jobs,
                              preexec_fn=small_files if limit else None))

        # RLIMIT_FSIZE instead of a tmpfs: every shard is over the limit
        limit = None if mounted else shard_bytes // 2
        for jobs in (1, 2):
            out = (disks[jobs] if mounted else tmp_path) / f"jobs{jobs}"
            rc, text = run(out, jobs, limit)
            reason = "no space left on device" if mounted else "file too large"
            line = assert_one_line_error(rc, text, reason, "cannot write shard-0000")
            assert not list(out.glob("*.tmp")), line
            written = sorted(p.name for p in out.glob("shard-*.h5"))
            assert len(written) < 4
            for name in written:
                assert validate_shard(out / name) == []
        if mounted:
            assert len(list((disks[1] / "jobs1").glob("shard-*.h5"))) >= 1  # it did fill the disk
            # A new run on the full disk fails on its first byte, the run lock: one line too.
            rc, text = run(disks[1] / "another", 1)
            assert_one_line_error(rc, text, "no space left on device", "cannot write to --out")
            subprocess.run(["mount", "-o", "remount,size=64m", str(disks[1])], check=True)
        out = (disks[1] if mounted else tmp_path) / "jobs1"
        kept = len(list(out.glob("shard-*.h5")))
        assert resume_in_process(root, out).tasks_done_before == kept  # the finished shards are kept
        assert_same_records(reference, out)
    finally:
        for d in disks.values():
            _umount(d)  # a disk that was not mounted: nothing to do


# -- 12: an --out that cannot be written ------------------------------------

def test_out_under_a_regular_file(root, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OutputError, match="is a regular file"):
        annotate("ff++", root, tmp_path / "file" / "out", SPEC)
    with pytest.raises(OutputError, match="not a directory"):
        annotate("ff++", root, tmp_path / "file", SPEC)


def test_read_only_out_is_one_line_and_resumable_once_writable(root, tmp_path, reference):
    out = tmp_path / "ro"
    out.mkdir()
    mounted = _mount_tmpfs(out, 64 << 20, "ro")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root ignores permissions and cannot mount a read-only tmpfs here")
        out.chmod(0o555)
    try:
        rc, text = finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS))
        assert_one_line_error(rc, text, "cannot write to --out", "read-only" if mounted else "permission denied")
        if mounted:
            subprocess.run(["mount", "-o", "remount,rw", str(out)], check=True)
        else:
            out.chmod(0o755)
        annotate("ff++", root, out, SPEC, videos_per_shard=VPS)
        assert_same_records(reference, out)
    finally:
        if mounted:
            _umount(out)


# -- 12: dead workers and a dead parent -------------------------------------

# Loaded by every Python process of the child run (PYTHONPATH), loky workers
# included: makes shard appends slow, or SIGKILLs a worker at its 2nd append.
_SITECUSTOMIZE = """
import os
if os.environ.get("FFMASK_TEST_APPEND"):
    import signal, time
    from ffmask.shards import writer
    _append, _calls = writer.ShardWriter.append, [0]
    def append(self, rec):
        _calls[0] += 1
        what = os.environ["FFMASK_TEST_APPEND"]
        if what == "kill" and _calls[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if what == "slow":
            time.sleep(3.0)
        _append(self, rec)
    writer.ShardWriter.append = append
"""


def _hooked_env(tmp_path: Path, mode: str) -> dict:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    path = os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", ""), str(Path(__file__).parents[1])])
    return dict(os.environ, PYTHONPATH=path, FFMASK_TEST_APPEND=mode)


@pytest.mark.slow
def test_killed_worker_is_one_line_and_the_run_resumes(root, tmp_path, reference):
    out = tmp_path / "out"
    rc, text = finish(cli("annotate", "ff++", root, "--out", out, *CLI_ARGS, "--jobs", "2",
                          env=_hooked_env(tmp_path, "kill")))
    assert_one_line_error(rc, text, "worker process died", "exit code SIGKILL(-9)", "resume")
    assert not list(out.glob("*.tmp"))
    resume_in_process(root, out)
    assert_same_records(reference, out)


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_parent(root, tmp_path, reference):
    import psutil

    out = tmp_path / "out"
    parent = cli("annotate", "ff++", root, "--out", out, *CLI_ARGS, "--jobs", "2",
                 env=_hooked_env(tmp_path, "slow"))
    try:
        deadline = time.time() + 120
        while len(list(out.glob("*.tmp"))) < 2:  # both workers are mid-shard
            assert parent.poll() is None and time.time() < deadline, parent.stdout.read().decode()
            time.sleep(0.05)
        workers = [c for c in psutil.Process(parent.pid).children()
                   if "popen_loky_posix" in " ".join(c.cmdline())]
        assert workers
        parent.kill()
        parent.wait()
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived their parent: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
    shards = sorted(p.name for p in out.glob("shard-*.h5"))
    time.sleep(1.0)
    assert sorted(p.name for p in out.glob("shard-*.h5")) == shards  # nobody writes any more
    assert not list(out.glob("*.tmp"))
    resume_in_process(root, out)
    assert_same_records(reference, out)


# -- options no test ran before: --no-originals, --split (--jobs 2: test_backends.py) --

def manifest_of(out: Path) -> dict:
    return {k: (e["status"], e.get("faces")) for k, e in Manifest(out / "manifest.jsonl").load().items()}


def test_no_originals_writes_only_fakes_still_compared_with_their_originals(root, tmp_path, reference):
    out = tmp_path / "out"
    annotate("ff++", root, out, SPEC, videos_per_shard=VPS, dataset_options={"include_originals": False})
    entries = Manifest(out / "manifest.jsonl").load()
    assert sorted(entries) == sorted(k for k in manifest_of(reference) if not k.startswith("youtube/"))
    got, ref = records(out), records(reference)
    assert got and {vid for vid, _ in got} == set(entries)
    for key, (image, mscc) in got.items():  # the same crops and maps as with the originals written
        np.testing.assert_array_equal(image, ref[key][0])
        np.testing.assert_array_equal(mscc, ref[key][1])
    assert any(m.any() for _, m in got.values())


def test_split_keeps_the_pairs_of_the_official_split_file(root, tmp_path):
    splits = {name: json.loads((root / "splits" / f"{name}.json").read_text()) for name in ("train", "val", "test")}
    split = next(name for name, pairs in splits.items() if len(pairs) == 1)
    empty = next(name for name, pairs in splits.items() if not pairs)
    ((a, b),) = splits[split]
    out = tmp_path / split
    annotate("ff++", root, out, SPEC, videos_per_shard=VPS, dataset_options={"split": split})
    expected = {f"youtube/{a}", f"youtube/{b}"} | {f"{m}/{x}_{y}" for m in ("Deepfakes", "Face2Face")
                                                   for x, y in ((a, b), (b, a))}
    assert set(Manifest(out / "manifest.jsonl").load()) == expected
    assert {face["split"] for face in read_faces(out)} == {split}
    with pytest.raises(FFMaskError, match="no videos found"):  # an empty list of pairs
        annotate("ff++", root, tmp_path / empty, SPEC, dataset_options={"split": empty})
    assert not (tmp_path / empty).exists()
