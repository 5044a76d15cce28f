"""Reliability audit (session 9): bad input a user of FF++/Celeb-DF/DFDC meets, through
the real command line. Each case used to end in a traceback or in silently wrong data;
now it is one ``Error:`` line (exit 2) or a recorded problem.

Real files only: videos copied from a small synth FF++ tree, real HDF5 shards, real
subprocess runs of ``python -m ffmask``. The audit's table of everything tried is
docs/reliability_audit.md.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ffmask.annotate import annotate
from ffmask.datasets import get_dataset
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest

ORIG = "original_sequences/youtube/c23/videos"
FAKES = "manipulated_sequences/Deepfakes/c23/videos"


def cli(*args, limit_file_size=None, timeout=240) -> tuple[int, str]:
    """Run ``python -m ffmask ARGS``; (exit code, stdout+stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", OMP_NUM_THREADS="1")

    def limit():  # a full disk, as the file size limit of the child alone
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=timeout, preexec_fn=limit if limit_file_size else None)
    return p.returncode, p.stdout + p.stderr


def one_line_error(rc: int, text: str, *needles: str) -> str:
    assert rc == 2, text
    assert "Traceback" not in text, text
    (line,) = [x for x in text.splitlines() if x.startswith("Error:")]
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture(scope="module")
def shards(small_ff_root, tmp_path_factory):
    """Shards of the small synth tree (mscc, official; 2 frames, 64 px), one per original."""
    out = tmp_path_factory.mktemp("shards") / "run"
    annotate("ff++", small_ff_root, out, JobSpec(methods=("mscc", "official"), frames=2, size=64),
             videos_per_shard=2, jobs=1)
    return out


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a directory")
    return path


# -- --out that cannot be a directory: train, evaluate, bench, export --------------------

TRAIN = ["--backbone", "tf_efficientnet_lite0", "--img-size", "32", "--iters", "1", "--batch-size", "2",
         "--workers", "0", "--device", "cpu"]


# (export already refused an --out that is a file; only under a file was a traceback)
@pytest.mark.parametrize("command, where", [
    *((c, w) for c in ("train evaluator", "train focus", "evaluate", "bench") for w in ("is a file", "under a file")),
    ("export", "under a file"),
])
def test_out_that_cannot_be_a_directory_is_one_line(command, where, shards, small_ff_root, a_file):
    out = a_file if where == "is a file" else a_file / "sub"
    args = {
        "train evaluator": ["train", "evaluator", "--map", "mscc", "--train", shards, "--out", out, *TRAIN],
        "train focus": ["train", "focus", shards, "--out", out, *TRAIN],
        # the report directory is checked before the checkpoint is even read
        "evaluate": ["evaluate", a_file.parent / "no-checkpoint", "--shards", shards, "--out", out],
        "bench": ["bench", "masks", small_ff_root, "--out", out, "--method", "mscc"],
        "export": ["export", "deepfakebench", shards, "--out", out],
    }[command]
    rc, text = cli(*args)
    line = one_line_error(rc, text, str(out))
    assert ("not a directory" in line) if where == "is a file" else ("is a regular file" in line)
    assert a_file.read_text() == "not a directory"


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_tmp(shards, tmp_path):
    out = tmp_path / "ckpt"
    # lite0's weights are ~14 MB: a 2 MB file size limit fails the first checkpoint write
    rc, text = cli("train", "evaluator", "--map", "mscc", "--train", shards, "--out", out, *TRAIN,
                   limit_file_size=2_000_000)
    line = one_line_error(rc, text, "cannot write", str(out), "file too large")
    assert ".safetensors" in line
    assert not list(out.glob("*.tmp")), sorted(p.name for p in out.iterdir())


# -- export: the annotate run behind the shards is incomplete -------------------------------

