"""``ffmask annotate <dataset> ROOT --method ... --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Annotate a dataset: sampled frames -> face crops -> supervision maps -> HDF5 shards. "
    "Resumable: rerun the same command to continue an interrupted run.",
    no_args_is_help=True,
)

METHOD_HELP = (
    "Comma-separated maps to compute: mscc, ssim, diff, diff@T (e.g. diff@0.1), official "
    "(FF++ mask videos), hull, noise, focus. Paired methods need originals."
)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts or None


def _run(dataset, root, out, method, dataset_options, frames, every, detector, scale, size,
         noise_sigma, checkpoint, device, jobs, backend, videos_per_shard, overwrite, limit,
         shard_options=None):
    from ffmask.annotate import annotate
    from ffmask.cli._report import AnnotateProgress, print_annotate_summary
    from ffmask.errors import FFMaskError
    from ffmask.pipeline import JobSpec

    if every is not None:
        frames = None
    if frames is not None and frames < 1:
        raise typer.BadParameter("--frames must be >= 1")
    if every is not None and every < 1:
        raise typer.BadParameter("--every must be >= 1")
    if not Path(root).is_dir():
        raise FFMaskError(f"dataset root {root} is not a directory")
    spec = JobSpec(
        methods=tuple(_csv(method) or ()),
        frames=frames,
        every=every,
        detector=detector,
        scale=scale,
        size=size,
        noise_sigma=noise_sigma,
        focus_checkpoint=str(checkpoint) if checkpoint else None,
        device=device,
    )
    with AnnotateProgress() as progress:
        report = annotate(
            dataset, root, out, spec,
            dataset_options=dataset_options, videos_per_shard=videos_per_shard, jobs=jobs,
            backend=backend, overwrite=overwrite, limit=limit, shard_options=_shard_options(shard_options),
            on_plan=progress.plan, on_progress=progress.advance,
        )
    print_annotate_summary(report)


_OUT = typer.Option(..., "--out", "-o", help="Output directory for shards, manifest.jsonl and run.json.")
_METHOD = typer.Option("mscc", "--method", "-m", help=METHOD_HELP)
_FRAMES = typer.Option(20, help="Frames per video, evenly spaced (np.linspace over the frame count).")
_EVERY = typer.Option(None, help="Take every K-th frame instead of --frames.")
_DETECTOR = typer.Option("dlib", help="Face detector: dlib (HOG + 68 landmarks) or mtcnn.")
_SCALE = typer.Option(1.3, help="Square crop side = scale x the detected face's longer side.")
_SIZE = typer.Option(224, help="Crop size in pixels (224, 256, 299, 512 are common).")
_SIGMA = typer.Option(None, help="Noise-map sigma; default 5 for raw/c23, 10 for c40.")
_CKPT = typer.Option(None, "--checkpoint", help="FoCus checkpoint (.safetensors); default: the bundled one.")
_DEVICE = typer.Option(None, help="torch device for MTCNN/FoCus (default: cuda if available).")
_JOBS = typer.Option(1, "--jobs", "-j", help="Parallel worker processes.")
_BACKEND = typer.Option("loky", help="joblib backend: loky (local processes) or dask (a running cluster).")
_VPS = typer.Option(20, help="Videos per shard (whole originals with their fakes stay together).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Delete an existing run in --out and start again.")
_LIMIT = typer.Option(None, help="Only the first N videos (for a quick look).")
_IMAGE_CODEC = typer.Option("delta", "--image-codec", help="How shards store face crops: delta (lossless, "
                            "default), png (lossless, smaller, slower), blosc, raw, or jpeg (lossy: needs "
                            "--jpeg-quality). See docs/shards.md.")
_JPEG_QUALITY = typer.Option(None, "--jpeg-quality", min=1, max=100, help="Quality of --image-codec jpeg (recorded).")
_NOISE_STORAGE = typer.Option("scaled", "--noise-storage", help="noise maps: scaled (int8, error <= 1 percent of each "
                              "face's range) or derived (only sigma stored, recomputed on read).")


def _shard_options(choice) -> Optional[dict]:
    if choice is None:
        return None
    image_codec, jpeg_quality, noise_storage = choice
    if image_codec == "jpeg" and jpeg_quality is None:
        raise typer.BadParameter("--image-codec jpeg is lossy: give --jpeg-quality explicitly")
    options = {"image_codec": image_codec, "noise_storage": noise_storage}
    if jpeg_quality is not None:
        options["jpeg_quality"] = jpeg_quality
    return options


@app.command("ff++")
def ffpp(
    root: Path = typer.Argument(..., help="FaceForensics++ root (holds original_sequences/, manipulated_sequences/)."),
    out: Path = _OUT,
    method: str = _METHOD,
    manipulations: Optional[str] = typer.Option(
        None, help="Comma-separated: Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter (default: all present)."
    ),
    compression: str = typer.Option("c23", help="raw, c23 or c40."),
    split: str = typer.Option("all", help="train, val, test (official split files) or all."),
    originals: bool = typer.Option(True, "--originals/--no-originals", help="Also write the real faces."),
    frames: Optional[int] = _FRAMES,
    every: Optional[int] = _EVERY,
    detector: str = _DETECTOR,
    scale: float = _SCALE,
    size: int = _SIZE,
    noise_sigma: Optional[float] = _SIGMA,
    checkpoint: Optional[Path] = _CKPT,
    device: Optional[str] = _DEVICE,
    jobs: int = _JOBS,
    backend: str = _BACKEND,
    videos_per_shard: int = _VPS,
    overwrite: bool = _OVERWRITE,
    limit: Optional[int] = _LIMIT,
    image_codec: str = _IMAGE_CODEC,
    jpeg_quality: Optional[int] = _JPEG_QUALITY,
    noise_storage: str = _NOISE_STORAGE,
) -> None:
    """FaceForensics++: each fake is compared with its original, cropped with the original's box."""
    options = {
        "manipulations": _csv(manipulations),
        "compression": compression,
        "split": split,
        "include_originals": originals,
    }
    _run("ff++", root, out, method, options, frames, every, detector, scale, size, noise_sigma,
         checkpoint, device, jobs, backend, videos_per_shard, overwrite, limit,
         (image_codec, jpeg_quality, noise_storage))


