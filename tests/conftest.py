"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest

from ffmask.synth.tree import build_synth


@pytest.fixture(scope="session")
def small_ff_root(tmp_path_factory):
    """A read-only FF++-layout synth tree: 2 originals and their Deepfakes, 6 frames, c23 (seed 7)."""
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=2, frames=6, compressions=("c23",), manipulations=("Deepfakes",))
    return root
