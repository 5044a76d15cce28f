"""Session 16, second pass, M6: ``export deepfakebench --overwrite`` into an earlier export's folder.

At be89432 ``--overwrite`` wrote into the folder without removing anything: a dataset JSON the new export
does not write (another dataset's, or a label the new shards lack) stayed in ``dataset_json/``, and so did the
frames / masks / landmarks of videos the new export does not hold. DeepfakeBench opens a JSON by its name:
it trained on the earlier export's data. Now each export records what it writes (``ffmask-export.jsonl``) and
``--overwrite`` deletes exactly that first; export outputs no record names (an export made before records,
DeepfakeBench's own preprocessing) are refused in one line, and other files in the folder are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ffmask.errors import FFMaskError
from ffmask.export import export_deepfakebench
from ffmask.shards import FaceRecord, ShardWriter

from tests._export_runs import annotate_small_ffpp



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return annotate_small_ffpp(tmp_path_factory.mktemp("run"))


def _celeb_shard(path: Path) -> Path:
    rng = np.random.default_rng(7)
    with ShardWriter(path, size=32, maps={"mscc": "mask"}, config={"dataset": "celeb-df"}) as w:
        for video, label in (("Celeb-real/id0_0000", 0), ("Celeb-synthesis/id0_id1_0000", 1)):
            w.append(FaceRecord(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                                maps={"mscc": rng.random((32, 32)) > 0.5}, label=label, video_id=video,
                                original_id="", manipulation="", compression="", split="train", frame_index=0,
                                box=np.array([0, 0, 32, 32])))
    return path


def _files(out: Path) -> set[str]:
    """Every file under ``out``, relative, but the export's record."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "ffmask-export.jsonl"}


def _listed(out: Path) -> set[str]:
    """The frame, mask and landmark files the dataset JSONs in ``out`` make DeepfakeBench open, and the JSONs."""
    found = set()
    for path in (out / "dataset_json").glob("*.json"):
        found.add(path.relative_to(out).as_posix())

        def walk(node):
            if isinstance(node, dict):
                if "frames" in node and isinstance(node["frames"], list):
                    for frame in node["frames"]:
                        for name in (frame, frame.replace("frames", "masks"),
                                     frame.replace("frames", "landmarks").replace(".png", ".npy")):
                            found.add(Path(name).relative_to(out).as_posix())
                    return
                for value in node.values():
                    walk(value)
        walk(json.loads(path.read_text()))
    return found


def test_overwrite_with_another_dataset_leaves_nothing_of_the_earlier_export(run, tmp_path):
    out = tmp_path / "dfb"
    first = export_deepfakebench(run, out)
    assert (out / "dataset_json" / "FF-DF.json").exists() and (out / "FaceForensics++").is_dir()
    (out / "notes.txt").write_text("mine")  # a user's file: kept
    report = export_deepfakebench(_celeb_shard(tmp_path / "celeb.h5"), out, overwrite=True)
    assert report.dataset == "celeb-df" and report.faces == 2
    # be89432: FaceForensics++.json, FF-DF.json and the FaceForensics++/ frames were still there
    assert sorted(p.name for p in (out / "dataset_json").iterdir()) == ["Celeb-DF-v2.json"]
    assert not (out / "FaceForensics++").exists()
    assert _files(out) == _listed(out) | {"notes.txt"}
    assert report.replaced == (first.videos, len(first.json_files)) and first.videos > 0


def test_overwrite_with_fewer_videos_removes_the_others_frames(run, tmp_path):
    out = tmp_path / "dfb"
    whole = export_deepfakebench(run, out)
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(run.glob("shard-*.h5"))[0]
    shutil.copy2(first, one / first.name)
    shutil.copy2(run / "run.json", one / "run.json")
    part = export_deepfakebench(one, out, overwrite=True)
    assert 0 < part.videos < whole.videos
    # be89432: the frames of every video of the whole export stayed beside the JSON of the part
    assert _files(out) == _listed(out)
    fresh = tmp_path / "fresh"
    export_deepfakebench(one, fresh)
    assert {p.replace(str(fresh), "") for p in _files(fresh)} == {p.replace(str(out), "") for p in _files(out)}


def test_overwrite_refuses_export_files_no_record_names(run, tmp_path):
    out = tmp_path / "dfb"
    export_deepfakebench(run, out)
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "ffmask-export.jsonl").unlink(missing_ok=True)  # an export made before exports kept a record
    before = _files(old)
    # be89432: written into, FF-DF.json of the earlier export kept beside the new Celeb-DF-v2.json
    with pytest.raises(FFMaskError, match=r"holds dataset_json/\S+\.json that no ffmask export recorded"):
        export_deepfakebench(_celeb_shard(tmp_path / "celeb.h5"), old, overwrite=True)
    assert _files(old) == before  # nothing deleted
    shutil.rmtree(old / "dataset_json")
    with pytest.raises(FFMaskError, match=r"holds FaceForensics\+\+/\S+ that no ffmask export recorded"):
        export_deepfakebench(run, old, overwrite=True)
    shutil.rmtree(old / "FaceForensics++")  # the way out the line names
    export_deepfakebench(run, old, overwrite=True)
    assert _files(old) == _files(out) == _listed(old)


def test_overwrite_after_a_killed_export_removes_what_it_wrote(run, tmp_path):
    out = tmp_path / "dfb"
    export_deepfakebench(run, out)
    record = out / "ffmask-export.jsonl"
    lines = record.read_text().splitlines()
    videos = [line for line in lines if '"video"' in line]
    # killed after its first video, halfway through writing the second one's line
    record.write_text("\n".join(lines[:2]) + "\n" + videos[1][: len(videos[1]) // 2])
    shutil.rmtree(out / "dataset_json")
    for line in videos[1:]:
        entry = json.loads(line)
        for kind in ("frames", "masks", "landmarks"):
            shutil.rmtree(out / entry["base"] / kind / entry["video"])
    assert _files(out)
    export_deepfakebench(_celeb_shard(tmp_path / "celeb.h5"), out, overwrite=True)
    assert not (out / "FaceForensics++").exists() and _files(out) == _listed(out)
    record.write_text("{\"base\": \"../elsewhere\", \"video\": \"000\"}\n{}\n")
    with pytest.raises(FFMaskError, match="ffmask-export.jsonl is corrupt"):
        export_deepfakebench(run, out, overwrite=True)
