"""`ffmask export deepfakebench`: read the export back the way DeepfakeBench's loader does.

The loader (SCLBD/DeepfakeBench ``training/dataset/abstract_dataset.py``)
opens ``dataset_json/<Name>.json``, walks ``[label_key][mode][compression]``
(FaceForensics++ family) or ``[label_key][mode]``, maps each label key through
``label_dict`` (its ``train_config.yaml``), sorts frames by ``int(basename)``,
reads a frame with ``cv2.imread`` (BGR → RGB), its mask at
``path.replace("frames", "masks")`` with ``cv2.imread(p, 0) / 255`` and its
landmarks at ``path.replace("frames", "landmarks").replace(".png", ".npy")``
with ``np.float32(np.load(p))`` (LMDB: raw bytes as ``uint32 (81, 2)``).
Every face, label and split read that way must equal the shards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.annotate import annotate
from ffmask.errors import FFMaskError
from ffmask.export import export_deepfakebench, landmarks81
from ffmask.pipeline import JobSpec
from ffmask.shards import FaceRecord, ShardIndex, ShardWriter

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
SIZE = 128
# DeepfakeBench's training/config/train_config.yaml label_dict (the keys this export may use)
LABEL_DICT = {
    "FF-real": 0, "FF-DF": 1, "FF-F2F": 1, "FF-FS": 1, "FF-NT": 1, "FF-FH": 1, "DFD_real": 0, "DFD_fake": 1,
    "CelebDFv2_real": 0, "CelebDFv2_fake": 1, "DFDCP_Real": 0, "DFDCP_FakeA": 1, "DFDCP_FakeB": 1,
    "DFDC_Real": 0, "DFDC_Fake": 1,
}
FF_FAMILY = {"FF-DF", "FF-F2F", "FF-FS", "FF-NT", "FaceForensics++", "DeepFakeDetection", "FaceShifter"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    spec = JobSpec(methods=("official", "mscc"), frames=2, size=SIZE, landmarks=True)
    options = {"manipulations": ["Deepfakes", "Face2Face"], "compression": "c23", "split": "all",
               "include_originals": True}
    annotate("ff++", SAMPLE, out, spec, dataset_options=options, videos_per_shard=6)
    return out


@pytest.fixture(scope="module")
def exported(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("dfb") / "export"
    cmd = [sys.executable, "-m", "ffmask", "export", "deepfakebench", str(shards), "--out", str(out),
           "--mask-map", "official"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FF-DF" in proc.stdout and "FF-F2F" in proc.stdout
    return out


def load_like_deepfakebench(json_folder: Path, name: str, compression: str = "c23") -> list[dict]:
    """Every (frame, label, mask, landmarks) DeepfakeBench's loader would produce for dataset ``name``."""
    info = json.loads((json_folder / f"{name}.json").read_text())
    samples = []
    for label_key in info[name]:
        for mode in ("train", "val", "test"):
            sub = info[name][label_key][mode]
            if name in FF_FAMILY:
                sub = sub[compression]
            for video, entry in sub.items():
                label = LABEL_DICT[entry["label"]]  # an unknown key would be a KeyError, as in the loader
                frames = entry["frames"]
                assert [int(Path(f).stem) for f in frames] == sorted(int(Path(f).stem) for f in frames)
                for path in frames:
                    bgr = cv2.imread(path)
                    assert bgr is not None, path
                    mask = cv2.imread(path.replace("frames", "masks"), 0)
                    landmark_file = path.replace("frames", "landmarks").replace(".png", ".npy")
                    samples.append({
                        "key": label_key, "mode": mode, "video": video, "frame": int(Path(path).stem),
                        "label": label, "image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                        "mask": np.float32(mask / 255), "landmarks": np.float32(np.load(landmark_file)),
                        "landmark_bytes": Path(landmark_file).read_bytes(), "landmark_file": landmark_file,
                    })
    return samples


def shard_faces(shards: Path) -> dict:
    """(label key, split, video name, frame) -> face, from the shards, with the key derived by hand."""
    index = ShardIndex(shards, ["official"])
    keys = {"Deepfakes": "FF-DF", "Face2Face": "FF-F2F", "original": "FF-real"}
    faces = {}
    for i in range(len(index)):
        f = index.read(i, geometry=True)
        faces[(keys[f["manipulation"]], f["split"], f["video_id"].split("/")[-1], f["frame_index"])] = f
    return faces


