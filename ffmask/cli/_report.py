"""Rich progress bars and summary tables for long commands."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


class AnnotateProgress:
    """Two bars, videos and faces, advanced as each shard lands."""

    def __init__(self):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._videos = self._faces = None

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def plan(self, videos: int, tasks: int, total_tasks: int, videos_done: int = 0) -> None:
        if videos_done:
            console.print(f"Resuming: {videos_done} of {videos_done + videos} videos already done "
                          f"(in {total_tasks - tasks} shards); {videos} to do in {tasks} new shards.")
        self._videos = self._progress.add_task("videos", total=videos)
        self._faces = self._progress.add_task("faces written", total=None)

    def advance(self, result) -> None:
        self._progress.advance(self._videos, len(result.entries))
        self._progress.advance(self._faces, result.faces)


def print_annotate_summary(report) -> None:
    out = Console()
    table = Table(title=f"ffmask annotate → {escape(str(report.out))}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("videos ok", str(report.videos.get("ok", 0)))
    changed = report.person_changes
    if changed:
        table.add_row("videos ok, changing person (manifest: person_changes)", str(len(changed)))
    for reason, n in sorted(report.skip_reasons.items()):
        table.add_row(f"videos skipped: {escape(reason)}", str(n))
    if report.tasks_done_before:
        table.add_row("shards already done (resumed)", f"{report.tasks_done_before}/{report.tasks_total}")
    if report.redone_shards:
        table.add_row("shards redone (missing or damaged)", str(len(report.redone_shards)))
    table.add_row("faces written", str(report.faces))
    table.add_row("time", f"{report.wall:.1f} s")
    table.add_row("throughput", f"{report.faces_per_second:.1f} faces/s")
    total = sum(report.seconds.values()) or 1.0
    for stage in ("decode", "detect", "identity", "crop", "targets", "write"):
        if stage in report.seconds:
            table.add_row(f"time share: {stage}", f"{100 * report.seconds[stage] / total:.0f}%")
    out.print(table)
    if report.coverage:
        cov = Table(title="map coverage (masks: share of face marked; maps: mean value)")
        cov.add_column("method")
        cov.add_column("fake faces", justify="right")
        cov.add_column("mean (fake)", justify="right")
        cov.add_column("real faces", justify="right")
        cov.add_column("mean (real)", justify="right")
        unlabelled = any(v[5] for v in report.coverage.values())
        if unlabelled:
            cov.add_column("unlabelled faces", justify="right")
            cov.add_column("mean (unlabelled)", justify="right")
        for name, (sf, nf, sr, nr, su, nu) in report.coverage.items():
            row = [escape(name), str(nf), f"{sf / nf:.3f}" if nf else "-", str(nr), f"{sr / nr:.3f}" if nr else "-"]
            if unlabelled:
                row += [str(nu), f"{su / nu:.3f}" if nu else "-"]
            cov.add_row(*row)
        out.print(cov)
    for p in report.problems:
        console.print(f"[yellow]dataset problem:[/] {escape(str(p))}")
    for shard in report.redone_shards:
        console.print(f"[yellow]resume: shard[/] {escape(str(shard))}")
    for line in report.redone_videos:
        console.print(f"[yellow]resume: video[/] {escape(str(line))}")
    if changed:
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        console.print(f"[yellow]{len(changed)} video(s) cut from one person to another[/] ({escape(shown)}): their "
                      "faces are of several people under one video id; the frames where each new person first "
                      "appears are the manifest's person_changes (split or label them by person, not by video)")
    if report.gone_videos:
        shown = ", ".join(report.gone_videos[:5]) + (" ..." if len(report.gone_videos) > 5 else "")
        console.print(f"[yellow]resume:[/] {len(report.gone_videos)} video(s) with faces in the shards are no longer "
                      f"in the dataset ({escape(shown)}: deleted, renamed or now in another split); their faces "
                      "stay in the shards: annotate into a new --out to leave them out")


def print_export_summary(report) -> None:
    """Frames and videos per DeepfakeBench label key and split, then what was skipped."""
    out = Console()
    table = Table(title=f"ffmask export deepfakebench → {escape(str(report.out))}")
    table.add_column("label key")
    for split in ("train", "val", "test"):
        table.add_column(f"{split} videos/frames", justify="right")
    for key in sorted({k for k, _ in report.counts}):
        table.add_row(key, *(f"{report.video_counts[(key, s)]}/{report.counts[(key, s)]}" for s in ("train", "val", "test")))
    out.print(table)
    videos, json_files = getattr(report, "replaced", (0, 0))
    if videos or json_files:
        out.print(f"replaced the earlier export there: deleted the frames, masks and landmarks of its {videos} "
                  f"video(s) and its {json_files} dataset JSON file(s) first")
    out.print(f"{report.faces} faces of {report.videos} videos; masks from "
              f"{report.mask_map or 'no mask map (all zero)'}; {report.no_landmarks} faces without landmarks (zeros)")
    if report.unsplit_videos:
        out.print(f"[yellow]{report.unsplit_videos} videos had no split: listed under train, val and test[/]")
    for reason, n in sorted(report.skipped.items()):
        out.print(f"[yellow]skipped {n} faces:[/] {escape(reason)}")
    if report.missing_shards:
        names = ", ".join(p.name for p in report.missing_shards)
        out.print(f"[red]not exported: the manifest names {len(report.missing_shards)} shard(s) that are missing "
                  f"({escape(names)}); rerun the annotate command to redo them, then export again[/]")
    from ffmask.shards.manifest import being_written_line

    for folder, pid in getattr(report, "being_written", {}).items():
        out.print(f"[red]{escape(being_written_line(folder, pid, 'export'))}[/]")
    for path in report.json_files:
        out.print(f"wrote {escape(str(path))}")
