"""End to end: synth videos → `ffmask annotate` → shards, faults, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ffmask import targets, video
from ffmask.annotate import annotate
from ffmask.errors import FFMaskError
from ffmask.faces import crop_resize
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest, ShardIndex, find_shards, validate_shard
from ffmask.synth.tree import build_synth

ALL = ("mscc", "ssim", "diff", "diff@0.1", "official", "noise")
COMPARISON = ("mscc", "ssim", "diff", "diff@0.1", "official")
SPEC = JobSpec(methods=ALL, frames=4, size=96)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=3, identities=4, frames=12, compressions=("c23",))
    return root


@pytest.fixture(scope="module")
def annotated(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = annotate("ff++", synth_root, out, SPEC, videos_per_shard=5)
    return out, report


def read_records(out: Path) -> list[dict]:
    """Every face as readers get it (the reader contract hides the storage schema)."""
    from ffmask.shards.summary import common_maps

    index = ShardIndex(out, list(common_maps(out)))
    records = []
    for i in range(len(index)):
        face = index.read(i, geometry=True)
        face["box"] = face["box"].tolist()
        records.append(face)
    return records


def test_every_video_written_and_shards_valid(annotated):
    out, report = annotated
    shards = find_shards(out)
    assert len(shards) > 1  # several tasks → several shards
    for path in shards:
        assert validate_shard(path) == []
    entries = Manifest(out / "manifest.jsonl").load()
    assert len(entries) == 4 + 16  # 4 originals + 4 manipulations x 4 fakes
    assert {e["status"] for e in entries.values()} == {"ok"}
    assert report.faces == sum(e["faces"] for e in entries.values())
    assert not list(out.glob("*.tmp"))


def test_official_maps_match_true_mask_video(annotated, synth_root):
    out, _ = annotated
    fakes = [r for r in read_records(out) if r["label"] == 1]
    assert fakes
    for r in fakes:
        method, name = r["video_id"].split("/")
        mask_video = synth_root / "manipulated_sequences" / method / "masks" / "videos" / f"{name}.mp4"
        frame = video.read_frames(mask_video, [r["frame_index"]])[r["frame_index"]]
        x0, y0, x1, y1 = r["box"]
        truth = crop_resize(frame, r["box"], 96, interpolation="nearest")
        truth = targets.official_mask(truth)
        np.testing.assert_array_equal(r["maps"]["official"].astype(bool), truth)
        assert truth.any()


def test_real_faces_have_zero_comparison_maps(annotated):
    out, _ = annotated
    reals = [r for r in read_records(out) if r["label"] == 0]
    assert len(reals) == 4 * 4
    for r in reals:
        for name in COMPARISON:
            assert not np.any(r["maps"][name]), name
        assert np.abs(r["maps"]["noise"]).mean() > 0  # noise is a property of the image itself


def test_fake_boxes_equal_their_originals_and_maps_recompute(annotated, synth_root):
    out, _ = annotated
    records = read_records(out)
    original = {(r["video_id"], r["frame_index"]): r for r in records if r["label"] == 0}
    fakes = [r for r in records if r["label"] == 1]
    for r in fakes:
        real = original[(r["original_id"], r["frame_index"])]
        assert r["box"] == real["box"]
        # the stored maps are the targets of the stored crops, independently recomputed
        np.testing.assert_array_equal(r["maps"]["mscc"].astype(bool), targets.mscc_mask(real["image"], r["image"]))
        # stored as uint8 steps of 1/255: within 1/510 (+ float16 rounding)
        np.testing.assert_allclose(r["maps"]["ssim"], targets.ssim_map(real["image"], r["image"]), atol=2.5e-3)
    # fake crops differ from their original crops much more inside the mask than outside
    inside = outside = 0.0
    for r in fakes:
        real = original[(r["original_id"], r["frame_index"])]
        d = np.abs(r["image"].astype(float) - real["image"].astype(float)).mean(axis=2)
        m = r["maps"]["official"].astype(bool)
        inside += d[m].mean()
        outside += d[~m].mean()
    assert inside > 3 * outside


def test_same_options_resume_and_different_options_refused(annotated, synth_root):
    out, _ = annotated
    before = sorted(p.name for p in find_shards(out))
    report = annotate("ff++", synth_root, out, SPEC, videos_per_shard=5)
    assert report.faces == 0 and report.tasks_done_before == report.tasks_total
    assert sorted(p.name for p in find_shards(out)) == before
    with pytest.raises(FFMaskError, match="different options"):
        annotate("ff++", synth_root, out, JobSpec(methods=("mscc",), frames=4, size=96), videos_per_shard=5)
    # a changed scalar names both values, so the user knows what to pass to resume
    with pytest.raises(FFMaskError, match=r"\(job\.size: 96, now 128\)"):
        annotate("ff++", synth_root, out, JobSpec(methods=ALL, frames=4, size=128), videos_per_shard=5)
    with pytest.raises(FFMaskError, match=r'\(shards\.image_codec: "gradient", now "png"\)'):
        annotate("ff++", synth_root, out, SPEC, videos_per_shard=5, shard_options={"image_codec": "png"})


def test_unpaired_folder_refuses_comparison_methods_and_runs_noise(synth_root, tmp_path):
    folder = synth_root / "original_sequences"
    with pytest.raises(FFMaskError, match="no originals"):
        annotate("folder", folder, tmp_path / "a", JobSpec(methods=("mscc",), frames=2, size=64))
    report = annotate("folder", folder, tmp_path / "b", JobSpec(methods=("noise",), frames=2, size=64))
    assert report.videos["ok"] == 4 and report.faces == 8
    rec = read_records(tmp_path / "b")
    assert {r["label"] for r in rec} == {-1}
    assert rec[0]["maps"]["noise"].shape == (64, 64, 3)


def test_faults_are_recorded_and_everything_else_written(synth_root, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(synth_root, root)
    fakes = root / "manipulated_sequences"
    # a truncated video: keep only its first 40% of bytes (its index is at the front)
    truncated = fakes / "Deepfakes" / "c23" / "videos" / "000_001.mp4"
    truncated.write_bytes(truncated.read_bytes()[: int(truncated.stat().st_size * 0.4)])
    # a zero-byte video
    (fakes / "FaceSwap" / "c23" / "videos" / "000_001.mp4").write_bytes(b"")
    # an original with no face: its fakes have no box either
    rng = np.random.default_rng(0)
    noface = root / "original_sequences" / "youtube" / "c23" / "videos" / "002.mp4"
    video.write_video(noface, [np.full((240, 320, 3), 90, np.uint8) + rng.integers(0, 20, (240, 320, 3), dtype=np.uint8)
                               for _ in range(12)])
    # a missing original
    (root / "original_sequences" / "youtube" / "c23" / "videos" / "001.mp4").unlink()
    # a missing masks folder
    shutil.rmtree(fakes / "NeuralTextures" / "masks")

    out = tmp_path / "out"
    report = annotate("ff++", root, out, JobSpec(methods=("mscc", "official"), frames=4, size=64),
                      videos_per_shard=5)
    entries = Manifest(out / "manifest.jsonl").load()
    reason = {k: (e["status"], e["reason"]) for k, e in entries.items()}

    assert reason["youtube/002"][0] == "skipped" and "no face" in reason["youtube/002"][1]
    assert "no face" in reason["Deepfakes/002_003"][1]
    assert reason["FaceSwap/000_001"][0] == "skipped" and "unreadable" in reason["FaceSwap/000_001"][1]
    assert reason["Face2Face/001_000"] == ("skipped", "missing original (needed by mscc)") or \
        reason["Face2Face/001_000"][1].startswith("missing original")
    assert "mask" in reason["NeuralTextures/000_001"][1]
    # truncated: either fewer frames written, or skipped as unreadable — never silent
    t = entries["Deepfakes/000_001"]
    assert (t["status"] == "ok" and t.get("frames_undecodable", 0) > 0) or "unreadable" in t["reason"]
    # everything else is written
    ok = {k for k, e in entries.items() if e["status"] == "ok"}
    assert {"youtube/000", "youtube/003", "Deepfakes/003_002", "Face2Face/000_001"} <= ok
    assert all(e["status"] == "ok" or e["reason"] for e in entries.values())
    assert report.skip_reasons
    for path in find_shards(out):
        assert validate_shard(path) == []
    # every video of the dataset scan is accounted for
    assert len(entries) == 3 + 16  # 001 is gone; its fakes remain as items with a reason


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ffmask", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kw)


_KILL_AT_APPEND = """
import os, signal, sys
from ffmask.shards import ShardWriter
n_kill, calls, append = int(sys.argv[1]), [0], ShardWriter.append
def killing_append(self, rec):
    calls[0] += 1
    if calls[0] == n_kill:
        os.kill(os.getpid(), signal.SIGKILL)
    append(self, rec)