def test_loader_reads_back_every_face_label_and_split(shards, exported):
    faces = shard_faces(shards)
    assert len(faces) == 18 * 2 and {k[1] for k in faces} == {"train", "val", "test"}
    samples = load_like_deepfakebench(exported / "dataset_json", "FaceForensics++")
    got = {(s["key"], s["mode"], s["video"], s["frame"]): s for s in samples}
    assert len(got) == len(samples)  # no frame listed twice
    assert set(got) == set(faces)
    for key, face in faces.items():
        s = got[key]
        assert s["label"] == face["label"]
        np.testing.assert_array_equal(s["image"], face["image"], err_msg=str(key))
        np.testing.assert_array_equal(s["mask"], face["maps"]["official"].astype(np.float32), err_msg=str(key))
        assert s["landmarks"].shape == (81, 2)
        if face["label"] == 1:
            assert s["mask"].any()  # the sample's fakes have manipulated pixels in every frame
    # frames live where DeepfakeBench's preprocessing puts them
    some = next(s for s in samples if s["key"] == "FF-DF")
    assert f"FaceForensics++/manipulated_sequences/Deepfakes/c23/landmarks/{some['video']}/" in some["landmark_file"]


def test_per_method_files_hold_real_and_that_method(exported):
    folder = exported / "dataset_json"
    assert sorted(p.name for p in folder.iterdir()) == ["FF-DF.json", "FF-F2F.json", "FaceForensics++.json"]
    full = json.loads((folder / "FaceForensics++.json").read_text())["FaceForensics++"]
    for name in ("FF-DF", "FF-F2F"):
        per_method = json.loads((folder / f"{name}.json").read_text())[name]
        assert sorted(per_method) == sorted(["FF-real", name])
        assert per_method["FF-real"] == full["FF-real"] and per_method[name] == full[name]
        assert len(load_like_deepfakebench(folder, name)) == 2 * 2 * 6  # 6 reals + 6 fakes, 2 frames


def test_landmarks_land_on_the_exported_face(shards, exported):
    from ffmask.faces import DlibDetector

    detector = DlibDetector(landmarks=True)
    samples = [s for s in load_like_deepfakebench(exported / "dataset_json", "FaceForensics++") if s["label"] == 0]
    errors = []
    for s in samples:
        # the LMDB loader decodes the raw bytes as uint32 (81, 2): same numbers
        raw = np.load(s["landmark_file"])
        np.testing.assert_array_equal(np.frombuffer(raw.tobytes(), np.uint32).reshape(81, 2), s["landmarks"])
        lm = s["landmarks"]
        assert lm.min() >= 0 and lm.max() <= SIZE - 1
        # an independent dlib run on the exported frame itself finds the same 68 points
        found = detector.detect(s["image"])
        if found and found[0].landmarks is not None:
            errors.append(np.linalg.norm(found[0].landmarks - lm[:68], axis=1).mean())
        # forehead rows lie above the brows (upright faces), about as wide as the jaw
        forehead, margin = lm[68:], 0.1 * SIZE
        assert forehead[:, 1].mean() < lm[17:27, 1].mean()
        assert lm[:17, 0].min() - margin <= forehead[:, 0].min() and forehead[:, 0].max() <= lm[:17, 0].max() + margin
    assert len(errors) >= len(samples) // 2
    assert np.median(errors) < 0.03 * SIZE, errors


def test_landmarks81_order_and_missing():
    box = (100, 50, 300, 250)  # 200 px box -> 100 px crop: a frame point x maps to (x + 0.5 - 100) / 2 - 0.5
    pts = np.zeros((68, 2))
    pts[:17, 0] = np.linspace(120, 280, 17)  # jaw: ear to ear, lowest at the chin (8)
    pts[:17, 1] = 150 + 80 * np.sin(np.linspace(0, np.pi, 17))
    pts[17:27] = [[150 + 10 * k, 120] for k in range(10)]  # brows at frame y 120
    pts[27:] = [200, 180]
    lm = landmarks81(pts, box, 100)
    assert lm.dtype == np.int32 and lm.shape == (81, 2)
    np.testing.assert_array_equal(lm[8], np.rint([(200 + 0.5 - 100) / 2 - 0.5, (230 + 0.5 - 50) / 2 - 0.5]))
    forehead = lm[[77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78]]  # left to right in the image
    assert np.all(np.diff(forehead[:, 0]) >= 0)
    assert forehead[6, 1] < lm[17:27, 1].min()  # the middle one is the highest, above the brows
    assert not landmarks81(np.full((68, 2), np.nan), box, 100).any()  # missing: zeros, as the loader's default
    with pytest.raises(ValueError, match="68, 2"):
        landmarks81(np.zeros((5, 2)), box, 100)


