"""`dockgate rules`: The local rules engine: check bundles, explain what applies where."""

import typer

app = typer.Typer(
    help="The local rules engine: check bundles, explain what applies where.", no_args_is_help=True
)
