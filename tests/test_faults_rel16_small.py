"""Session 16, M4: ``preview`` of shards holding no face said ``the shards at [PosixPath('...')] hold no
faces`` (a Python list's repr as the user's line); now it names the shard file and what such a shard is."""

from __future__ import annotations

import pytest

from ffmask.errors import FFMaskError
from ffmask.shards import ShardWriter
from ffmask.shards.summary import preview_faces


def test_preview_of_a_shard_without_faces_is_a_plain_line(tmp_path):
    path = tmp_path / "run" / "shard-00000.h5"
    path.parent.mkdir()
    with ShardWriter(path, size=32, maps={"hull": "mask"}, config={"dataset": "ff++"}):
        pass  # an annotate task whose videos all failed writes such a shard
    with pytest.raises(FFMaskError) as err:
        preview_faces([path.parent])
    line = str(err.value)
    # at 8fb4ccb: "the shards at [PosixPath('/.../run')] hold no faces"
    assert "PosixPath" not in line and "[" not in line
    assert line.startswith(f"{path}: no faces to preview")
