import typer

app = typer.Typer(help="Train the FoCus map generator and evaluators.", no_args_is_help=True)