def test_bad_requests_are_refused_before_writing(shards, tmp_path):
    with pytest.raises(FFMaskError, match="contains 'frames'"):
        export_deepfakebench(shards, tmp_path / "frames_out")
    assert not (tmp_path / "frames_out").exists()
    with pytest.raises(FFMaskError, match="no map 'ssim'.*available maps: mscc, official"):
        export_deepfakebench(shards, tmp_path / "a", mask_map="ssim")
    write_shard(tmp_path / "c.h5", [{"video_id": "Celeb-real/id0_0000", "label": 0, "split": "train"}])
    with pytest.raises(FFMaskError, match="is a continuous map"):
        export_deepfakebench(tmp_path / "c.h5", tmp_path / "a", mask_map="ssim", dataset="celeb-df")
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    with pytest.raises(FFMaskError, match="not empty"):
        export_deepfakebench(shards, busy)
    with pytest.raises(FFMaskError, match="no layout for dataset 'folder'"):
        export_deepfakebench(shards, tmp_path / "b", dataset="folder")


def test_size_option_resizes_frames_masks_and_landmarks_together(shards, exported, tmp_path):
    out = tmp_path / "big"
    export_deepfakebench(shards, out, mask_map="official", size=2 * SIZE)
    small = {(s["key"], s["mode"], s["video"], s["frame"]): s
             for s in load_like_deepfakebench(exported / "dataset_json", "FaceForensics++")}
    big = load_like_deepfakebench(out / "dataset_json", "FaceForensics++")
    assert len(big) == len(small)
    for s in big:
        ref = small[(s["key"], s["mode"], s["video"], s["frame"])]
        assert s["image"].shape == (2 * SIZE, 2 * SIZE, 3)
        np.testing.assert_array_equal(s["mask"], ref["mask"].repeat(2, 0).repeat(2, 1))  # nearest, x2
        if ref["landmarks"].any():
            # pixel centres: x in the 128 crop is 2x + 0.5 in the 256 crop (rounding: within 1.5 px)
            inside = (ref["landmarks"] > 0).all(1) & (ref["landmarks"] < SIZE - 1).all(1)
            assert np.abs(s["landmarks"][inside] - (2 * ref["landmarks"][inside] + 0.5)).max() <= 1.5
    with pytest.raises(FFMaskError, match="--size"):
        export_deepfakebench(shards, tmp_path / "x", size=4)


def test_two_compressions_share_one_json(tmp_path):
    for comp in ("c23", "c40"):
        write_shard(tmp_path / comp / "s.h5", [
            {"video_id": "youtube/000", "label": 0, "split": "train", "compression": comp},
            {"video_id": "Deepfakes/000_001", "label": 1, "split": "train", "compression": comp,
             "manipulation": "Deepfakes"},
        ])
    export_deepfakebench([tmp_path / "c23", tmp_path / "c40"], tmp_path / "out", dataset="ff++")
    folder = tmp_path / "out" / "dataset_json"
    for comp in ("c23", "c40"):
        samples = load_like_deepfakebench(folder, "FF-DF", compression=comp)
        assert sorted((s["key"], s["video"]) for s in samples) == [("FF-DF", "000_001"), ("FF-real", "000")]
        assert all(f"/{comp}/landmarks/" in s["landmark_file"] for s in samples)
    info = json.loads((folder / "FaceForensics++.json").read_text())["FaceForensics++"]
    # every label key has every split and compression level: the loader indexes them blindly
    assert all(sorted(info[k][m]) == ["c23", "c40"] for k in info for m in ("train", "val", "test"))


def write_shard(path: Path, faces: list[dict], size: int = 16) -> None:
    rng = np.random.default_rng(0)
    with ShardWriter(path, size=size, maps={"hull": "mask", "ssim": "continuous"}, config={"dataset": "test"}) as w:
        for f in faces:
            w.append(FaceRecord(
                image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                maps={"hull": rng.random((size, size)) > 0.5, "ssim": rng.random((size, size)).astype(np.float32)},
                label=f["label"], video_id=f["video_id"], original_id="", manipulation=f.get("manipulation", ""),
                compression=f.get("compression", ""), split=f["split"], frame_index=f.get("frame", 0),
                box=np.array([0, 0, 32, 32]),
            ))


