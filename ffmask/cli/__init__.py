"""The ``ffmask`` command line: parse options, call the library, print results.

Each subcommand lives in its own module and imports its heavy dependencies
inside the command body, so ``ffmask --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ffmask import __version__
from ffmask.errors import FFMaskError

app = typer.Typer(
    name="ffmask",
    help="Turn face-forgery video datasets into pixel-level supervision in HDF5 shards, "
    "and train the models that make and use it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ffmask {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """ffmask: frames -> faces -> supervision maps -> HDF5 shards."""


def _register() -> None:
    from ffmask.cli import annotate, bench, export, inspect, shards, synth, train

    app.command("synth")(synth.synth)
    app.add_typer(annotate.app, name="annotate")
    app.command("info")(inspect.info)
    app.command("preview")(inspect.preview)
    app.add_typer(train.app, name="train")
    app.add_typer(bench.app, name="bench")
    app.add_typer(export.app, name="export")
    app.add_typer(shards.app, name="shards")


_register()


def _register_evaluators() -> None:
    # Kept apart from _register so that branches adding commands there merge cleanly.
    from ffmask.cli import evaluate

    app.command("evaluate")(evaluate.evaluate)


_register_evaluators()


def main() -> None:
    """Console-script entry point: user errors become one line on stderr, exit 2."""
    try:
        app()
    except FFMaskError as exc:
        typer.secho(f"Error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside Typer's own handling (e.g. while it parses)
        typer.secho("Interrupted.", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if _interrupted(exc):  # Typer turns Ctrl-C into a silent exit 130: say it
            typer.secho("Interrupted.", err=True)
        raise


def _interrupted(exc: SystemExit) -> bool:
    """Whether ``exc`` is Typer's exit 130 for a KeyboardInterrupt (its ``Exit(130)`` raised from one)."""
    if exc.code != 130:
        return False
    cause = exc.__context__
    for _ in range(8):  # Typer's chain is two links: SystemExit <- Exit <- KeyboardInterrupt
        if cause is None or isinstance(cause, KeyboardInterrupt):
            break
        cause = cause.__cause__ or cause.__context__
    return isinstance(cause, KeyboardInterrupt)
