"""``ffmask shards convert``: rewrite version-1 shards as compact version-2 shards."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Maintain shard files.", no_args_is_help=True)


@app.command("convert")
def convert(
    paths: List[Path] = typer.Argument(..., help="Shard directories or .h5 files."),
    image_codec: str = typer.Option("gradient", "--image-codec",
                                    help="gradient (lossless, default: the smallest, as fast to read as delta), delta "
                                         "(lossless, the earlier default), png (lossless, slower), blosc, raw, "
                                         "or jpeg (lossy; needs --jpeg-quality)."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", min=1, max=100,
                                               help="JPEG quality for --image-codec jpeg (recorded in the shard)."),
) -> None:
    """Rewrite schema-1 shards in schema 2, and re-encode schema-2 shards of another image codec or
    map layout (or written before map packings), each atomically (a killed run leaves every shard
    readable). Holds each directory's run.lock: refused while an annotate run writes there."""
    from rich.progress import Progress

    from ffmask.cli._report import console
    from ffmask.shards.convert import convert_shards
    from ffmask.shards.index import find_shards

    if image_codec == "jpeg" and jpeg_quality is None:
        raise typer.BadParameter("--image-codec jpeg is lossy: give --jpeg-quality explicitly")
    total = len(find_shards(paths))
    # The bar is erased when it stops (and not drawn at all where stderr is no terminal:
    # rich would leave its last state there), so that a failing shard's one-line error is
    # the last line; the table below reports a successful run.
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        bar = progress.add_task("shards", total=total)
        results = convert_shards(paths, image_codec=image_codec, jpeg_quality=jpeg_quality,
                                 on_shard=lambda r: progress.advance(bar))
    _print_table(results)


def _print_table(results) -> None:
    from rich.table import Table

    from ffmask.cli._report import console

    done = [r for r in results if r.converted]
    faces = sum(r.faces for r in done)
    before, after = sum(r.bytes_before for r in done), sum(r.bytes_after for r in done)
    table = Table(title="shards convert", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("converted", str(len(done)))
    table.add_row("already version 2 as asked", str(len(results) - len(done)))
    table.add_row("faces", str(faces))
    table.add_row("bytes before", f"{before / 2**20:.1f} MiB")
    table.add_row("bytes after", f"{after / 2**20:.1f} MiB")
    if faces:
        table.add_row("per face", f"{before / faces / 1024:.0f} KiB -> {after / faces / 1024:.0f} KiB")
    console.print(table)