def test_export_says_which_shards_its_manifest_names_but_are_gone(shards, tmp_path):
    damaged = tmp_path / "run"
    shutil.copytree(shards, damaged)
    entries = Manifest(damaged / "manifest.jsonl").load()
    gone = sorted({e["shard"] for e in entries.values()})[-1]
    lost = sorted(v for v, e in entries.items() if e["shard"] == gone)
    (damaged / gone).unlink()
    rc, text = cli("export", "deepfakebench", damaged, "--out", tmp_path / "dfb")
    assert rc == 0, text
    assert f"the manifest names 1 shard(s) that are missing ({gone})" in " ".join(text.split()), text
    listed = json.loads((tmp_path / "dfb/dataset_json/FaceForensics++.json").read_text())
    exported = {video for key in listed["FaceForensics++"].values() for split in key.values()
                for comp in split.values() for video in comp}
    assert exported and not {v.split("/")[-1] for v in lost} & exported


def test_preview_refuses_a_name_that_is_not_png(shards, tmp_path):
    rc, text = cli("preview", shards, "--out", tmp_path / "sheet.jpg")
    one_line_error(rc, text, "sheet.jpg", ".png")
    assert not (tmp_path / "sheet.jpg").exists()
    rc, text = cli("preview", shards, "--out", tmp_path / "sheet.png")
    assert rc == 0 and (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG", text


def test_annotate_refuses_frames_with_every(small_ff_root, tmp_path):
    out = tmp_path / "out"
    rc, text = cli("annotate", "ff++", small_ff_root, "--out", out, "--frames", "2", "--every", "3",
                   "--size", "64", "--jobs", "1")
    one_line_error(rc, text, "--frames", "--every", "not both")
    assert not out.exists()


# -- datasets -------------------------------------------------------------------------------

def _dfdc(root: Path, ff: Path) -> Path:
    """A DFDC training part (one real, two fakes) and a test folder, from the synth videos."""
    part = root / "dfdc_train_part_0"
    part.mkdir(parents=True)
    shutil.copy(ff / ORIG / "000.mp4", part / "real.mp4")
    shutil.copy(ff / FAKES / "000_001.mp4", part / "fake.mp4")
    shutil.copy(ff / FAKES / "001_000.mp4", part / "odd.mp4")
    (part / "metadata.json").write_text(json.dumps({
        "real.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake.mp4": {"label": "FAKE", "split": "train", "original": "real.mp4"},
        # a hand-edited or converted metadata: a list where a file name goes
        "odd.mp4": {"label": "FAKE", "split": "train", "original": ["real.mp4"]},
    }))
    test = root / "test" / "videos"
    test.mkdir(parents=True)
    shutil.copy(ff / ORIG / "001.mp4", test / "a.mp4")
    shutil.copy(ff / FAKES / "001_000.mp4", test / "b.mp4")
    # a.mp4 listed twice alike (once is enough); b.mp4 listed as fake, then as real
    (root / "test" / "labels.csv").write_text("filename,label\na.mp4,0\nb.mp4,1\na.mp4,0\nb.mp4,0\n")
    return root


def test_dfdc_odd_original_and_a_file_listed_with_two_labels(small_ff_root, tmp_path):
    root = _dfdc(tmp_path / "dfdc", small_ff_root)
    out = tmp_path / "out"
    rc, text = cli("annotate", "dfdc", root, "--out", out, "--method", "noise", "--frames", "1", "--size", "64",
                   "--jobs", "1")
    assert rc == 0 and "Traceback" not in text, text
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    ids = [e["video_id"] for e in lines]
    assert len(ids) == len(set(ids)), ids  # each video once
    by_id = {e["video_id"]: e for e in lines}
    assert "test/b" not in by_id and by_id["test/a"]["label"] == 0
    assert by_id["dfdc_train_part_0/odd"]["status"] == "ok"  # kept, unpaired
    problems = {p["where"]: p["reason"] for p in json.loads((out / "dataset_problems.json").read_text())}
    assert "listed again with another label" in problems["test/b"]
    assert "original ['real.mp4'] not found" in problems["dfdc_train_part_0/odd"]


def _folder(root: Path, ff: Path) -> Path:
    root.mkdir(parents=True)
    for name, src in (("a.mp4", ORIG + "/000.mp4"), ("b.mp4", ORIG + "/001.mp4"), ("c.mp4", FAKES + "/000_001.mp4")):
        shutil.copy(ff / src, root / name)
    return root


@pytest.mark.parametrize("name, text", [
    ("labels.csv", "path,label\na.mp4,real\nb.mp4,1\nb.mp4,0\nc,fake\nc.mp4,fake\n"),
    ("labels.csv", "a.mp4,0\nb,1\nb.mp4,0\nc.mp4,1\n"),  # with and without the extension
    ("labels.json", '{"a.mp4": 0, "b.mp4": "fake", "b.mp4": "real", "c": 1}'),  # JSON keeps only the last
])
def test_folder_labels_giving_a_video_two_labels_skip_it(small_ff_root, tmp_path, name, text):
    root = _folder(tmp_path / "videos", small_ff_root)
    (root / name).write_text(text)
    scan = get_dataset("folder", root, labels=root / name)
    assert {i.video_id: i.label for i in scan.items} == {"a": 0, "c": 1}
    (problem,) = [p for p in scan.problems if p.where == "b.mp4"]
    assert "more than one label" in problem.reason


def test_folder_labels_that_are_not_utf8_are_one_line(small_ff_root, tmp_path):
    root = _folder(tmp_path / "videos", small_ff_root)
    (root / "labels.csv").write_bytes("vidéo.mp4,1\na.mp4,0\n".encode("cp1252"))  # a spreadsheet's export
    out = tmp_path / "out"
    rc, text = cli("annotate", "folder", root, "--out", out, "--method", "noise", "--frames", "1", "--size", "64",
                   "--jobs", "1")
    one_line_error(rc, text, "labels.csv", "UTF-8")
    assert not out.exists()


def test_celebdf_two_files_with_one_video_id_are_annotated_once(small_ff_root, tmp_path):
    root = tmp_path / "celeb"
    for d in ("Celeb-real", "Celeb-synthesis", "YouTube-real"):
        (root / d).mkdir(parents=True)
    shutil.copy(small_ff_root / ORIG / "000.mp4", root / "Celeb-real/id0_0000.mp4")
    shutil.copy(small_ff_root / ORIG / "001.mp4", root / "Celeb-real/id0_0000.avi")  # a re-encode left beside it
    shutil.copy(small_ff_root / FAKES / "000_001.mp4", root / "Celeb-synthesis/id0_id1_0000.mp4")
    scan = get_dataset("celeb-df", root)
    ids = [i.video_id for i in scan.items]
    assert sorted(ids) == ["Celeb-real/id0_0000", "Celeb-synthesis/id0_id1_0000"]
    assert any(p.where == "Celeb-real/id0_0000" and "a second video with this id" in p.reason for p in scan.problems)


def test_an_empty_image_in_a_frame_folder_is_an_undecodable_frame_not_a_dead_run(small_ff_root, tmp_path):
    import av
    import cv2

    root = tmp_path / "videos"
    frames = root / "clip"
    frames.mkdir(parents=True)
    with av.open(str(small_ff_root / ORIG / "000.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            cv2.imwrite(str(frames / f"{i:03d}.png"), frame.to_ndarray(format="bgr24"))
    (frames / "001.png").write_bytes(b"")  # a copy interrupted mid-way
    shutil.copy(small_ff_root / ORIG / "001.mp4", root / "other.mp4")
    out = tmp_path / "out"
    rc, text = cli("annotate", "folder", root, "--out", out, "--method", "noise", "--frames", "6", "--size", "64",
                   "--jobs", "1")
    assert rc == 0 and "Traceback" not in text, text
    entries = Manifest(out / "manifest.jsonl").load()
    assert entries["clip"]["status"] == "ok" and entries["clip"]["frames_undecodable"] == 1, entries["clip"]
    assert entries["other"]["status"] == "ok"


@pytest.mark.parametrize("bad, flag", [(["--fps", "inf"], "--fps"), (["--size", "64000x480"], "--size")])
def test_synth_refuses_an_infinite_fps_and_a_giant_frame(tmp_path, bad, flag):
    out = tmp_path / "tree"
    rc, text = cli("synth", out, "--identities", "2", "--frames", "1", *bad)
    assert rc == 2 and "Traceback" not in text and flag in text, text
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> Path:
    """A 1-step efb4-fpn (lite0, 32 px) checkpoint directory trained and validated on ``shards``."""
    out = tmp_path_factory.mktemp("trained") / "ckpt"
    rc, text = cli("train", "evaluator", "--map", "mscc", "--train", shards, "--val", shards, "--out", out, *TRAIN)
    assert rc == 0 and (out / "best.json").is_file(), text
    return out


def test_a_fresh_run_beside_another_runs_best_checkpoint_is_refused(shards, trained, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(trained, out)
    for name in ("last.json", "last.safetensors", "last.optim.safetensors"):  # "start again", keeping best.*
        (out / name).unlink()
    best = (out / "best.json").read_text()
    # another run without validation would never replace best.json, and `ffmask evaluate DIR` prefers best
    rc, text = cli("train", "evaluator", "--map", "official", "--train", shards, "--out", out, *TRAIN)
    one_line_error(rc, text, "best.json of a different run", "map")
    assert (out / "best.json").read_text() == best and not (out / "last.json").exists()


def test_ffpp_method_folder_with_an_unknown_name_is_a_problem(small_ff_root, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(small_ff_root, root)
    # a misspelt copy of a method (FF++'s names are case-sensitive here) used to vanish from the run
    (root / "manipulated_sequences/Deepfakes").rename(root / "manipulated_sequences/deepfakes")
    scan = get_dataset("ff++", root)
    assert all(i.label == 0 for i in scan.items)
    (problem,) = [p for p in scan.problems if p.where == "manipulated_sequences/deepfakes"]
    assert "not a manipulation ffmask knows" in problem.reason


def test_a_fake_paired_with_the_wrong_original_is_skipped_not_compared(small_ff_root, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(small_ff_root, root)
    # 000_001 (made from 000) replaced by the fake made from 001: a misnamed file of a mixed download
    shutil.copy(root / FAKES / "001_000.mp4", root / FAKES / "000_001.mp4")
    out = tmp_path / "out"
    rc, text = cli("annotate", "ff++", root, "--out", out, "--method", "mscc", "--frames", "2", "--size", "64",
                   "--jobs", "1")
    assert rc == 0, text
    entries = Manifest(out / "manifest.jsonl").load()
    e = entries["Deepfakes/000_001"]
    assert e["status"] == "skipped" and "does not show its original's picture" in e["reason"], e
    assert entries["Deepfakes/001_000"]["status"] == "ok"  # the true pair still is compared


def test_bench_blames_a_broken_ground_truth_file_not_the_method(small_ff_root, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(small_ff_root, root)
    (root / "ground_truth.json").write_text('{"000_001": ')  # a copy cut short
    rc, text = cli("bench", "masks", root, "--out", tmp_path / "bench", "--method", "mscc", "--frames", "1")
    line = one_line_error(rc, text, "not valid JSON", "ground_truth.json")
    assert "--method" not in line


def test_dfdcp_video_that_dataset_json_does_not_name_is_a_problem(small_ff_root, tmp_path):
    root = tmp_path / "dfdcp"
    for folder in ("original_videos/1", "method_A/1/2", "method_B/1"):
        (root / folder).mkdir(parents=True)
    shutil.copy(small_ff_root / ORIG / "000.mp4", root / "original_videos/1/r.mp4")
    shutil.copy(small_ff_root / FAKES / "000_001.mp4", root / "method_A/1/2/f.mp4")
    shutil.copy(small_ff_root / FAKES / "001_000.mp4", root / "method_B/1/g.mp4")  # a newer download's file
    (root / "dataset.json").write_text(json.dumps({
        "original_videos/1/r.mp4": {"label": "real", "set": "train"},
        "method_A/1/2/f.mp4": {"label": "fake", "set": "test"}}))
    scan = get_dataset("dfdcp", root)
    assert sorted(i.video_id for i in scan.items) == ["method_A/1/2/f", "original_videos/1/r"]
    assert [(p.where, p.reason) for p in scan.problems] == [("method_B/1/g", "not listed in dataset.json; skipped")]


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_a_device_ffmask_does_not_run_on_is_one_line(shards, tmp_path, device):
    out = tmp_path / "ckpt"
    args = [a if a != "cpu" else device for a in TRAIN]
    rc, text = cli("train", "evaluator", "--map", "mscc", "--train", shards, "--out", out, *args)
    one_line_error(rc, text, repr(device), "cpu or cuda")


def test_export_skips_a_video_whose_name_holds_frames_and_exports_the_rest(tmp_path):
    import numpy as np

    from ffmask.shards import FaceRecord, ShardWriter

    # DFDC names are ten random letters: across its ~119k videos one may well hold "frames"
    path = tmp_path / "dfdc.h5"
    rng = np.random.default_rng(0)
    with ShardWriter(path, size=16, maps={"hull": "mask"}, config={"dataset": "test"}) as w:
        for video_id, label in (("dfdc_train_part_0/aaqaifqrwn", 1), ("dfdc_train_part_0/qframesxyz", 0),
                                ("dfdc_train_part_0/vpmyeepbep", 0)):
            w.append(FaceRecord(image=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                                maps={"hull": rng.random((16, 16)) > 0.5}, label=label, video_id=video_id,
                                original_id="", manipulation="DFDC", compression="", split="train",
                                frame_index=0, box=np.array([0, 0, 32, 32])))
    out = tmp_path / "dfb"
    rc, text = cli("export", "deepfakebench", path, "--out", out, "--dataset", "dfdc")
    assert rc == 0, text
    assert "skipped 1 faces: its name contains 'frames'" in " ".join(text.split()), text
    listed = json.loads((out / "dataset_json/DFDC.json").read_text())["DFDC"]
    videos = {v for key in listed.values() for split in key.values() for v in split}
    assert videos == {"aaqaifqrwn", "vpmyeepbep"}


def test_folder_does_not_annotate_what_ffmask_wrote_inside_root(small_ff_root, tmp_path):
    root = _folder(tmp_path / "videos", small_ff_root)
    out = root / "shards"  # --out inside ROOT, with a contact sheet of faces written beside the shards
    args = ["annotate", "folder", root, "--out", out, "--method", "noise", "--frames", "1", "--size", "64",
            "--jobs", "1"]
    assert cli(*args)[0] == 0
    assert cli("preview", out, "--out", out / "preview.png")[0] == 0
    rc, text = cli(*args)
    assert rc == 0, text
    assert sorted(Manifest(out / "manifest.jsonl").load()) == ["a", "b", "c"]
    problems = json.loads((out / "dataset_problems.json").read_text())
    assert [p["where"] for p in problems] == ["shards/"] and "ffmask output" in problems[0]["reason"]


def test_focus_val_mask_that_is_a_noise_residual_is_refused_before_training(shards, tmp_path):
    out = tmp_path / "ckpt"
    noisy = tmp_path / "noise"  # the shards fixture holds masks only
    annotate("ff++", Path(json.loads((shards / "run.json").read_text())["root"]), noisy,
             JobSpec(methods=("noise",), frames=1, size=64), jobs=1)
    rc, text = cli("train", "focus", noisy, "--out", out, "--val-mask", "noise", *TRAIN)
    one_line_error(rc, text, "--val-mask noise", "noise residual")
    assert not out.exists()


def test_names_with_square_brackets_are_printed_as_written(small_ff_root, tmp_path):
    # rich reads "[...]" in printed text as markup: "[/]" crashed the summary after the run
    # (MarkupError), "[red]" vanished from the reason it was part of
    root = tmp_path / "clips [/]"  # "/" is a separator: the folders "clips [" and "]"
    (root / "[/]a.mp4").parent.mkdir(parents=True)
    shutil.copy(small_ff_root / ORIG / "000.mp4", root / "[/]a.mp4")
    (root / "[red]e.mp4").write_bytes(b"")
    out = tmp_path / "out [/]"
    rc, text = cli("annotate", "folder", root, "--out", out, "--method", "noise", "--frames", "1", "--size", "64",
                   "--jobs", "1")
    assert rc == 0 and "Traceback" not in text and "out [/]" in text, text
    rc, text = cli("info", out)
    assert rc == 0 and "[red]e.mp4: empty file" in text, text  # the reason as written


def test_a_file_name_that_is_not_utf8_is_a_problem_not_a_dead_run(small_ff_root, tmp_path):
    root = _folder(tmp_path / "videos", small_ff_root)
    # "vidéo.mp4" from an old Latin-1 archive: the name's bytes are not UTF-8
    shutil.copy(small_ff_root / ORIG / "001.mp4", os.fsencode(root) + b"/vid\xe9o.mp4")
    os.mkdir(os.fsencode(root) + b"/d\xe9.mp4")
    out = tmp_path / "out"
    rc, text = cli("annotate", "folder", root, "--out", out, "--method", "noise", "--frames", "1", "--size", "64",
                   "--jobs", "1")
    assert rc == 0 and "Traceback" not in text, text
    assert sorted(Manifest(out / "manifest.jsonl").load()) == ["a", "b", "c"]
    problems = {p["where"]: p["reason"] for p in json.loads((out / "dataset_problems.json").read_text())}
    assert "not valid UTF-8" in problems["vid\\xe9o"] and "d\\xe9.mp4/" in problems


def test_evaluate_says_when_it_scores_the_checkpoints_own_training_shards(shards, trained, tmp_path):
    from ffmask.evaluate import training_shards_scored
    from ffmask.models.checkpoint import read_description

    out = tmp_path / "report"
    rc, text = cli("evaluate", trained, "--shards", shards, "--out", out, "--workers", "0", "--device", "cpu")
    assert rc == 0, text
    assert "trained this checkpoint: these scores are not held out" in " ".join(text.split()), text
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["scored_training_shards"]) == len(list(shards.glob("*.h5")))
    assert "not held out" in (out / "metrics.md").read_text()
    # other shards are not flagged (the check compares paths: a copy elsewhere is not recognised)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sorted(shards.glob("*.h5"))[0], other / "shard-00000.h5")
    doc = read_description(trained / "best.json")
    assert training_shards_scored(doc, [other / "shard-00000.h5"]) == []
    assert training_shards_scored(doc, [sorted(shards.glob("*.h5"))[0]]) != []


def test_evaluate_says_when_the_manifest_names_missing_shards(shards, trained, tmp_path):
    """An unfinished copy of a run (a shard lost in transfer): the scores leave its videos out, and say so."""
    partial = tmp_path / "partial"
    shutil.copytree(shards, partial)
    files = sorted(partial.glob("*.h5"))
    assert len(files) >= 2
    files[-1].unlink()
    out = tmp_path / "report"
    rc, text = cli("evaluate", trained, "--shards", partial, "--out", out, "--workers", "0", "--device", "cpu")
    assert rc == 0, text
    flat = " ".join(text.split())
    assert "not scored: the manifest names 1 shard(s) that are missing" in flat and files[-1].name in flat, text
    metrics = json.loads((out / "metrics.json").read_text())
    assert [Path(p).name for p in metrics["missing_shards"]] == [files[-1].name]
    assert files[-1].name in (out / "metrics.md").read_text()
    # the complete run names none
    rc, text = cli("evaluate", trained, "--shards", shards, "--out", tmp_path / "full", "--workers", "0",
                   "--device", "cpu")
    assert rc == 0 and json.loads((tmp_path / "full" / "metrics.json").read_text())["missing_shards"] == []


def test_no_videos_found_says_the_problems_that_refused_them(small_ff_root, tmp_path):
    """Every item of the scan is a problem (dataset.json values are strings): the error gives the reasons."""
    root = tmp_path / "dfdcp"
    (root / "original_videos/1").mkdir(parents=True)
    shutil.copy(small_ff_root / ORIG / "000.mp4", root / "original_videos/1/r.mp4")
    (root / "dataset.json").write_text(json.dumps({"original_videos/1/r.mp4": "real"}))
    rc, text = cli("annotate", "dfdcp", root, "--out", tmp_path / "out", "--method", "noise", "--frames", "1",
                   "--size", "64", "--jobs", "1")
    line = one_line_error(rc, text, "no videos found", "problem(s)")
    assert "original_videos/1/r: dataset.json: needs" in line and "got 'real' instead of an object" in line, line


def test_a_run_json_that_is_not_an_object_is_one_line(small_ff_root, tmp_path):
    out = tmp_path / "out"
    args = ("annotate", "ff++", small_ff_root, "--out", out, "--method", "mscc", "--frames", "1", "--size", "64",
            "--jobs", "1")
    assert cli(*args)[0] == 0
    (out / "run.json").write_text("[]")
    one_line_error(*cli(*args), "run.json is corrupt", "--overwrite")
