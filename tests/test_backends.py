"""Backends end to end on the bundled sample: loky, fork and Dask give the records of a serial run.

A serial run (one job, in this process) is the reference. ``--jobs 2`` with
loky, with workers forked from the run's process, a real 2-worker Dask
LocalCluster started by the CLI, and a run on an external cluster that loses
a worker (SIGKILL) mid-run must write exactly the same faces, maps, boxes
and landmarks into the same shard names, with a manifest that lists every
video once. Bad backend options are refused before anything is written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ffmask import backends
from ffmask.annotate import annotate
from ffmask.annotate import run_task as real_run_task
from ffmask.errors import FFMaskError, WorkerDiedError
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest, ShardIndex, find_shards
from tests._cli import live_processes_of_group

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
SPEC = JobSpec(methods=("official", "mscc"), frames=2, size=64)
OPTIONS = {"manipulations": ["Deepfakes"], "compression": "c23", "split": "all", "include_originals": True}
VPS = 1  # one original + its fake per shard: 6 tasks


def run(out, **kw):
    return annotate("ff++", SAMPLE, out, SPEC, dataset_options=OPTIONS, videos_per_shard=VPS, **kw)


def records(out: Path) -> dict:
    """(shard name, video_id, frame_index) -> every stored array of that face."""
    found = {}
    for path in find_shards(out):
        index = ShardIndex(path, maps=["official", "mscc"])
        for i in range(len(index)):
            face = index.read(i, geometry=True)
            key = (path.name, face["video_id"], face["frame_index"])
            assert key not in found, f"face written twice: {key}"
            found[key] = face
    return found


def assert_same_records(out: Path, reference: Path) -> None:
    got, want = records(out), records(reference)
    assert sorted(got) == sorted(want)
    for key, face in want.items():
        other = got[key]
        np.testing.assert_array_equal(other["image"], face["image"], err_msg=str(key))
        for name in face["maps"]:
            np.testing.assert_array_equal(other["maps"][name], face["maps"][name], err_msg=f"{key} {name}")
        np.testing.assert_array_equal(other["box"], face["box"])
        np.testing.assert_array_equal(other["landmarks"], face["landmarks"])
        for field in ("label", "original_id", "manipulation", "compression", "split"):
            assert other[field] == face[field], (key, field)
    manifest_got, manifest_want = Manifest(out / "manifest.jsonl").load(), Manifest(reference / "manifest.jsonl").load()
    assert {k: (e["status"], e["shard"]) for k, e in manifest_got.items()} == \
        {k: (e["status"], e["shard"]) for k, e in manifest_want.items()}
    assert not list(out.glob("*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    report = run(out, jobs=1)
    assert report.tasks_total == 6 and report.videos["ok"] == 12
    assert len(records(out)) == 24  # 12 videos x 2 frames, every face found
    return out


def test_loky_two_jobs_same_records(reference, tmp_path):
    report = run(tmp_path, jobs=2, backend="loky")
    assert report.videos["ok"] == 12
    assert json.loads((tmp_path / "run.json").read_text())["jobs"] == 2
    assert_same_records(tmp_path, reference)


@pytest.fixture
def single_threaded(monkeypatch):
    """This process as ``fork`` needs it for 2 jobs: without the threads an
    earlier loky run leaves (its reusable executor's), on 2 cores (one thread
    per worker), else the fork backend falls back to loky."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)
    monkeypatch.setattr(backends, "default_jobs", lambda: 2)
    # Other tests of the suite import torch in this process; these workers never run it.
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert backends.fork_is_safe(2), [t.name for t in threading.enumerate()]


def test_fork_is_unsafe_with_threads_per_worker_or_torch(monkeypatch, single_threaded):
    assert backends.fork_is_safe(2) and not backends.fork_is_safe(1)  # 1 job on 2 cores: 2 threads
    monkeypatch.setitem(sys.modules, "torch", object())
    assert not backends.fork_is_safe(2)


def _task_noting_the_detector(task, *rest):
    """run_task, after noting in a file what this worker holds before its task:
    its pid and how many detectors its ``get_detector`` cache has built."""
    from ffmask.faces.detect import _cached_detector

    with open(os.environ["FFMASK_TEST_NOTES"], "a") as notes:
        notes.write(f"{os.getpid()} {_cached_detector.cache_info().currsize}\n")
    return real_run_task(task, *rest)


