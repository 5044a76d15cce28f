import typer

app = typer.Typer(help="Annotate a dataset into HDF5 shards.", no_args_is_help=True)
