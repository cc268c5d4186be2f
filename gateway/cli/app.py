"""Assembles the ``dockgate`` command from its sub-apps."""

from __future__ import annotations

import typer

from dockgate.gateway.cli import demo, devices, keys, reader, rules, run, sim, tag

app = typer.Typer(
    name="dockgate",
    help="Edge gateway for shared e-scooter and e-bike networks with docking stations.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(tag.app, name="tag")
app.add_typer(reader.app, name="reader")
app.add_typer(sim.app, name="sim")
app.add_typer(rules.app, name="rules")
app.add_typer(devices.app, name="devices")
app.add_typer(keys.app, name="keys")
app.command("run")(run.run)
app.command("demo")(demo.demo)


def main() -> None:
    """Console-script entry point."""
    app()
