"""A small real annotate run for the export tests: the sample FF++ data, Deepfakes and originals,
one frame per video at 32 px, `mscc` only, four videos per shard (12 videos, 3 shards)."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


def annotate_small_ffpp(out: Path) -> Path:
    """Annotate the sample data into ``out`` (see the module docstring); returns ``out``."""
    from ffmask.annotate import annotate
    from ffmask.pipeline import JobSpec

    spec = JobSpec(methods=("mscc",), frames=1, size=32)
    options = {"manipulations": ["Deepfakes"], "compression": "c23", "split": "all", "include_originals": True}
    annotate("ff++", SAMPLE, out, spec, dataset_options=options, videos_per_shard=4)
    return out
