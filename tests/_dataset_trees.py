"""Small dataset trees built from the bundled sample videos, for the dataset adapters' fault tests."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
REAL = SAMPLE / "original_sequences/youtube/c23/videos/000.mp4"
REAL2 = SAMPLE / "original_sequences/youtube/c23/videos/001.mp4"
FAKE = SAMPLE / "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A gzipped tar archive at ``path`` (folders made) holding ``members`` (name inside -> bytes) in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def dfdcp_tree(root: Path) -> Path:
    """A DFDCP layout without its ``dataset.json``: one real, one fake of method A, an empty method B."""
    for rel, src in (("original_videos/1/a.mp4", REAL), ("method_A/1/x/f.mp4", FAKE)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "method_B").mkdir()
    return root