@app.command("folder")
def folder(
    root: Path = typer.Argument(..., help="Any directory of videos (searched recursively)."),
    out: Path = _OUT,
    method: str = typer.Option("noise", "--method", "-m", help="Single-image methods: noise, focus."),
    labels: Optional[Path] = typer.Option(None, help="CSV or JSON mapping relative video path -> real/fake (0/1)."),
    frames: Optional[int] = _FRAMES,
    every: Optional[int] = _EVERY,
    detector: str = _DETECTOR,
    scale: float = _SCALE,
    size: int = _SIZE,
    noise_sigma: Optional[float] = _SIGMA,
    checkpoint: Optional[Path] = _CKPT,
    device: Optional[str] = _DEVICE,
    jobs: int = _JOBS,
    backend: str = _BACKEND,
    videos_per_shard: int = _VPS,
    overwrite: bool = _OVERWRITE,
    limit: Optional[int] = _LIMIT,
    image_codec: str = _IMAGE_CODEC,
    jpeg_quality: Optional[int] = _JPEG_QUALITY,
    noise_storage: str = _NOISE_STORAGE,
) -> None:
    """Unpaired videos (no originals): noise residuals and FoCus weak maps."""
    options = {"labels": str(labels) if labels else None}
    _run("folder", root, out, method, options, frames, every, detector, scale, size, noise_sigma,
         checkpoint, device, jobs, backend, videos_per_shard, overwrite, limit,
         (image_codec, jpeg_quality, noise_storage))
