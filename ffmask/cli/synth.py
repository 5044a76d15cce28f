"""``ffmask synth OUT``: a miniature FaceForensics++ tree with true masks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

#: the largest frame side --size takes (8K UHD is 7680 wide)
MAX_SIDE = 8192
_METHODS = "Deepfakes,Face2Face,FaceSwap,NeuralTextures"
_FAMILY_HELP = "Families forgeries (and --pairs) draw from this comma-separated subset of "


def synth(
    out: Path = typer.Argument(
        ..., help="Output folder for the FF++-style tree; must be empty unless --overwrite.",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed: the same seed and options give the same videos."),
    identities: int = typer.Option(
        6, "--identities", "-n", min=2,
        help="Number of original videos (000, 001, ...), at most 1000 (FF++'s count). Consecutive ones are paired "
        "(000_001 and 001_000 ...). Five bundled photos, then their mirror images, then repeats.",
    ),
    frames: int = typer.Option(
        48, "--frames", min=1,
        help="Frames per video; a video is held in memory, so at most 2 GiB of it (6990 frames at 320x240, "
        "1747 at 640x480)."),
    size: str = typer.Option("320x240", "--size", help="Frame size WxH, even, at least 96x96 (FF++-like: 640x480)."),
    fps: float = typer.Option(25.0, "--fps", min=1.0, help="Frame rate."),
    compression: str = typer.Option(
        "c23,c40", "--compression", "-c",
        help="Comma-separated subset of raw (lossless H.264), c23 (x264 CRF 23), c40 (CRF 40).",
    ),
    manipulations: str = typer.Option(
        _METHODS, "--manipulations", "-m",
        help="Comma-separated subset of Deepfakes, Face2Face, FaceSwap, NeuralTextures (or DF, F2F, FS, NT) "
        "and Families (FAM: a random region x operation x blend x strength forgery per video).",
    ),
    pairs: Optional[int] = typer.Option(
        None, "--pairs", min=1,
        help="Fast mode: write this many (at most 100000) single-frame family forgeries instead of a video tree: "
        "each real and fake frame compressed independently (x264 intra frame), cropped to --crop px, dlib landmarks of the "
        "real crop, true mask (OUT/pairs.json, OUT/<c>/, OUT/masks/).",
    ),
    crop: int = typer.Option(256, "--crop", min=32, help="With --pairs: crop side in pixels (at most 4096)."),
    identities_subset: Optional[str] = typer.Option(
        None, "--faces", help="With --pairs: comma-separated portrait keys the target faces come from "
        "(obama, obama-mirrored, biden, ...; default all)."),
    regions: str = typer.Option("all", "--regions", help=_FAMILY_HELP + "hull,inner,mouth,eyes,nose,cheek,forehead,blob."),
    operations: str = typer.Option(
        "all", "--operations",
        help=_FAMILY_HELP + "swap,resample,blur,sharpen,color,warp,noise,jpeg,expression."),
    blends: str = typer.Option("all", "--blends", help=_FAMILY_HELP + "hard,feather,seamless."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: all cores). The output does not depend on it.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the tree in a non-empty OUT (only synth's own folders and files are removed).",
    ),
) -> None:
    """Build a miniature FaceForensics++ tree with true manipulation masks.

    Short videos are made from bundled public-domain portraits with gentle
    camera motion, then forged per frame with four methods in the spirit of
    FF++ (Deepfakes, Face2Face, FaceSwap, NeuralTextures). Written in FF++'s
    layout: original_sequences/youtube/<c>/videos/000.mp4,
    manipulated_sequences/<Method>/<c>/videos/000_001.mp4, lossless mask
    videos in manipulated_sequences/<Method>/masks/videos/ (white =
    manipulated), splits/{train,val,test}.json and ground_truth.json.
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ffmask.synth import families, tree

    family_options = {}
    for axis, value, hint in (("region", regions, "--regions"), ("operation", operations, "--operations"),
                              ("blend", blends, "--blends")):
        try:
            family_options[f"{axis}s"] = families.parse_axis(axis, value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
    if pairs is not None:
        _pairs(out, seed, pairs, crop, identities_subset, family_options, compression, overwrite)
        return
    try:
        size_wh = tree.parse_size(size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--size") from None
    if max(size_wh) > MAX_SIDE:  # a typo such as 64000x480 would die of memory in OpenCV
        raise typer.BadParameter(f"size must be at most {MAX_SIDE} pixels a side, got {size}", param_hint="--size")
    if not math.isfinite(fps):  # the range check lets inf through
        raise typer.BadParameter(f"must be a finite number, got {fps}", param_hint="--fps")
    if identities > tree.MAX_IDENTITIES:  # -n 100000 would run for days
        raise typer.BadParameter(f"at most {tree.MAX_IDENTITIES} (FaceForensics++'s count of originals), "
                                 f"got {identities}", param_hint="--identities")
    if frames > tree.max_frames(size_wh):  # a whole video is held in memory: 100000 frames die of it hours in
        raise typer.BadParameter(
            f"at most {tree.max_frames(size_wh)} at {size_wh[0]}x{size_wh[1]} (a video is held in memory, "
            f"at most {tree.MAX_VIDEO_BYTES / 2 ** 30:.0f} GiB), got {frames}", param_hint="--frames")
    try:
        compressions = tree.parse_compressions(compression)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--compression") from None
    try:
        methods = tree.parse_manipulations(manipulations)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--manipulations") from None

    console = Console()
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]synth[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=console, transient=True,
    ) as bar:
        task = bar.add_task("loading portraits", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        summary = tree.build_synth(
            out, seed=seed, identities=identities, frames=frames, size=size_wh, fps=fps,
            compressions=compressions, manipulations=methods, overwrite=overwrite, jobs=jobs,
            progress=progress, families=family_options,
        )
    _print_summary(console, summary, compressions, time.perf_counter() - start)


def _print_summary(console, summary, compressions, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"ffmask synth -> {escape(str(summary.out))}", title_justify="left")
    table.add_column("videos")
    columns = list(compressions) + ["masks"]
    for c in columns:
        table.add_column(c, justify="right")
    for row, counts in summary.videos.items():
        table.add_row(row, *(str(counts[c]) if c in counts else "-" for c in columns))
    console.print(table)
    splits = ", ".join(f"{k} {len(v)}" for k, v in summary.splits.items())
    console.print(
        f"{summary.n_files} videos, {summary.bytes / 1e6:.1f} MB in {seconds:.1f} s; "
        f"pairs per split: {splits}; ground truth: {escape(str(summary.out / 'ground_truth.json'))}"
    )


def _pairs(out, seed, n, crop, faces, family_options, compression, overwrite) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ffmask.errors import FFMaskError
    from ffmask.pipeline import MAX_CROP_SIZE
    from ffmask.synth import tree
    from ffmask.synth.pairs import MAX_PAIRS, build_pairs

    if n > MAX_PAIRS:  # --pairs 10000000 would fill disks for days
        raise typer.BadParameter(f"at most {MAX_PAIRS} (about 375 kB and 0.13 CPU-seconds each), got {n}",
                                 param_hint="--pairs")
    if crop > MAX_CROP_SIZE:  # a typo such as 25600 would die of memory in OpenCV
        raise typer.BadParameter(f"at most {MAX_CROP_SIZE} pixels, got {crop}", param_hint="--crop")
    try:
        comps = tree.parse_compressions(compression)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--compression") from None
    console = Console()
    ids = [f.strip() for f in faces.split(",") if f.strip()] if faces else None
    try:
        with Progress(TextColumn("[bold]synth pairs[/bold]"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
            task = bar.add_task("", total=n)
            summary = build_pairs(out, seed=seed, n=n, identities=ids, compressions=comps, size=crop,
                                  overwrite=overwrite, **family_options,
                                  progress=lambda done, total, label: bar.update(task, completed=done,
                                                                                 description=label))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except FFMaskError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    table = Table(title=f"ffmask synth --pairs -> {escape(str(summary.out))}", title_justify="left")
    table.add_column("region/operation/blend")
    table.add_column("samples", justify="right")
    for name, count in sorted(summary.families.items()):
        table.add_row(name, str(count))
    console.print(table)
    console.print(f"{summary.samples} samples x {len(comps)} compressions in {summary.seconds:.1f} s "
                  f"({summary.redrawn} draws redone for an empty change)")