@pytest.mark.parametrize("dataset, faces, expected", [
    ("celeb-df", [
        {"video_id": "Celeb-real/id0_0000", "label": 0, "split": "train"},
        {"video_id": "Celeb-synthesis/id0_id1_0000", "label": 1, "split": "test"},
        {"video_id": "YouTube-real/00001", "label": 0, "split": "test"},
    ], {("Celeb-DF-v2", "CelebDFv2_real", "train", "Celeb-DF-v2/Celeb-real/frames/id0_0000/000.png"),
        ("Celeb-DF-v2", "CelebDFv2_fake", "test", "Celeb-DF-v2/Celeb-synthesis/frames/id0_id1_0000/000.png"),
        ("Celeb-DF-v2", "CelebDFv2_real", "test", "Celeb-DF-v2/YouTube-real/frames/00001/000.png")}),
    ("dfdc", [
        {"video_id": "dfdc_train_part_3/aaa", "label": 0, "split": "train"},
        {"video_id": "dfdc_train_part_3/bbb", "label": 1, "split": "train"},
        {"video_id": "test/ccc", "label": 1, "split": "test"},
    ], {("DFDC", "DFDC_Real", "train", "DFDC/train/dfdc_train_part_3/frames/aaa/000.png"),
        ("DFDC", "DFDC_Fake", "train", "DFDC/train/dfdc_train_part_3/frames/bbb/000.png"),
        ("DFDC", "DFDC_Fake", "test", "DFDC/test/frames/ccc/000.png")}),
    ("dfdcp", [
        {"video_id": "original_videos/1/1_A_001", "label": 0, "split": "train"},
        {"video_id": "method_A/1/2/1_2_A_001", "label": 1, "split": "test"},
        {"video_id": "method_B/1/2/1_2_B_001", "label": 1, "split": "train"},
    ], {("DFDCP", "DFDCP_Real", "train", "DFDCP/original_videos/frames/1_A_001/000.png"),
        ("DFDCP", "DFDCP_FakeA", "test", "DFDCP/method_A/frames/1_2_A_001/000.png"),
        ("DFDCP", "DFDCP_FakeB", "train", "DFDCP/method_B/frames/1_2_B_001/000.png")}),
])
def test_other_datasets_layouts_and_label_keys(tmp_path, dataset, faces, expected):
    write_shard(tmp_path / "s.h5", faces + [{"video_id": "x/unlabelled", "label": -1, "split": "train"}])
    report = export_deepfakebench(tmp_path / "s.h5", tmp_path / "out", dataset=dataset)
    assert report.mask_map == "hull" and report.faces == 3
    assert report.skipped == {"unlabelled face (DeepfakeBench needs real or fake)": 1}
    name = next(iter(expected))[0]
    info = json.loads((tmp_path / "out" / "dataset_json" / f"{name}.json").read_text())[name]
    listed = {(name, key, mode, str(Path(p).relative_to(tmp_path / "out")))
              for key in info for mode in ("train", "val", "test")
              for entry in info[key][mode].values() for p in entry["frames"]}
    assert listed == expected
    assert all(LABEL_DICT[key] in (0, 1) for key in info)


def test_unsplit_videos_are_listed_in_every_split_and_dataset_from_run_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_shard(run / "shard-00000.h5", [{"video_id": "Celeb-real/id9_0001", "label": 0, "split": "", "frame": 7}])
    # no run.json: the run config the shard carries names its dataset (here one without a layout)
    with pytest.raises(FFMaskError, match="no layout for dataset 'test'"):
        export_deepfakebench(run, tmp_path / "out")
    (run / "run.json").write_text(json.dumps({"dataset": "celeb-df"}))
    report = export_deepfakebench(run, tmp_path / "out")
    assert report.unsplit_videos == 1
    info = json.loads((tmp_path / "out" / "dataset_json" / "Celeb-DF-v2.json").read_text())["Celeb-DF-v2"]
    for mode in ("train", "val", "test"):
        assert [Path(p).name for p in info["CelebDFv2_real"][mode]["id9_0001"]["frames"]] == ["007.png"]
