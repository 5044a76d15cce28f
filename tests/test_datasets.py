"""Dataset scanners on trees of empty placeholder files (scanners decode nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffmask.datasets import DATASETS, DatasetError, DatasetScan, VideoItem, get_dataset
from ffmask.errors import FFMaskError


def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


ORIGINALS = ["000", "001", "002", "003", "004", "005"]
DF_FAKES = ["000_001", "001_000", "002_003", "003_002", "004_005", "999_000"]  # 999 has no original


@pytest.fixture()
def ffpp(tmp_path) -> Path:
    """A small FF++ tree.

    Deepfakes: masks for all but 002_003; one fake without original; one bad name.
    Face2Face: c23 videos, no masks folder. FaceShifter: never has masks.
    FaceSwap: only c40 downloaded. Splits: train [000,001], val [002,003], test [004,005].
    """
    root = tmp_path / "FaceForensics++"
    touch(root, *(f"original_sequences/youtube/c23/videos/{v}.mp4" for v in ORIGINALS))
    touch(root, *(f"manipulated_sequences/Deepfakes/c23/videos/{v}.mp4" for v in DF_FAKES))
    touch(root, "manipulated_sequences/Deepfakes/c23/videos/bad-name.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/notes.txt")
    touch(root, *(f"manipulated_sequences/Deepfakes/masks/videos/{v}.mp4" for v in DF_FAKES if v != "002_003"))
    touch(root, "manipulated_sequences/Face2Face/c23/videos/000_001.mp4",
          "manipulated_sequences/Face2Face/c23/videos/001_000.mp4")
    touch(root, "manipulated_sequences/FaceShifter/c23/videos/004_005.mp4")
    touch(root, "manipulated_sequences/FaceSwap/c40/videos/000_001.mp4")
    (root / "splits").mkdir()
    for name, pairs in {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}.items():
        (root / "splits" / f"{name}.json").write_text(json.dumps(pairs))
    return root


def reasons(scan: DatasetScan) -> dict[str, str]:
    return {p.where: p.reason for p in scan.problems}


def test_ffpp_items_pairing_masks_and_splits(ffpp):
    scan = get_dataset("ff++", ffpp)
    ids = [i.video_id for i in scan.items]
    assert ids == (
        [f"youtube/{v}" for v in ORIGINALS]
        + [f"Deepfakes/{v}" for v in DF_FAKES]
        + ["Face2Face/000_001", "Face2Face/001_000", "FaceShifter/004_005"]
    )
    by_id = {i.video_id: i for i in scan.items}
    original = by_id["youtube/000"]
    assert (original.label, original.manipulation, original.compression, original.split) == (0, "original", "c23", "train")
    assert original.path == ffpp / "original_sequences/youtube/c23/videos/000.mp4"
    assert original.original is None and original.mask_path is None

    fake = by_id["Deepfakes/001_000"]
    assert (fake.label, fake.manipulation, fake.compression, fake.split) == (1, "Deepfakes", "c23", "train")
    assert fake.original is by_id["youtube/001"]  # target 001: the same object as the listed original
    assert fake.original_id == "youtube/001" and fake.is_paired
    assert fake.mask_path == ffpp / "manipulated_sequences/Deepfakes/masks/videos/001_000.mp4"
    assert fake.extra == {"target": "001", "source": "000"}
    assert by_id["Deepfakes/002_003"].split == "val" and by_id["Deepfakes/002_003"].mask_path is None
    assert by_id["Deepfakes/004_005"].split == "test"
    assert by_id["Face2Face/000_001"].mask_path is None and by_id["Face2Face/000_001"].original is by_id["youtube/000"]
    assert by_id["FaceShifter/004_005"].mask_path is None

    missing = by_id["Deepfakes/999_000"]  # kept so the manifest can say "missing original"
    assert missing.original is None and missing.split == ""

    found = reasons(scan)
    assert "original video not found" in found["Deepfakes/999_000"]
    assert "mask video not found" in found["Deepfakes/002_003"]
    assert "does not match <target>_<source>" in found["manipulated_sequences/Deepfakes/c23/videos/bad-name.mp4"]
    assert "masks folder missing" in found["manipulated_sequences/Face2Face/masks/videos"]
    assert "no c23 FaceSwap videos folder (found: c40)" == found["manipulated_sequences/FaceSwap/c23/videos"]
    assert not any("FaceShifter" in where for where in found)  # FaceShifter never ships masks
    assert len(scan.problems) == 5
    # Deterministic: a second scan gives equal items in the same order.
    assert [i.video_id for i in get_dataset("ff++", ffpp).items] == ids


def test_ffpp_split_and_manipulation_filters(ffpp):
    scan = get_dataset("ff++", ffpp, manipulations=["DF", "NeuralTextures"], split="val")
    assert [i.video_id for i in scan.items] == ["youtube/002", "youtube/003", "Deepfakes/002_003", "Deepfakes/003_002"]
    assert all(i.split == "val" for i in scan.items)
    assert reasons(scan)["manipulated_sequences/NeuralTextures"] == "requested manipulation folder not found"

    scan = get_dataset("ff++", ffpp, manipulations="Face2Face", include_originals=False, split="train")
    assert [i.video_id for i in scan.items] == ["Face2Face/000_001", "Face2Face/001_000"]
    assert scan.items[0].original.video_id == "youtube/000"

    assert [i.video_id for i in get_dataset("ff++", ffpp, manipulations=[]).items] == [f"youtube/{v}" for v in ORIGINALS]


def test_ffpp_split_files_at_root_and_missing(ffpp):
    for path in (ffpp / "splits").iterdir():
        path.rename(ffpp / path.name)
    (ffpp / "splits").rmdir()
    assert {i.video_id for i in get_dataset("ff++", ffpp, split="test").items} >= {"youtube/004", "Deepfakes/004_005"}
    for name in ("train", "val", "test"):
        (ffpp / f"{name}.json").unlink()
    with pytest.raises(FFMaskError, match="split 'train' requested but no split file"):
        get_dataset("ff++", ffpp, split="train")
    assert all(i.split == "" for i in get_dataset("ff++", ffpp).items)


def test_ffpp_bad_split_file(ffpp):
    (ffpp / "splits" / "val.json").write_text('[["002"]]')
    with pytest.raises(FFMaskError, match=r"val\.json: entry 0 must be a pair"):
        get_dataset("ff++", ffpp)


def test_ffpp_missing_originals_folder_keeps_fakes(ffpp, tmp_path):
    import shutil

    shutil.rmtree(ffpp / "original_sequences")
    scan = get_dataset("ff++", ffpp, manipulations=["Deepfakes"])
    assert [i.label for i in scan.items] == [1] * 6
    assert all(i.original is None for i in scan.items)
    found = reasons(scan)
    assert found["original_sequences/youtube/c23/videos"] == "no c23 original videos folder"
    assert sum("original video not found" in p.reason for p in scan.problems) == 6


def test_ffpp_deepfakedetection(tmp_path):
    root = tmp_path / "ff"
    touch(root, "original_sequences/youtube/c23/videos/000.mp4",
          "original_sequences/actors/c23/videos/01__exit_phone_room.mp4",
          "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__exit_phone_room__YVGY8LOK.mp4",
          "manipulated_sequences/DeepFakeDetection/c23/videos/03_04__walking__ABC.mp4",
          "manipulated_sequences/DeepFakeDetection/masks/videos/01_02__exit_phone_room__YVGY8LOK.mp4")
    scan = get_dataset("ff++", root)
    by_id = {i.video_id: i for i in scan.items}
    assert list(by_id) == ["youtube/000", "actors/01__exit_phone_room",
                           "DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK", "DeepFakeDetection/03_04__walking__ABC"]
    fake = by_id["DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK"]
    assert fake.original is by_id["actors/01__exit_phone_room"] and fake.mask_path is not None
    assert by_id["DeepFakeDetection/03_04__walking__ABC"].original is None


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"compression": "c99"}, DatasetError, "compression"),
        ({"split": "dev"}, DatasetError, "split"),
        ({"manipulations": ["Morphing"]}, DatasetError, "unknown ff.. manipulation 'Morphing'"),
        ({"frames": 4}, DatasetError, "no option"),
    ],
)
def test_ffpp_bad_options(ffpp, options, error, message):
    with pytest.raises(error, match=message):
        get_dataset("ff++", ffpp, **options)


def test_get_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'kinetics'.*ff\\+\\+, folder"):
        get_dataset("kinetics", tmp_path)
    assert issubclass(DatasetError, FFMaskError) and issubclass(DatasetError, ValueError)
    with pytest.raises(FFMaskError, match="dataset root not found"):
        get_dataset("ff++", tmp_path / "nope")
    with pytest.raises(FFMaskError, match="does not look like FaceForensics"):
        get_dataset("ff++", tmp_path)
    assert set(DATASETS) >= {"ff++", "folder"}
    assert get_dataset("FFPP", _tiny_ffpp(tmp_path)).items  # alias, any case


def _tiny_ffpp(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    touch(root, "original_sequences/youtube/c23/videos/000.mp4")
    return root


# -- folder ------------------------------------------------------------------


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "videos"
    touch(root, "a.mp4", "clips/b.AVI", "clips/deep/c.mkv", "d.webm", "e.mov",
          "readme.txt", ".hidden.mp4", ".cache/x.mp4", "clips/b.mp4")
    return root


def test_folder_unlabelled(folder):
    scan = get_dataset("folder", folder, compression="c40")
    assert [i.video_id for i in scan.items] == ["a", "clips/b", "clips/deep/c", "d", "e"]
    assert all(i.label == -1 and i.original is None and i.compression == "c40" for i in scan.items)
    assert scan.items[1].path == folder / "clips/b.AVI"
    assert reasons(scan) == {"clips/b.mp4": "same video id as clips/b.AVI; skipped"}


def test_folder_labels_csv_and_json(folder, tmp_path):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,label\na.mp4,fake\nclips/b,0\n./clips/deep/c.mkv,REAL\nghost.mp4,1\n")
    scan = get_dataset("folder", folder, labels=csv_file)
    assert {i.video_id: i.label for i in scan.items} == {"a": 1, "clips/b": 0, "clips/deep/c": 0, "d": -1, "e": -1}
    found = reasons(scan)
    assert "no label in labels.csv" in found["d.webm"] and "no label" in found["e.mov"]
    assert "no such video" in found["ghost.mp4"]

    (folder / "labels.json").write_text(json.dumps({"a": 0, "d.webm": "fake", "e": 1, "clips/b.AVI": "1",
                                                    "clips/deep/c": 0}))
    scan = get_dataset("folder", folder, labels="labels.json")  # found under the root
    assert [i.label for i in scan.items] == [0, 1, 0, 1, 1]


@pytest.mark.parametrize("content, suffix", [("a.mp4,maybe\nd.webm,1\n", ".csv"), ('{"a.mp4": 2, "d": 1}', ".json")])
def test_folder_unknown_label_skips_that_video(folder, tmp_path, content, suffix):
    path = tmp_path / f"labels{suffix}"
    path.write_text(content)
    scan = get_dataset("folder", folder, labels=path)
    assert "a" not in {i.video_id for i in scan.items}  # never annotated under a guessed label
    assert {i.video_id: i.label for i in scan.items}["d"] == 1
    assert "label must be 0/1 or real/fake" in reasons(scan)["a.mp4"] and "skipped" in reasons(scan)["a.mp4"]


@pytest.mark.parametrize("content, suffix, message", [
    ("a.mp4\n", ".csv", "row 1 needs"),
    ("[1, 2]", ".json", "JSON object"),
    ("{oops", ".json", "not valid JSON"),
])
def test_folder_bad_labels(folder, tmp_path, content, suffix, message):
    path = tmp_path / f"labels{suffix}"
    path.write_text(content)
    with pytest.raises(FFMaskError, match=message):
        get_dataset("folder", folder, labels=path)


def test_folder_errors(tmp_path):
    touch(tmp_path / "empty", "notes.txt")
    with pytest.raises(FFMaskError, match="no videos"):
        get_dataset("folder", tmp_path / "empty")
    touch(tmp_path / "one", "a.mp4")
    with pytest.raises(FFMaskError, match="labels file not found"):
        get_dataset("folder", tmp_path / "one", labels=tmp_path / "missing.csv")


# -- celeb-df and dfdc ---------------------------------------------------------


def test_celebdf(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0001.mp4", "YouTube-real/00000.mp4",
          "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0001.mp4",
          "Celeb-synthesis/id2_id0_0003.mp4", "Celeb-synthesis/weird.mp4")
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id1_id0_0001.mp4\n0 Celeb-synthesis/id9_id8_0000.mp4\n")
    scan = get_dataset("celeb-df", root)
    by_id = {i.video_id: i for i in scan.items}
    assert list(by_id) == ["Celeb-real/id0_0000", "Celeb-real/id1_0001", "YouTube-real/00000",
                           "Celeb-synthesis/id0_id1_0000", "Celeb-synthesis/id1_id0_0001",
                           "Celeb-synthesis/id2_id0_0003"]
    assert by_id["Celeb-synthesis/id0_id1_0000"].original is by_id["Celeb-real/id0_0000"]
    assert by_id["Celeb-synthesis/id1_id0_0001"].original is by_id["Celeb-real/id1_0001"]
    assert by_id["Celeb-synthesis/id1_id0_0001"].split == "test" and by_id["Celeb-real/id0_0000"].split == "train"
    assert by_id["YouTube-real/00000"].label == 0 and by_id["YouTube-real/00000"].split == "test"
    found = reasons(scan)
    assert "not found" in found["Celeb-synthesis/id2_id0_0003"] and by_id["Celeb-synthesis/id2_id0_0003"].original is None
    assert "skipped" in found["Celeb-synthesis/weird"]
    assert "missing" in found["Celeb-synthesis/id9_id8_0000"]
    test = get_dataset("celeb-df", root, split="test")
    assert [i.video_id for i in test.items] == ["YouTube-real/00000", "Celeb-synthesis/id1_id0_0001"]


def test_dfdc(tmp_path):
    root = tmp_path / "dfdc"
    touch(root, "dfdc_train_part_0/real1.mp4", "dfdc_train_part_0/fake1.mp4", "dfdc_train_part_1/fake2.mp4",
          "dfdc_train_part_1/fake3.mp4")
    (root / "dfdc_train_part_0/metadata.json").write_text(json.dumps({
        "real1.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake1.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
        "gone.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
    }))
    (root / "dfdc_train_part_1/metadata.json").write_text(json.dumps({
        "fake2.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
        "fake3.mp4": {"label": "FAKE", "split": "train", "original": "nowhere.mp4"},
    }))
    scan = get_dataset("dfdc", root)
    by_id = {i.video_id: i for i in scan.items}
    assert sorted(by_id) == ["dfdc_train_part_0/fake1", "dfdc_train_part_0/real1",
                             "dfdc_train_part_1/fake2", "dfdc_train_part_1/fake3"]
    real = by_id["dfdc_train_part_0/real1"]
    assert by_id["dfdc_train_part_0/fake1"].original is real and by_id["dfdc_train_part_1/fake2"].original is real
    assert by_id["dfdc_train_part_1/fake3"].original is None
    found = reasons(scan)
    assert "missing" in found["dfdc_train_part_0/gone"] and "not found" in found["dfdc_train_part_1/fake3"]
    assert all(isinstance(i, VideoItem) and i.split == "train" for i in scan.items)


def test_directories_named_like_videos_are_reported_by_every_walker(ffpp, tmp_path):
    # FF++: in an originals folder, a method folder and a masks folder
    for rel in ("original_sequences/youtube/c23/videos/017.mp4", "manipulated_sequences/Deepfakes/c23/videos/017_018.mp4",
                "manipulated_sequences/Deepfakes/masks/videos/005_004.mp4"):
        (ffpp / rel).mkdir()
    found = reasons(get_dataset("ff++", ffpp))
    for rel in ("original_sequences/youtube/c23/videos/017.mp4", "manipulated_sequences/Deepfakes/c23/videos/017_018.mp4",
                "manipulated_sequences/Deepfakes/masks/videos/005_004.mp4"):
        assert found[rel] == "a directory named like a video, not a video file; skipped"
    # celeb-df, dfdc, folder
    root = tmp_path / "cdf"
    touch(root, "Celeb-real/id0_0000.mp4", "List_of_testing_videos.txt")
    (root / "Celeb-synthesis/id0_id1_0000.mp4").mkdir(parents=True)
    assert "named like a video" in reasons(get_dataset("celeb-df", root))["Celeb-synthesis/id0_id1_0000.mp4"]
    root = tmp_path / "dfdc"
    touch(root, "dfdc_train_part_0/a.mp4")
    (root / "dfdc_train_part_0/metadata.json").write_text('{"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE"}}')
    (root / "dfdc_train_part_0/b.mp4").mkdir()
    found = reasons(get_dataset("dfdc", root))
    assert "named like a video" in found["dfdc_train_part_0/b.mp4"]
    assert found["dfdc_train_part_0/b"] == "listed in metadata.json but b.mp4 is a directory, not a video file; skipped"
    root = tmp_path / "vids"
    touch(root, "a.mp4")
    (root / "sub/017.MP4").mkdir(parents=True)
    touch(root, "sub/017.MP4/inside.mp4")  # not walked into: the directory is the problem
    scan = get_dataset("folder", root)
    assert [i.video_id for i in scan.items] == ["a"]
    assert "named like a video" in reasons(scan)["sub/017.MP4/"]


def test_celebdf_unknown_label_line_stays_in_test(tmp_path):
    root = tmp_path / "cdf"
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4")
    (root / "List_of_testing_videos.txt").write_text("x Celeb-real/id1_0000.mp4\n1 ./Celeb-real/id0_0000.mp4\n")
    train = get_dataset("celeb-df", root, split="train")
    assert [i.video_id for i in train.items] == ["Celeb-synthesis/id0_id1_0000"]
    assert "unknown label 'x'" in reasons(train)["Celeb-real/id1_0000"]
    assert "listed" not in " ".join(reasons(train).values())  # listed test videos exist: not "missing"
    (root / "List_of_testing_videos.txt").write_text("Celeb-real/id1_0000.mp4\n")
    with pytest.raises(FFMaskError, match=r"line 1: expected '1\|0 <path>'"):
        get_dataset("celeb-df", root, split="train")


def test_celebdf_test_list_path_with_spaces(tmp_path):
    # The list is '<label> <path>': a path holding spaces is one path, not a malformed line.
    root = tmp_path / "cdf"
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id1 copy.mp4", "Celeb-synthesis/id0_id1_0000.mp4")
    (root / "List_of_testing_videos.txt").write_text("1 Celeb-real/id1 copy.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4 \n")
    test = get_dataset("celeb-df", root, split="test")
    assert sorted(i.video_id for i in test.items) == ["Celeb-real/id1 copy", "Celeb-synthesis/id0_id1_0000"]
    assert {i.video_id: i.label for i in test.items} == {"Celeb-real/id1 copy": 0, "Celeb-synthesis/id0_id1_0000": 1}
    assert "listed" not in " ".join(reasons(test).values())


def test_dfdc_splits_and_test_set(tmp_path):
    root = tmp_path / "dfdc"
    touch(root, "dfdc_train_part_0/r.mp4", "dfdc_train_part_0/f.mp4", "test/videos/t1.mp4", "test/videos/t2.mp4")
    (root / "dfdc_train_part_0/metadata.json").write_text(json.dumps({
        "r.mp4": {"label": "REAL", "split": "train"}, "f.mp4": {"label": "FAKE", "split": "train", "original": "r.mp4"}}))
    (root / "test/labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,REAL\n")
    assert [(i.video_id, i.label, i.split) for i in get_dataset("dfdc", root, split="test").items] == [
        ("test/t1", 1, "test"), ("test/t2", 0, "test")]
    assert [i.video_id for i in get_dataset("dfdc", root, split="train").items] == [
        "dfdc_train_part_0/r", "dfdc_train_part_0/f"]
    assert len(get_dataset("dfdc", root).items) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(FFMaskError, match="no metadata.json .* or labels.csv"):
        get_dataset("dfdc", tmp_path / "empty")


def test_wdf_inside_its_wrapper_folder(tmp_path):
    import tarfile

    root = tmp_path / "wdf"
    (root / "deepfake_in_the_wild/real_test").mkdir(parents=True)
    with tarfile.open(root / "deepfake_in_the_wild/real_test/4.tar", "w") as tar:
        for name in ("4/0/0.png", "4/0/1.png"):
            info = tarfile.TarInfo(name)
            tar.addfile(info)  # empty files: the scan lists, it decodes nothing
    scan = get_dataset("wdf", root, split="test")
    assert [(i.video_id, i.label, i.split, i.path.frames) for i in scan.items] == [
        ("real_test/4/0", 0, "test", ("4/0/0.png", "4/0/1.png"))]
    assert reasons(scan) == {"fake_test": "folder missing"}
    extracted = root / "deepfake_in_the_wild/real_test/4/0"
    extracted.mkdir(parents=True)
    touch(extracted, "0.png")
    (root / "deepfake_in_the_wild/real_test/5.tar.gz").write_bytes(b"broken")
    scan = get_dataset("wdf", root, split="test")
    # the same sequence twice (4/ before 4.tar in name order): kept once, the other reported
    assert [(i.video_id, len(i.path.frames)) for i in scan.items] == [("real_test/4/0", 1)]
    found = reasons(scan)
    assert found["real_test/4/0"] == "also in real_test/4; the copy in real_test/4.tar is skipped"
    assert "cannot be read as a tar archive" in found["real_test/5.tar.gz"]
    assert len(scan.problems) == 3
    with pytest.raises(FFMaskError, match="does not look like WildDeepfake"):
        get_dataset("wdf", tmp_path / "wdf" / "deepfake_in_the_wild" / "real_test")