def test_fork_two_jobs_same_records(reference, tmp_path, monkeypatch, single_threaded):
    import ffmask.annotate as annotate_module
    from ffmask.faces.detect import _cached_detector

    # The serial reference built the detector in this process: forget it, so
    # that only the run's own preparation can hand it to the workers.
    _cached_detector.cache_clear()
    notes = tmp_path / "notes.txt"
    monkeypatch.setenv("FFMASK_TEST_NOTES", str(notes))
    monkeypatch.setattr(annotate_module, "run_task", _task_noting_the_detector)
    out = tmp_path / "out"
    report = run(out, jobs=2, backend="fork")
    assert report.videos["ok"] == 12
    assert json.loads((out / "run.json").read_text())["backend"] == "fork"
    assert_same_records(out, reference)
    seen = [line.split() for line in notes.read_text().splitlines()]
    assert len(seen) == 6 and str(os.getpid()) not in {pid for pid, _ in seen}  # 6 tasks, all in workers
    # every worker started with the detector this process loaded before forking
    assert all(int(built) == 1 for _, built in seen), seen


# Filled in the test's own process only: a forked worker sees it, a fresh
# interpreter (a loky worker, which imports this module anew) does not.
_PARENT_ONLY: list = []


def _where(_):
    return os.getpid(), os.getppid(), bool(_PARENT_ONLY)


def test_fork_workers_are_forked_from_this_process(monkeypatch, single_threaded):
    monkeypatch.setattr(sys.modules[__name__], "_PARENT_ONLY", [1])
    with backends.dispatch(_where, [(i,) for i in range(4)], backend="fork", jobs=2) as results:
        seen = list(results)
    assert len(seen) == 4
    assert all(ppid == os.getpid() and pid != os.getpid() and forked for pid, ppid, forked in seen), seen
    assert len({pid for pid, _, _ in seen}) <= 2  # two workers, reused


def test_fork_prepare_runs_here_once_and_the_workers_start_with_it(monkeypatch, single_threaded):
    monkeypatch.setattr(sys.modules[__name__], "_PARENT_ONLY", [])
    prepared = []

    def prepare():
        prepared.append(os.getpid())
        _PARENT_ONLY.append(1)

    with backends.dispatch(_where, [(i,) for i in range(4)], backend="fork", jobs=2, prepare=prepare) as results:
        seen = list(results)
    assert prepared == [os.getpid()]
    assert len(seen) == 4 and all(pid != os.getpid() and forked for pid, _, forked in seen), seen


def test_prepare_is_not_called_for_a_run_in_this_process(single_threaded):
    prepared = []
    with backends.dispatch(_where, [(0,), (1,)], backend="fork", jobs=1, prepare=lambda: prepared.append(1)) as res:
        seen = list(res)
    assert prepared == [] and [pid for pid, _, _ in seen] == [os.getpid()] * 2


def test_fork_with_a_thread_running_uses_loky(monkeypatch, single_threaded):
    monkeypatch.setattr(sys.modules[__name__], "_PARENT_ONLY", [1])
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    prepared = []
    try:
        assert not backends.fork_is_safe(2)
        with backends.dispatch(_where, [(i,) for i in range(3)], backend="fork", jobs=2,
                               prepare=lambda: prepared.append(1)) as results:
            seen = list(results)
    finally:
        release.set()
        thread.join()
    assert len(seen) == 3 and not any(forked for _, _, forked in seen), seen  # fresh interpreters: loky
    assert prepared == []  # loky's fresh workers would not see it


def test_fork_falls_back_to_loky_when_prepare_starts_a_thread(monkeypatch, single_threaded):
    monkeypatch.setattr(sys.modules[__name__], "_PARENT_ONLY", [1])
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    try:
        with backends.dispatch(_where, [(i,) for i in range(2)], backend="fork", jobs=2,
                               prepare=thread.start) as results:
            seen = list(results)
    finally:
        release.set()
        thread.join()
    assert len(seen) == 2 and not any(forked for _, _, forked in seen), seen


def _killed_at_second_task(task, *rest):
    # the real run_task: ffmask.annotate's own name is this function during the test
    if task.index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_run_task(task, *rest)


