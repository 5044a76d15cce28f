"""Session 16, M5: a resume deleted a shard another run wrote, copied into its ``--out`` by hand.

A shard no manifest line names is a leftover of a stopped run (renamed into place before its lines were
written): a resume deletes it and redoes its videos. At 8fb4ccb *any* such file was deleted, also a
shard of another run (here FF++ faces copied into a folder run's output to train on both), with the
line ``... deleted, its videos are redone`` although none of them is this run's. Now the run config the
shard carries (``ffmask.shards.runconfig``) tells: another run's shard is kept and said so; this run's
leftover is deleted and redone as before; ``info`` says whose the shard is instead of "a resume will redo them".
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec
from ffmask.shards import ShardIndex, summarize_shards
from tests._cli import ffmask_cli

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


def test_a_shard_of_another_run_is_kept_by_a_resume(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("000.mp4", "001.mp4"):
        shutil.copy2(SAMPLE / "original_sequences/youtube/c23/videos" / name, clips / name)
    spec = JobSpec(methods=("noise",), frames=1, size=32)
    folder_run, ff_run = tmp_path / "folder_run", tmp_path / "ff_run"
    annotate("folder", clips, folder_run, spec)
    annotate("ff++", SAMPLE, ff_run, spec, dataset_options={"manipulations": ["Deepfakes"], "compression": "c23"},
             videos_per_shard=2)
    foreign = folder_run / "shard-00009.h5"
    shutil.copy2(sorted(ff_run.glob("shard-*.h5"))[0], foreign)
    # a leftover of this run: its own shard under a name no manifest line gives
    own = folder_run / "shard-00010.h5"
    shutil.copy2(folder_run / "shard-00000.h5", own)

    # info tells them apart (at 8fb4ccb both "a run stopped before writing their lines ...: a resume will redo
    # them"); the copy of this run's shard counts faces twice, a problem as before
    unlisted = summarize_shards(folder_run)["manifest"]["unlisted_shards"]
    assert unlisted["shard-00009.h5"]["another_run"] == {"dataset": "ff++", "root": str(SAMPLE.resolve())}
    assert unlisted["shard-00010.h5"]["another_run"] is None
    code, out, err = ffmask_cli("info", folder_run)
    assert "shard-00009.h5 holds 2 video(s) (2 faces) of another run (dataset 'ff++' under" in out
    assert "a resume keeps it" in out and "shard-00009.h5 holds 2 video(s) (2 faces) the manifest" not in out

    report = annotate("folder", clips, folder_run, spec)
    # at 8fb4ccb: both deleted, "shard-00009.h5 is in no manifest line ...: deleted, its videos are redone"
    assert foreign.exists() and not own.exists()
    kept, = [line for line in report.redone_shards if line.startswith("shard-00009.h5")]
    assert "written by another run (dataset 'ff++'" in kept and "kept" in kept
    gone, = [line for line in report.redone_shards if line.startswith("shard-00010.h5")]
    assert "deleted" in gone
    assert report.videos_todo == 0  # the folder run's videos are done; none of the FF++ shard's is planned
    ids = {str(ShardIndex([foreign]).read(i, image=False)["video_id"]) for i in range(len(ShardIndex([foreign])))}
    assert any("/" in v for v in ids)  # still the FF++ faces
