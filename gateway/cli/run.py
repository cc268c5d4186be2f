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
    import gc
    import sys

    gc.disable()  # start-up makes long-lived objects only: ``settle_collector`` turns it on

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
    settle_collector()
    # The MQTT network thread and the event loop share the interpreter: while a backlog
    # drains, the network thread waits up to this interval for it after every system call,
    # so a command's reply waits as long to be read (bench/ingest.py's latency row: command
    # RTT mean 20 ms at the default 5 ms, 2.8 at 1 ms, 2.1-2.5 at 0.2 ms; the drain rate is
    # the same at 1 and 0.2 ms).
    sys.setswitchinterval(0.0002)
    asyncio.run(daemon.run())


def settle_collector() -> None:
    """Keep the cyclic garbage collector off the objects start-up made, and run it less often.

    Modules, classes and the built daemon live as long as the process: frozen, no collection
    scans them again. Device messages make tens of thousands of short-lived acyclic objects a
    second; at the default threshold (700) the collector ran every few messages.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    gc.enable()
