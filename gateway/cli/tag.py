"""`dockgate tag`: NTAG 424 DNA SUN messages: verify and simulate."""

import typer

app = typer.Typer(help="NTAG 424 DNA SUN messages: verify and simulate.", no_args_is_help=True)
