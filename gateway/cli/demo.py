"""`dockgate demo`: the whole system on embedded defaults, playing a scripted day."""

from __future__ import annotations

import typer


def demo(
    once: bool = typer.Option(
        False, "--once", help="Play the day once and exit (0 only if every step passed)."
    ),
    no_ui: bool = typer.Option(
        False, "--no-ui", help="Plain lines instead of the live table (automatic without a TTY)."
    ),
    speed: float = typer.Option(
        30.0, "--speed", help="Simulated seconds per real second for the fleet (1-120)."
    ),
    break_step: str | None = typer.Option(
        None,
        "--break-step",
        help="Self-test of the checks: make this step fail on purpose (clone-replay, catch-up).",
    ),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="Two nodes on a PostgreSQL the demo starts; the leader is killed mid-day and the"
        " standby takes over.",
    ),
) -> None:
    """Start Mosquitto, pcscd, the gateway and a simulated fleet; play a scripted day."""
    from dockgate.gateway.demo import DemoOptions, run_cluster_demo, run_demo

    options = DemoOptions(
        once=once, ui=not no_ui, speed=speed, break_step=break_step, cluster=cluster
    )
    try:
        options.check()
    except ValueError as exc:
        typer.echo(f"dockgate demo: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_cluster_demo(options) if cluster else run_demo(options))
