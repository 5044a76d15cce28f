"""``ffmask bench masks ROOT``: score map methods against true masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

app = typer.Typer(help="Benchmarks against ground truth.", no_args_is_help=True)


def _check_options(size: int, scale: float, detector: str, manipulations: Optional[str]) -> None:
    """The options the benchmark passes through to the pipeline, each blamed by name before any video is read
    (the library's ValueError is otherwise read as a bad --method; a giant --size ran out of memory)."""
    import math

    from ffmask.datasets.ffpp import parse_manipulations
    from ffmask.errors import FFMaskError
    from ffmask.faces import DETECTORS
    from ffmask.pipeline import MAX_CROP_SIZE

    if size > MAX_CROP_SIZE:
        raise typer.BadParameter(f"must be at most {MAX_CROP_SIZE} pixels, got {size}", param_hint="--size")
    if not math.isfinite(scale):
        raise typer.BadParameter(f"must be a finite number, got {scale}", param_hint="--scale")
    if detector not in DETECTORS:
        raise typer.BadParameter(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}",
                                 param_hint="--detector")
    try:
        parse_manipulations(manipulations)
    except FFMaskError as exc:
        raise typer.BadParameter(str(exc), param_hint="--manipulations") from None


@app.command("masks")
def masks(
    root: Path = typer.Argument(
        ..., help="FF++-style tree with mask videos (e.g. `ffmask synth`), or a pairs folder "
        "(`ffmask synth --pairs`).", show_default=False,
    ),
    out: Path = typer.Option(Path("bench_masks"), "--out", "-o",
                             help="Folder for masks.md, masks.json, masks_iou.png, masks_worst.png."),
    method: str = typer.Option("mscc,ssim,diff,diff@0.1,hull,hull-nolm,hull-rules,uniform,oracle,oracle+hull",
                               "--method", "-m",
                               help="Comma-separated pair methods returning a mask or a continuous map (suffix "
                                    "-nolm: without landmarks), 'focus' / 'fam' (a model-backed map of the fake alone), "
                                    "'uniform' (all-ones baseline), 'oracle' / 'oracle+hull' (per-face best "
                                    "threshold of the residual: the ceiling)."),
    compression: str = typer.Option("c23,c40", "--compression", "-c", help="Comma-separated subset of raw,c23,c40."),
    manipulations: Optional[str] = typer.Option(
        None, "--manipulations", help="Comma-separated manipulations (default: every one with masks)."),
    frames: int = typer.Option(8, "--frames", min=1, help="Evenly spaced frames per video."),
    size: int = typer.Option(224, "--size", min=16, help="Crop side in pixels."),
    scale: float = typer.Option(1.3, "--scale", min=1.0, help="Crop box relative to the face box."),
    detector: str = typer.Option("dlib", "--detector", help="Face detector: dlib or mtcnn."),
    threshold: float = typer.Option(0.1, "--threshold", min=0.0, max=1.0,
                                    help="Continuous maps count as manipulated where map > threshold."),
    tuned_on: Optional[list[Path]] = typer.Option(
        None, "--tuned-on", help="Pairs folder a method was tuned on (repeatable): only faces sharing no region, "
        "operation or person with it are scored (leave-families-out)."),
    worst: Optional[str] = typer.Option(None, "--worst", help="Method whose worst faces the contact sheet shows "
                                        "(default: the last method but the uniform baseline)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                              help="Checkpoint of the model-backed method scored (focus: default the bundled one; fam: "
                                              "any evaluator checkpoint, required); refused when no --method "
                                              "runs a model."),
    device: Optional[str] = typer.Option(
        None, "--device", help="Device for model-backed methods: cpu, cuda (default: cuda if present); refused when "
        "no --method runs a model."),
) -> None:
    """Score every map method on every fake face against the true mask.

    Per face: IoU, F1, precision and recall; per manipulation (or, for
    family forgeries, per region, operation, blend and strength) and
    compression: their means, the pooled pixel AUC and the best-threshold
    ceilings. Writes markdown tables, a JSON file with every score, bar
    charts and a contact sheet of the worst faces, and prints the summary.
    With --tuned-on, reports only families and people the tuning set lacks.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ffmask import fidelity
    from ffmask.errors import FFMaskError
    from ffmask.synth.tree import parse_compressions

    console = Console()
    from ffmask.options import usable_out_dir

    usable_out_dir(out)  # an unusable --out fails now (one line), not after the benchmark
    _check_options(size, scale, detector, manipulations)
    try:
        comps = parse_compressions(compression)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--compression") from None
    names = [m.strip() for m in method.split(",") if m.strip()]
    if worst is not None and worst not in names:
        raise typer.BadParameter(f"{worst!r} is not among --method {method!r}", param_hint="--worst")
    try:
        unused = fidelity.unused_model_options(names, checkpoint, device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--method") from None
    for option in unused:  # a pair method alone reads neither: the report would not say it was ignored
        raise typer.BadParameter(
            f"no method of {','.join(names)} runs a model (focus, fam), so it would change nothing; "
            "add one to --method or drop it", param_hint=f"--{option}")
    if worst is None:
        worst = next((n for n in reversed(names) if n != fidelity.UNIFORM and n not in fidelity.ORACLES), None)
    try:
        with Progress(TextColumn("[bold]decode+detect[/bold]"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
                      transient=True) as bar:
            task = bar.add_task("", total=None)

            def progress(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            result, paths = fidelity.bench_masks(
                root, out, methods=names, compressions=comps, manipulations=manipulations, frames=frames,
                size=size, scale=scale, detector=detector, threshold=threshold, worst_method=worst,
                checkpoint=checkpoint, device=device, progress=progress, tuned=tuned_on,
            )
    except json.JSONDecodeError as exc:  # a ValueError too, but no fault of --method
        raise FFMaskError(f"a JSON file the benchmark reads (ground_truth.json or pairs.json under {root}, or "
                          f"--tuned-on's) is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--method") from None
    except FFMaskError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    typer.echo(fidelity.to_markdown(result).split("### By")[0].strip())
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
