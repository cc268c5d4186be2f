"""`dockgate sim`: Firmware simulators: stations, scooters, a whole fleet."""

import typer

app = typer.Typer(
    help="Firmware simulators: stations, scooters, a whole fleet.", no_args_is_help=True
)