def test_fork_worker_killed_is_one_line_and_the_run_resumes(reference, tmp_path, monkeypatch, single_threaded):
    import ffmask.annotate as annotate_module

    monkeypatch.setattr(annotate_module, "run_task", _killed_at_second_task)
    with pytest.raises(WorkerDiedError, match=r"worker process died .*exit code SIGKILL\(-9\);.*resume") as err:
        run(tmp_path, jobs=2, backend="fork")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.undo()
    again = run(tmp_path, jobs=1)
    assert again.tasks_done_before < again.tasks_total == 6
    assert_same_records(tmp_path, reference)


def test_fork_refused_where_the_platform_cannot_fork(tmp_path, monkeypatch):
    entry = backends.BACKENDS["fork"]
    monkeypatch.setitem(backends.BACKENDS, "fork", backends.Backend(
        entry.name, entry.description, pool=entry.pool, serial_in_process=True,
        platform_check=lambda: False, platform_note=entry.platform_note))
    with pytest.raises(FFMaskError, match="--backend fork needs the 'fork' start method .*use --backend loky"):
        run(tmp_path / "out", backend="fork", jobs=2)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dask_local_cluster_from_the_cli(reference, tmp_path):
    out = tmp_path / "dask"
    cmd = [sys.executable, "-m", "ffmask", "annotate", "ff++", str(SAMPLE), "--out", str(out),
           "--method", "official,mscc", "--frames", "2", "--size", "64", "--manipulations", "Deepfakes",
           "--videos-per-shard", str(VPS), "--backend", "dask", "--jobs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "videos ok" in proc.stdout and "12" in proc.stdout
    config = json.loads((out / "run.json").read_text())
    assert (config["backend"], config["jobs"]) == ("dask", 2)
    assert_same_records(out, reference)


@pytest.mark.slow
def test_dask_worker_killed_mid_run_still_gives_identical_records(reference, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)  # worker address -> pid
        killed = []

        def kill_one_worker(result):
            if not killed:  # after the first shard lands: kill a worker that holds a task
                busy = [address for address, keys in client.processing().items() if keys]
                assert busy, "no task in flight to lose"
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        report = run(tmp_path, backend="dask", scheduler=cluster.scheduler_address, on_progress=kill_one_worker)
        assert killed and report.videos["ok"] == 12
    assert_same_records(tmp_path, reference)
    # and the run is complete: resuming it finds nothing left to do
    again = run(tmp_path, jobs=1)
    assert again.tasks_done_before == again.tasks_total == 6 and again.faces == 0
    assert_same_records(tmp_path, reference)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backend": "threads"}, "unknown --backend 'threads'"),
        ({"backend": "loky", "scheduler": "tcp://127.0.0.1:8786"}, "--scheduler needs --backend dask"),
        ({"jobs": 0}, "--jobs must be an integer >= 1"),
        ({"backend": "dask", "scheduler": "tcp://127.0.0.1:1"}, "cannot reach the Dask scheduler"),
    ],
)
def test_bad_backend_options_refused_before_anything_is_written(tmp_path, monkeypatch, options, message):
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "out"
    with pytest.raises(FFMaskError, match=message.replace("(", r"\(").replace("+", r"\+")):
        run(out, **options)
    assert not out.exists()


def test_missing_dask_names_the_extra(tmp_path, monkeypatch):
    entry = backends.BACKENDS["dask"]
    monkeypatch.setitem(backends.BACKENDS, "dask", backends.Backend(
        entry.name, entry.description, entry.session, requires="ffmask_no_such_module", extra="dask",
        joins_cluster=True))
    with pytest.raises(FFMaskError, match=r"pip install 'ffmask\[dask\]'"):
        run(tmp_path / "out", backend="dask", jobs=2)
    assert not (tmp_path / "out").exists()


def test_shard_not_visible_to_the_client_stops_the_run(tmp_path, monkeypatch):
    # a "worker" whose --out is another disk: the shard lands there, not in the client's --out
    import ffmask.annotate as annotate_module

    real_task, elsewhere = annotate_module.run_task, tmp_path / "worker-disk"
    elsewhere.mkdir()
    monkeypatch.setattr(annotate_module, "run_task",
                        lambda task, spec, out_dir, *rest: real_task(task, spec, str(elsewhere), *rest))
    out = tmp_path / "out"
    with pytest.raises(FFMaskError, match="storage shared by this machine and every worker"):
        annotate("ff++", SAMPLE, out, SPEC, dataset_options={**OPTIONS, "split": "test"}, videos_per_shard=VPS,
                 jobs=1, limit=2)
    assert find_shards(elsewhere) and not Manifest(out / "manifest.jsonl").load()


