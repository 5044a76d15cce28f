"""``ffmask info`` and ``ffmask preview``: look at what a run wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def info(
    directory: Path = typer.Argument(..., help="Shard directory (or one .h5 file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise shards: faces, labels, splits, map coverage, manifest outcomes, problems.

    Exits with status 1 when there is a problem (the readable rest is
    summarised first): a shard fails the schema check or cannot be read, the
    manifest names a shard that is gone, a shard holds videos the manifest
    lists as skipped or in another shard (a copy: faces counted twice), or a
    manifest line is malformed.
    """
    from ffmask.shards import summarize_shards
    from ffmask.shards.summary import summary_problems

    summary = summarize_shards(directory)
    problems = summary["problems"] = summary_problems(directory, summary)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_summary(directory, summary)
    if problems:
        raise typer.Exit(1)


def preview(
    directory: Path = typer.Argument(..., help="Shard directory (or one .h5 file)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    maps: Optional[str] = typer.Option(None, "--maps", help="Comma-separated maps to show (default: every map the shards share)."),
    rows: int = typer.Option(6, "--rows", min=1, max=64, help="Faces to show, shared between real and fake."),
    seed: int = typer.Option(0, "--seed", help="Which faces are picked."),
    cell: int = typer.Option(160, "--cell", min=32, max=1024, help="Side of each tile in pixels."),
) -> None:
    """Write a contact sheet: a few real and fake faces, each next to its maps."""
    from ffmask.shards.summary import preview_faces, readable_shards
    from ffmask.viz import contact_sheet, write_png

    names = None if maps is None else [m.strip() for m in maps.split(",") if m.strip()]
    shards, unreadable = readable_shards(directory)
    for why in unreadable.values():  # a look at the other shards still helps; `info` lists the bad ones
        typer.echo(f"Warning: skipped an unreadable shard: {why}", err=True)
    faces, kinds = preview_faces(shards, names, rows=rows, seed=seed)
    sheet = contact_sheet(faces, kinds, cell=cell)
    write_png(out, sheet)
    typer.echo(f"wrote {out} ({len(faces)} faces x {1 + len(kinds)} columns, {sheet.shape[1]}x{sheet.shape[0]} px)")


def _print_summary(directory: Path, s: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    overview = Table(title=f"Shards in {escape(str(directory))}", show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    rows = [
        ("shards", f"{s['shards']}" + (f" (+{s['unfinished']} unfinished .tmp)" if s["unfinished"] else "")
         + (f" ({len(s['unreadable'])} unreadable, not counted below)" if s["unreadable"] else "")),
        ("size", _human_bytes(s["bytes"])),
        ("faces", s["faces"]),
        ("videos", s["videos"]),
        ("real / fake / unlabelled", f"{s['real']} / {s['fake']} / {s['unknown']}"),
        ("crop size", _crop_sizes(s["by_crop_size"])),
    ]
    for key, value in rows:
        overview.add_row(key, escape(str(value)))
    console.print(overview)

    breakdown = Table(title="Faces by")
    for col in ("field", "value", "faces"):
        breakdown.add_column(col, justify="right" if col == "faces" else "left")
    for field in ("manipulation", "compression", "split"):
        for value, count in s[f"by_{field}"].items():
            breakdown.add_row(field, escape(value) if value else "(none)", str(count))
    console.print(breakdown)

    if s["maps"]:
        maps = Table(title="Maps (coverage: faces with any positive pixel)")
        for col in ("map", "kind", "faces", "coverage", "fake coverage", "mean / area", "fake mean / area"):
            maps.add_column(col, justify="left" if col in ("map", "kind") else "right")
        for name, m in s["maps"].items():
            if m["kind"] == "noise":
                maps.add_row(escape(name), m["kind"], str(m["faces"]), "", "", f"|r| {_num(m['mean_abs'])}", "")
                continue
            mean, fake_mean = ("area", "fake_area") if m["kind"] == "mask" else ("mean", "fake_mean")
            maps.add_row(escape(name), m["kind"], str(m["faces"]), _pct(m["coverage"]), _pct(m.get("fake_coverage")),
                         _num(m[mean]), _num(m[fake_mean]))
        console.print(maps)
    for name, mean in s["extras"].items():
        console.print(f"extra [bold]{escape(name)}[/]: mean {_num(mean)}")

    manifest = s["manifest"]
    if manifest is None:
        console.print("no manifest.jsonl beside the shards")
    else:
        console.print(f"manifest: {manifest['videos']} videos, [green]{manifest['ok']} ok[/], "
                      f"[yellow]{manifest['skipped']} skipped[/]")
        if manifest["skipped_by_reason"]:
            reasons = Table(title="Skipped videos by reason")
            reasons.add_column("reason")
            reasons.add_column("videos", justify="right")
            for reason, count in manifest["skipped_by_reason"].items():
                reasons.add_row(escape(reason), str(count))
            console.print(reasons)
        changed = manifest.get("person_changes", {})
        if changed:
            shown = ", ".join(f"{v} (frame {', '.join(map(str, f))})" for v, f in list(changed.items())[:5])
            console.print(f"[yellow]{len(changed)} video(s) cut from one person to another[/]: {escape(shown)}"
                          f"{' ...' if len(changed) > 5 else ''}; their faces are of several people under one "
                          "video id (manifest: person_changes)")
        if manifest["missing_shards"]:  # each is under problems, below
            console.print(f"[red]the manifest names {len(manifest['missing_shards'])} missing shard(s): "
                          f"{escape(', '.join(manifest['missing_shards']))}[/]")
        for shard, lack in manifest.get("unlisted_shards", {}).items():
            if lack["listed_elsewhere"]:
                continue  # a copy counting faces twice: under problems, below
            if lack.get("another_run"):
                other = lack["another_run"]
                console.print(f"[yellow]{escape(shard)} holds {lack['videos']} video(s) ({lack['faces']} faces) of "
                              f"another run (dataset {escape(repr(other['dataset']))} under "
                              f"{escape(str(other['root']))}, by its own run config), copied in: readers take it with "
                              "this run's shards, and a resume keeps it[/]")
                continue
            console.print(f"[red]{escape(shard)} holds {lack['videos']} video(s) ({lack['faces']} faces) the manifest "
                          "does not list there (a run stopped before writing their lines); rerun the annotate "
                          "command: a resume will redo them[/]")
    problems = s.get("dataset_problems")
    if problems and problems["count"]:
        console.print(f"[yellow]dataset problems: {problems['count']} thing(s) under the dataset root were not "
                      f"annotated ({escape(problems['path'])})[/]")
        for reason, count in problems["by_reason"].items():
            console.print(f"  [yellow]- {escape(reason)}: {count}[/]", highlight=False)
    for path, found in s["problems"].items():
        console.print(f"[red]{escape(path)}: {len(found)} problem(s)[/]")
        for problem in found:
            console.print(f"  [red]- {escape(problem)}[/]", highlight=False)


def _crop_sizes(by_size: dict) -> str:
    """``128 px``, or every size with its faces when shards of other runs were put together."""
    if len(by_size) <= 1:
        return "".join(f"{size} px" for size in by_size) or "-"
    return ", ".join(f"{size} px ({n} faces)" for size, n in by_size.items()) + ": crops of several sizes (train " \
        "refuses them together, export deepfakebench needs --size; annotate them again at one --size)"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"