ShardWriter.append = killing_append
sys.argv = ["ffmask", *sys.argv[2:]]
from ffmask.cli import main
main()
"""


def _cli_killed_at_append(n: int, *args):
    """Run the CLI in a child that SIGKILLs itself on its n-th shard record."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", _KILL_AT_APPEND, str(n), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigkill_mid_run_then_resume_matches_uninterrupted(synth_root, tmp_path):
    # --jobs 1: the child kills itself from its own (patched) writer, so tasks must run in it
    args = ["annotate", "ff++", str(synth_root), "--method", "mscc,noise", "--frames", "3", "--size", "64",
            "--videos-per-shard", "2", "--jobs", "1"]
    # uninterrupted reference
    ref = tmp_path / "ref"
    p = _cli(*args, "--out", str(ref))
    assert p.wait(timeout=300) == 0, p.stdout.read().decode()

    out = tmp_path / "killed"
    # Kill deterministically in the middle of writing the second shard: after the
    # first shard is committed and two records into the next one. A timed
    # SIGKILL from outside raced a fast machine and could land after the end.
    import h5py
    with h5py.File(find_shards(ref)[0]) as f:
        first = len(f["images"])
    p = _cli_killed_at_append(first + 2, *args, "--out", str(out))
    p.wait(timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stdout.read().decode()
    n_done = len(list(out.glob("shard-*.h5")))
    assert 0 < n_done < len(find_shards(ref)), "the kill must land mid-run"
    assert list(out.glob("*.tmp")), "the kill must land mid-shard"

    p = _cli(*args, "--out", str(out))
    log = p.stdout.read().decode()
    assert p.wait(timeout=300) == 0, log
    assert "Resuming" in log
    assert not list(out.glob("*.tmp"))

    def keyed(d):
        return {(r["video_id"], r["frame_index"]): r for r in read_records(d)}

    a, b = keyed(ref), keyed(out)
    assert len(read_records(out)) == len(b)  # no duplicates
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k]["image"], b[k]["image"])
        np.testing.assert_array_equal(a[k]["maps"]["mscc"], b[k]["maps"]["mscc"])