def test_jobs_default_to_every_core(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 5}, raising=False)
    assert backends.validate_backend("loky", None) == 4
    assert backends.threads_per_task("loky", 2) == 2
    assert backends.threads_per_task("dask", 2, scheduler="tcp://x:1") == 1


def _blas_threads():
    from threadpoolctl import threadpool_info

    return {p["internal_api"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_a_task_runs_with_its_share_of_blas_threads(monkeypatch):
    # A forked worker (or the serial run) inherits this process's BLAS pool;
    # run_task must size it like OpenCV's, or every worker's BLAS threads
    # spin on the same cores (measured: twice the CPU time under fork).
    from threadpoolctl import threadpool_limits

    import ffmask.annotate as annotate_module

    seen = []
    monkeypatch.setattr(annotate_module, "_run_task", lambda *a: seen.append(_blas_threads()) or "done")
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if not before or max(before.values()) < 2:
            pytest.skip(f"this NumPy's BLAS runs one thread here ({before})")
        assert annotate_module.run_task(None, None, "", {}, threads=1) == "done"
        assert _blas_threads() == before  # restored after the task
    assert seen and all(n == 1 for n in seen[0].values()), seen


_ORPHAN_SCRIPT = """
import os, sys, time
from ffmask import backends
print(os.getpid(), flush=True)
with backends.dispatch(time.sleep, [(60,)] * 2, backend=sys.argv[1], jobs=2) as results:
    # with one task per worker and both asleep, no worker would ever see its run die by itself
    list(results)
"""


@pytest.mark.parametrize("backend", ["loky", "fork"])
def test_local_workers_exit_when_their_run_is_killed_whatever_they_are_doing(backend):
    # Found in session 11's CI: a loky worker that never got a task outlived a killed run (it
    # watched for its run's death only from its first task), blocked for good on the task queue's
    # lock when a sibling had died holding it. Every worker now watches from its start.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, backend], env=env, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        proc.stdout.readline()
        deadline = time.monotonic() + 60
        while len(live_processes_of_group(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the run and its two workers
        time.sleep(1.0)  # the workers are in their task (sleeping)
        assert len(live_processes_of_group(proc.pid)) >= 3, "the workers did not start"
        _kill_run_and_wait_for_its_workers(proc)
        assert not live_processes_of_group(proc.pid), "workers outlived their killed run"
    finally:
        _kill_group(proc.pid)


def _kill_run_and_wait_for_its_workers(proc):
    """SIGKILL the run ``proc`` alone, then give its workers 20 s to notice and exit."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while live_processes_of_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _kill_group(pgid):
    for pid in live_processes_of_group(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# Put on the path of the run only: every loky worker (and nothing else) takes 3 s to start, so the
# run can be killed while its workers are still starting, before their initializer has run.
_SLOW_LOKY_START = """
from pathlib import Path
import time
if b"popen_loky_posix" in Path("/proc/self/cmdline").read_bytes():
    time.sleep(3)
"""


def test_loky_workers_exit_when_their_run_is_killed_while_they_start(tmp_path):
    # Found in session 12 (the test above failed once in a loaded suite): a worker whose run died
    # before its initializer ran saw another parent, so it watched nothing and blocked on the
    # task queue for good. It now exits at once.
    (tmp_path / "sitecustomize.py").write_text(_SLOW_LOKY_START)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])]))
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, "loky"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        proc.stdout.readline()
        deadline = time.monotonic() + 30

        def starting_workers():
            return [pid for pid in live_processes_of_group(proc.pid)
                    if b"popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_bytes()]

        while len(starting_workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(starting_workers()) == 2, "the workers did not start"
        _kill_run_and_wait_for_its_workers(proc)  # both workers are still in their 3 s start
        assert not live_processes_of_group(proc.pid), "workers outlived their run, killed while they started"
    finally:
        _kill_group(proc.pid)
