"""``ffmask export deepfakebench SHARDS --out DIR``: shards in another ecosystem's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Write shards in the layout other tools read.", no_args_is_help=True)


@app.command("deepfakebench")
def deepfakebench(
    shards: list[Path] = typer.Argument(..., help="Shard directories or .h5 files (e.g. a c23 and a c40 run)."),
    out: Path = typer.Option(..., "--out", "-o", help="New directory: <Dataset>/.../frames|masks|landmarks and "
                             "dataset_json/<Name>.json (DeepfakeBench's dataset_json_folder)."),
    mask_map: Optional[str] = typer.Option(None, "--mask-map", help="Mask map written as masks/: official, hull, "
                                           "mscc or diff@T (default: the first of official, hull, mscc present)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="ff++, celeb-df, dfdc or dfdcp "
                                          "(default: what the annotate run recorded: run.json beside the shards, else the shards' own "
                                          "run config)."),
    size: Optional[int] = typer.Option(None, "--size", help="Side of the written frames (default: the shards' "
                                       "crop size; shards of several crop sizes need it). DeepfakeBench resizes frames to its resolution (256) but "
                                       "not landmarks: match it when a detector uses landmarks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out, replacing "
                                   "an earlier export there: what it recorded writing (ffmask-export.jsonl) is deleted "
                                   "first; other files stay, and export files no record names are refused."),
) -> None:
    """DeepfakeBench: frames, masks and 81-point landmarks per video, plus its dataset JSON files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ffmask.cli._report import console, print_export_summary
    from ffmask.export import export_deepfakebench

    columns = (TextColumn("[bold]faces"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Erased when it stops, and not drawn where stderr is no terminal (rich would leave its
    # last state there): an error is then the one line printed.
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        bar = progress.add_task("faces", total=None)
        report = export_deepfakebench(
            shards, out, mask_map=mask_map, dataset=dataset, size=size, overwrite=overwrite,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    print_export_summary(report)
