"""Every dataset through `ffmask annotate <dataset>` on tiny real trees.

The trees are made here: PyAV videos of real faces (a miniature FF++ from
``ffmask.synth``, rearranged into each dataset's layout, and a two-person
video), PNG face sequences packed in tar.gz archives. Each dataset's bad
cases (missing list file, unknown label, a listed video that is absent, a
directory named like a video) must end as a reported problem, never a crash
and never silence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from typer.testing import CliRunner

from ffmask import targets, video
from ffmask.cli import app
from ffmask.faces import get_detector
from _shards_read import read_faces
from ffmask.shards import Manifest
from ffmask.synth.portraits import load_portrait
from ffmask.synth.tree import build_synth
from tests._dataset_trees import write_tar

SIZE = 64
pytestmark = pytest.mark.slow  # each test runs the CLI on real videos


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ff"
    build_synth(root, seed=5, identities=2, frames=6, compressions=("c23",), manipulations=("Deepfakes",))
    return root


def original(synth: Path, vid: str) -> Path:
    return synth / f"original_sequences/youtube/c23/videos/{vid}.mp4"


def fake(synth: Path, name: str) -> Path:
    return synth / f"manipulated_sequences/Deepfakes/c23/videos/{name}.mp4"


def place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def ffmask_process(*args) -> subprocess.CompletedProcess:
    """The installed entry point in a fresh process: how a user meets an error."""
    return subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def annotate(dataset: str, root: Path, out: Path, *args) -> tuple[dict, list[dict], str]:
    """Run ``ffmask annotate`` (in this process: detectors load once for all tests).

    Returns (manifest entries by video_id, shard records, console output with
    its line wrapping undone).
    """
    argv = ["annotate", dataset, root, "--out", out, "--frames", 2, "--size", SIZE, *args]
    result = CliRunner().invoke(app, [str(a) for a in argv])
    assert result.exit_code == 0, (result.output, result.exception)
    return Manifest(out / "manifest.jsonl").load(), read_records(out), " ".join(result.output.split())


def read_records(out: Path) -> list[dict]:
    return read_faces(out, validate=False)


# -- celeb-df ------------------------------------------------------------------


@pytest.fixture(scope="module")
def celebdf(synth, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celebdf") / "Celeb-DF-v2"
    place(original(synth, "000"), root / "Celeb-real/id0_0000.mp4")
    place(original(synth, "001"), root / "Celeb-real/id1_0000.mp4")
    place(original(synth, "001"), root / "YouTube-real/00000.mp4")
    place(fake(synth, "000_001"), root / "Celeb-synthesis/id0_id1_0000.mp4")
    place(fake(synth, "001_000"), root / "Celeb-synthesis/id1_id0_0000.mp4")
    (root / "Celeb-real/id7_0000.mp4").mkdir()  # a directory named like a video
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n"
        "0 Celeb-synthesis/id1_id0_0000.mp4\n"
        "7 Celeb-real/id1_0000.mp4\n"          # unknown label: still a test video
        "0 Celeb-synthesis/id5_id6_0009.mp4\n")  # listed, absent
    return root


def test_celebdf_train_split_never_holds_a_test_video(celebdf, tmp_path):
    entries, records, output = annotate("celeb-df", celebdf, tmp_path / "train", "--split", "train",
                                        "--method", "mscc")
    listed = {line.split()[1].rsplit(".", 1)[0] for line in
              (celebdf / "List_of_testing_videos.txt").read_text().splitlines()}
    assert set(entries) == {"Celeb-real/id0_0000", "Celeb-synthesis/id0_id1_0000"}
    assert {e["status"] for e in entries.values()} == {"ok"}
    assert records and not {r["video_id"] for r in records} & listed
    assert {r["split"] for r in records} == {"train"}
    assert "Celeb-real/id7_0000.mp4: a directory named like a video" in output
    assert "Celeb-synthesis/id5_id6_0009: listed in List_of_testing_videos.txt but the video is missing" in output
    assert "Celeb-real/id1_0000: List_of_testing_videos.txt line 3: unknown label '7'" in output


def test_dataset_problems_are_kept_beside_the_shards_and_shown_by_info(celebdf, tmp_path):
    out = tmp_path / "train"
    annotate("celeb-df", celebdf, out, "--split", "train", "--method", "mscc")
    rows = json.loads((out / "dataset_problems.json").read_text())
    where = {r["where"]: r["reason"] for r in rows}
    assert where["Celeb-real/id7_0000.mp4"].startswith("a directory named like a video")
    assert "listed in List_of_testing_videos.txt but the video is missing" in where["Celeb-synthesis/id5_id6_0009"]
    result = CliRunner().invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"dataset problems: {len(rows)} thing(s)" in text
    assert "a directory named like a video" in text
    # a run over a clean tree records none, and --overwrite never keeps an old list
    (out / "dataset_problems.json").write_text("[]")
    result = CliRunner().invoke(app, ["info", str(out)])
    assert "dataset problems" not in result.output


def test_celebdf_test_split_pairs_fakes_with_their_originals(celebdf, tmp_path):
    entries, records, _ = annotate("celeb-df", celebdf, tmp_path / "test", "--split", "test", "--method", "mscc")
    assert set(entries) == {"Celeb-real/id1_0000", "YouTube-real/00000", "Celeb-synthesis/id1_id0_0000"}
    assert all(e["status"] == "ok" and e["faces_seen"] == 1 for e in entries.values())
    reals = {(r["video_id"], r["frame_index"]): r for r in records if r["label"] == 0}
    fakes = [r for r in records if r["label"] == 1]
    assert fakes and {r["original_id"] for r in fakes} == {"Celeb-real/id1_0000"}
    for r in fakes:
        real = reals[(r["original_id"], r["frame_index"])]
        assert r["box"] == real["box"]  # cropped with its original's box
        np.testing.assert_array_equal(r["maps"]["mscc"].astype(bool), targets.mscc_mask(real["image"], r["image"]))
        assert r["maps"]["mscc"].any()  # a real face swap, not a copy
    assert not any(r["maps"]["mscc"].any() for r in reals.values())


def test_celebdf_without_its_list_file(celebdf, tmp_path):
    root = tmp_path / "nolist"
    shutil.copytree(celebdf, root)
    (root / "List_of_testing_videos.txt").unlink()
    proc = ffmask_process("annotate", "celeb-df", root, "--out", tmp_path / "a", "--split", "train")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "split 'train' requested but" in proc.stderr and "List_of_testing_videos.txt is missing" in proc.stderr
    assert not (tmp_path / "a").exists()  # refused before anything was written
    entries, _, output = annotate("celeb-df", root, tmp_path / "b", "--method", "noise", "--limit", 1,
                                  "--detector", "none")
    assert "dataset problem: List_of_testing_videos.txt: missing: train/test splits unknown" in output
    assert len(entries) == 1


# -- dfdc: pairing through metadata.json, the test set, several faces -----------


def two_people(grow: float) -> np.ndarray:
    """640x400: A (obama) fixed on the left; B (biden) on the right, its face
    growing from smaller than A's to larger (scale 0.6 -> 0.9)."""
    a = cv2.resize(load_portrait("obama").image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    b = cv2.resize(load_portrait("biden").image, None, fx=grow, fy=grow, interpolation=cv2.INTER_AREA)
    frame = np.full((400, 640, 3), 90, np.uint8)
    frame[: a.shape[0], : a.shape[1]] = a
    h, w = min(b.shape[0], 400), min(b.shape[1], 340)
    frame[:h, 300: 300 + w] = b[:h, :w]
    return frame


@pytest.fixture(scope="module")
def dfdc(synth, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dfdc") / "dfdc"
    part = root / "dfdc_train_part_0"
    place(original(synth, "000"), part / "realaaa.mp4")
    place(fake(synth, "000_001"), part / "fakebbb.mp4")
    place(original(synth, "001"), part / "oddlabel.mp4")
    place(original(synth, "001"), part / "unlisted.mp4")
    frames = [two_people(g) for g in np.linspace(0.6, 0.9, 5)]
    video.write_video(part / "crowd.mp4", frames)
    # the fake changes A's face only: the tracked person
    forged = [f.copy() for f in frames]
    for f in forged:
        f[60:150, 150:245] = 255 - f[60:150, 150:245]
    video.write_video(part / "crowdfake.mp4", forged)
    (part / "metadata.json").write_text(json.dumps({
        "realaaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakebbb.mp4": {"label": "FAKE", "split": "train", "original": "realaaa.mp4"},
        "crowd.mp4": {"label": "REAL", "split": "train", "original": None},
        "crowdfake.mp4": {"label": "FAKE", "split": "train", "original": "crowd.mp4"},
        "gone.mp4": {"label": "FAKE", "split": "train", "original": "realaaa.mp4"},
        "oddlabel.mp4": {"label": "MAYBE", "split": "train", "original": None},
    }))
    place(original(synth, "001"), root / "dfdc_train_part_1/nometa.mp4")
    test = root / "test"
    place(fake(synth, "001_000"), test / "t1.mp4")
    place(original(synth, "000"), test / "t2.mp4")
    place(original(synth, "000"), test / "t3.mp4")
    (test / "labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\nt3.mp4,2\nt4.mp4,1\n")
    return root


def test_dfdc_pairs_through_metadata_tracks_one_face_and_reports_problems(dfdc, tmp_path):
    entries, records, output = annotate("dfdc", dfdc, tmp_path / "out", "--method", "mscc", "--frames", 3)
    assert entries["dfdc_train_part_0/realaaa"]["status"] == "ok"
    assert entries["dfdc_train_part_0/fakebbb"]["status"] == "ok"
    assert entries["test/t2"]["status"] == "ok" and entries["test/t1"]["reason"].startswith("missing original")
    by_video = {}
    for r in records:
        by_video.setdefault(r["video_id"], []).append(r)
    assert {r["original_id"] for r in by_video["dfdc_train_part_0/fakebbb"]} == {"dfdc_train_part_0/realaaa"}
    assert {r["split"] for r in by_video["test/t2"]} == {"test"}

    # Two people; B's face outgrows A's after the first frame, yet every crop is A's.
    assert entries["dfdc_train_part_0/crowd"]["faces_seen"] == 2
    assert entries["dfdc_train_part_0/realaaa"]["faces_seen"] == 1
    crowd = by_video["dfdc_train_part_0/crowd"]
    assert [r["frame_index"] for r in crowd] == [0, 2, 4]
    assert all(r["box"][2] <= 330 for r in crowd), [r["box"] for r in crowd]  # A lies left of x=300+
    last = video.read_frames(dfdc / "dfdc_train_part_0/crowd.mp4", [4])[4]
    biggest = max(get_detector("dlib").detect(last), key=lambda f: f.area)
    assert biggest.box[0] > 400  # the largest face there is B: picking per frame would jump to B
    forged = {r["frame_index"]: r for r in by_video["dfdc_train_part_0/crowdfake"]}
    for r in crowd:
        assert forged[r["frame_index"]]["box"] == r["box"]
        assert forged[r["frame_index"]]["maps"]["mscc"].mean() > 0.05  # A's changed face is found

    assert "dfdc_train_part_0/gone: listed in metadata.json but gone.mp4 is missing; skipped" in output
    assert "dfdc_train_part_0/oddlabel: metadata label must be REAL or FAKE" in output
    assert "dfdc_train_part_0/unlisted: not listed in metadata.json" in output
    assert "dfdc_train_part_1/: no metadata.json" in output
    assert "test/t3: test/labels.csv row 3: unknown label ['2']" in output
    assert "test/t4: listed in test/labels.csv but test/t4.mp4 is missing" in output
    for skipped in ("gone", "oddlabel", "unlisted"):
        assert f"dfdc_train_part_0/{skipped}" not in entries


# -- dfdcp ---------------------------------------------------------------------


def test_dfdcp(synth, tmp_path):
    root = tmp_path / "dfdcp"
    place(original(synth, "000"), root / "original_videos/1/a.mp4")
    place(fake(synth, "000_001"), root / "method_A/1/x/b.mp4")
    place(fake(synth, "001_000"), root / "method_B/2/c.mp4")
    place(fake(synth, "001_000"), root / "method_B/3/d.mp4")
    (root / "dataset.json").write_text(json.dumps({
        "original_videos/1/a.mp4": {"label": "real", "set": "train"},
        "method_A/1/x/b.mp4": {"label": "fake", "set": "train"},
        "method_B/2/c.mp4": {"label": "fake", "set": "test"},
        "method_B/3/d.mp4": {"label": "synthetic", "set": "train"},
        "method_A/9/gone.mp4": {"label": "fake", "set": "train"},
    }))
    entries, records, output = annotate("dfdcp", root, tmp_path / "out", "--split", "train", "--detector", "none")
    assert set(entries) == {"original_videos/1/a", "method_A/1/x/b"}
    assert {(r["video_id"], r["label"], r["split"]) for r in records} == {
        ("original_videos/1/a", 0, "train"), ("method_A/1/x/b", 1, "train")}
    assert all(r["maps"]["noise"].shape == (SIZE, SIZE, 3) for r in records)
    assert "method_B/3/d: dataset.json: needs {\"label\": \"real\" or \"fake\"}, got label 'synthetic'" in output
    assert "method_A/9/gone: listed in dataset.json but method_A/9/gone.mp4 is missing" in output

    (root / "dataset.json").unlink()
    proc = ffmask_process("annotate", "dfdcp", root, "--out", tmp_path / "x")
    assert proc.returncode == 2 and "dataset.json not found" in proc.stderr and "Traceback" not in proc.stderr


# -- wdf: face sequences straight from tar.gz ----------------------------------


def face_frames(name: str, n: int) -> list[np.ndarray]:
    """n distinguishable 96x80 face crops (brightness steps with the frame number)."""
    p = load_portrait(name)
    x0, y0, x1, y1 = (int(v) for v in p.box)
    crop = p.image[max(0, y0 - 20): y1 + 20, max(0, x0 - 10): x1 + 10]
    crop = cv2.resize(crop, (80, 96), interpolation=cv2.INTER_AREA)
    return [np.clip(crop.astype(int) - 60 + 10 * i, 0, 255).astype(np.uint8) for i in range(n)]


def write_archive(path: Path, sequences: dict[str, list[np.ndarray]]) -> None:
    write_tar(path, {f"{folder}/{i}.png": cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
                     for folder, frames in sequences.items() for i, frame in enumerate(frames)})


def test_wdf_reads_sequences_from_the_archives(tmp_path):
    root = tmp_path / "wdf"
    seqs = {("real_train", "1", "7"): face_frames("obama", 12), ("real_train", "1", "8"): face_frames("biden", 3),
            ("real_train", "2", "7"): face_frames("astronaut", 4), ("fake_test", "1", "7"): face_frames("obama2", 3)}
    write_archive(root / "real_train/1.tar.gz", {"1/7": seqs["real_train", "1", "7"], "1/8": seqs["real_train", "1", "8"]})
    write_archive(root / "real_train/2.tar.gz", {"2/7": seqs["real_train", "2", "7"]})
    write_archive(root / "fake_test/1.tar.gz", {"1/7": seqs["fake_test", "1", "7"]})
    (root / "fake_test/2.tar.gz").write_bytes(b"not an archive at all")
    entries, records, output = annotate("wdf", root, tmp_path / "out", "--frames", 3)
    assert set(entries) == {"real_train/1/7", "real_train/1/8", "real_train/2/7", "fake_test/1/7"}
    assert {e["status"] for e in entries.values()} == {"ok"}
    assert not list(root.rglob("*.png"))  # nothing was extracted
    for r in records:
        split_dir, archive, seq = r["video_id"].split("/")
        truth = seqs[split_dir, archive, seq][r["frame_index"]]
        # no detection: the whole frame, resized to --size
        expected = cv2.resize(truth, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        assert np.abs(r["image"].astype(int) - expected).max() <= 1
        assert r["box"] == [0, 0, 80, 96]
        assert r["label"] == (split_dir == "fake_test")
    # frames numbered 0..11 are read in number order (11 is not "9" of a text sort)
    assert sorted(r["frame_index"] for r in records if r["video_id"] == "real_train/1/7") == [0, 6, 11]
    assert "fake_test/2.tar.gz:" in output and "cannot be read as a tar archive" in output
    assert "fake_train: folder missing" in output and "real_test: folder missing" in output


# -- folder: videos, folders of images, labels.csv --------------------------------


def test_folder_videos_image_folders_and_labels(synth, tmp_path):
    root = tmp_path / "mine"
    place(original(synth, "000"), root / "clips/a.mp4")
    place(fake(synth, "000_001"), root / "b.mp4")
    frames = face_frames("obama3", 4)
    (root / "stills/s1").mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(root / f"stills/s1/frame_{i}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (root / "017.mp4").mkdir()
    (root / "labels.csv").write_text("path,label\nclips/a.mp4,real\nb.mp4,perhaps\nstills/s1,fake\n")
    entries, records, output = annotate("folder", root, tmp_path / "out", "--detector", "none", "--frames", 4)
    assert set(entries) == {"clips/a", "stills/s1"}
    labels = {r["video_id"]: r["label"] for r in records}
    assert labels == {"clips/a": 0, "stills/s1": 1}
    assert sorted(r["frame_index"] for r in records if r["video_id"] == "stills/s1") == [0, 1, 2, 3]
    assert "017.mp4/: a directory named like a video" in output
    assert "b.mp4: labels.csv: label must be 0/1 or real/fake, got 'perhaps'; skipped" in output
