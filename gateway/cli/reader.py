"""`dockgate reader`: NFC readers: list them and watch taps."""

import typer

app = typer.Typer(help="NFC readers: list them and watch taps.", no_args_is_help=True)
