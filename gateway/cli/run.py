"""`dockgate run`: the gateway daemon."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML configuration (see config/dockgate.example.toml)."
    ),
    check: bool = typer.Option(False, "--check", help="Validate the configuration and exit."),
) -> None:
    """Run the gateway until SIGTERM or SIGINT (environment: DOCKGATE_<TABLE>__<FIELD>)."""
    import asyncio

    from dockgate.gateway.daemon.settings import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if check:
        typer.echo("configuration is valid")
        return

    from dockgate.gateway.daemon.app import Daemon
    from dockgate.gateway.daemon.logs import configure_logging

    configure_logging(settings.logging.format, settings.logging.level)
    try:
        daemon = Daemon(settings)
    except Exception as exc:  # a part that cannot even be built: say which and why
        typer.echo(f"cannot start: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    asyncio.run(daemon.run())
