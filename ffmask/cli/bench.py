import typer

app = typer.Typer(help="Benchmarks against ground truth.", no_args_is_help=True)