def test_cli_errors_are_one_line(synth_root, tmp_path):
    p = _cli("annotate", "ff++", str(synth_root), "--method", "nope", "--out", str(tmp_path / "x"))
    text = p.stdout.read().decode()
    assert p.wait() == 2
    assert "Traceback" not in text and "nope" in text
    for bad in (["--detector", "foo"], ["--size", "4"], ["--scale", "0"]):
        p = _cli("annotate", "ff++", str(synth_root), *bad, "--out", str(tmp_path / "z"))
        text = p.stdout.read().decode()
        assert p.wait() == 2, text
        assert "Traceback" not in text and bad[0] in text
    p = _cli("annotate", "ff++", str(tmp_path / "missing"), "--out", str(tmp_path / "y"))
    text = p.stdout.read().decode()
    assert p.wait() != 0 and "Traceback" not in text


def test_landmark_methods_get_the_face_landmarks_in_crop_pixels(synth_root, tmp_path):
    """A method registered with landmarks=True receives the detector's 68
    points mapped into the crop, and the original's crop it is compared with."""
    from ffmask.faces import points_to_crop
    from ffmask.targets import registry

    calls = []

    def probe(real, fake, landmarks=None):
        calls.append((real.copy(), fake.copy(), landmarks))
        return np.zeros(real.shape[:2], bool)

    targets.register_method("lmprobe", probe, kind="mask", landmarks=True)
    try:
        out = tmp_path / "lm"
        annotate("ff++", synth_root, out, JobSpec(methods=("lmprobe", "mscc"), frames=2, size=96),
                 dataset_options={"manipulations": ["Deepfakes"]})
    finally:
        registry._SPECS.pop("lmprobe")
        targets.METHODS.pop("lmprobe")
    fakes, reals = {}, {}
    for face in read_records(out):
        key = (face["video_id"], face["frame_index"])
        row = (face["image"], np.asarray(face["box"]), face["landmarks"], face["original_id"])
        (fakes if face["label"] == 1 else reals)[key] = row
    assert len(calls) == len(fakes) > 0  # once per fake face, never for the originals
    for real, fake, lms in calls:
        assert lms is not None and lms.shape == (68, 2) and lms.dtype == np.float32
        vid, frame = next(k for k, row in fakes.items() if np.array_equal(row[0], fake))
        _, box, frame_lms, original_id = fakes[(vid, frame)]
        np.testing.assert_allclose(lms, points_to_crop(frame_lms, box, 96), atol=1e-4)
        assert ((lms > -5) & (lms < 101)).all()  # the face lies in its crop
        original_img = reals[(original_id, frame)][0]
        np.testing.assert_array_equal(real, original_img)
