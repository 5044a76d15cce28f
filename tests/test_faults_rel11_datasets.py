"""Session 13 (rel11), part B: dataset lists that name one video in two ways.

At c2a93bc a DFDCP ``dataset.json`` key ``original_videos/../method_A/.../f.mp4`` labelled
real annotated a fake as a real video (besides its own key, as a fake); keys spelling one
file differently (``original_videos//1/a.mp4``, ``.../1/./a.mp4``) annotated it once per
spelling, in train and in test; any dataset annotated a symlink or a hard link of a video
beside the video (one video under two ids, perhaps two labels); a ``metadata.json`` or
``dataset.json`` saved with a BOM skipped its whole part (or refused the run); a Celeb-DF
test list naming a video twice with two labels kept the last without a word.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ffmask.datasets.registry import get_dataset

from tests._dataset_trees import FAKE, REAL, dfdcp_tree


def _scan(name, root):
    scan = get_dataset(name, root)
    return {i.video_id: (i.label, i.split) for i in scan.items}, {p.where: p.reason for p in scan.problems}


@pytest.fixture
def dfdcp(tmp_path):
    return dfdcp_tree(tmp_path / "dfdcp")


def test_dfdcp_keys_that_climb_out_or_spell_one_file_twice_are_problems(dfdcp):
    (dfdcp / "dataset.json").write_text(json.dumps({
        "original_videos/1/a.mp4": {"label": "real", "set": "train"},
        "original_videos//1/a.mp4": {"label": "real", "set": "test"},
        "method_A/1/x/f.mp4": {"label": "fake", "set": "train"},
        "original_videos/../method_A/1/x/f.mp4": {"label": "real", "set": "train"},
    }))
    items, problems = _scan("dfdcp", dfdcp)
    # c2a93bc: the fake also as a real video ("original_videos/../method_A/1/x/f", label 0), and
    # original_videos/1/a twice (train, and test as "original_videos//1/a")
    assert items == {"method_A/1/x/f": (1, "train")}, items
    assert "climbs out of its folder" in problems["original_videos/../method_A/1/x/f.mp4"]
    assert "names the same file as 'original_videos/1/a.mp4' with another entry" in problems["original_videos//1/a.mp4"]
    assert "with another entry" in problems["original_videos/1/a.mp4"]


def test_dfdcp_one_entry_spelt_twice_alike_is_read_once_and_a_bom_is_no_error(dfdcp):
    entries = {"./original_videos/1/a.mp4": {"label": "real", "set": "train"},
               "original_videos/1/a.mp4": {"label": "real", "set": "train"},
               "method_A/1/x/f.mp4": {"label": "fake", "set": "test"}}
    (dfdcp / "dataset.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(entries).encode())
    items, problems = _scan("dfdcp", dfdcp)
    # c2a93bc: "Error: cannot read .../dataset.json: Unexpected UTF-8 BOM"
    assert items == {"original_videos/1/a": (0, "train"), "method_A/1/x/f": (1, "test")}, items
    assert problems == {}, problems


def test_dfdc_metadata_with_a_bom_is_read(tmp_path):
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    shutil.copy(REAL, part / "aaa.mp4")
    shutil.copy(FAKE, part / "bbb.mp4")
    meta = {"aaa.mp4": {"label": "REAL", "split": "train", "original": None},
            "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"}}
    (part / "metadata.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(meta).encode())
    items, problems = _scan("dfdc", tmp_path / "dfdc")
    # c2a93bc: "cannot be read (Unexpected UTF-8 BOM ...); its videos are skipped"
    assert items == {"dfdc_train_part_0/aaa": (0, "train"), "dfdc_train_part_0/bbb": (1, "train")}, problems
    assert problems == {}


def test_a_link_to_a_video_is_not_a_second_video(tmp_path):
    root = tmp_path / "clips"
    (root / "sub").mkdir(parents=True)
    shutil.copy(REAL, root / "a.mp4")
    shutil.copy(FAKE, root / "b.mp4")
    (root / "sub" / "copy.mp4").symlink_to(root / "a.mp4")
    os.link(root / "b.mp4", root / "sub" / "hard.mp4")
    (root / "labels.csv").write_text("a.mp4,0\nb.mp4,1\nsub/copy.mp4,0\nsub/hard.mp4,1\n")
    items, problems = _scan("folder", root)
    # c2a93bc: sub/copy and sub/hard annotated as videos of their own (labelled otherwise than their
    # targets, both items of the file are skipped since session 14: test_faults_rel12_datasets.py)
    assert items == {"a": (0, ""), "b": (1, "")}, items
    assert problems["sub/copy"].startswith("the same file as a (") and problems["sub/hard"].startswith("the same file as b (")


def test_celebdf_list_naming_a_video_twice_with_two_labels_says_so(tmp_path):
    root = tmp_path / "celeb"
    (root / "Celeb-real").mkdir(parents=True)
    (root / "Celeb-synthesis").mkdir()
    shutil.copy(REAL, root / "Celeb-real" / "id0_0000.mp4")
    shutil.copy(FAKE, root / "Celeb-synthesis" / "id0_id1_0000.mp4")
    (root / "List_of_testing_videos.txt").write_text(
        "0 Celeb-synthesis/id0_id1_0000.mp4\n1 Celeb-real/id0_0000.mp4\n0 Celeb-real/id0_0000.mp4\n")
    items, problems = _scan("celeb-df", root)
    assert items == {"Celeb-real/id0_0000": (0, "test"), "Celeb-synthesis/id0_id1_0000": (1, "test")}
    # c2a93bc: the last line won; it contradicted the folder, so a problem said only "list says label 1"
    assert "line 3: listed again with another label ('0', line 2: '1')" in problems["Celeb-real/id0_0000"], problems


def test_a_json_list_repeating_a_key_with_another_entry_skips_it(tmp_path, dfdcp):
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    shutil.copy(REAL, part / "aaa.mp4")
    shutil.copy(FAKE, part / "bbb.mp4")
    # two parts' files merged by hand: bbb.mp4 twice, once FAKE and once REAL; aaa.mp4 twice alike
    (part / "metadata.json").write_text(
        '{"aaa.mp4": {"label": "REAL", "split": "train", "original": null},'
        ' "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},'
        ' "bbb.mp4": {"label": "REAL", "split": "train", "original": null},'
        ' "aaa.mp4": {"label": "REAL", "split": "train", "original": null}}')
    items, problems = _scan("dfdc", tmp_path / "dfdc")
    # c2a93bc: the last entry won silently: the fake bbb annotated as a real video
    assert items == {"dfdc_train_part_0/aaa": (0, "train")}, items
    assert problems["dfdc_train_part_0/bbb"].startswith("metadata.json: bbb.mp4 given 2 times with different entries")
    (dfdcp / "dataset.json").write_text(
        '{"method_A/1/x/f.mp4": {"label": "fake", "set": "test"}, "method_A/1/x/f.mp4": {"label": "fake", "set": "train"},'
        ' "original_videos/1/a.mp4": {"label": "real", "set": "train"}}')
    items, problems = _scan("dfdcp", dfdcp)
    # c2a93bc: the fake trained on (the last entry's set) although the first put it in test
    assert items == {"original_videos/1/a": (0, "train")}, items
    assert problems["method_A/1/x/f.mp4"].startswith("dataset.json: given 2 times with different entries"), problems
