"""`dockgate sim`: firmware simulators: stations, scooters, a whole fleet, over MQTT."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Firmware simulators: stations, scooters, a whole fleet.", no_args_is_help=True
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _passwords(path: Path | None) -> dict[str, str] | None:
    """Read ``username:password`` lines (a plain mosquitto password list) for the devices."""
    if path is None:
        return None
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        _fail(f"cannot read password file {path}: {exc.strerror}")
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, pw = line.partition(":")
        if not sep or not user:
            _fail(f"password file line {n}: expected username:password")  # never echo it
        out[user.strip()] = pw.strip()
    return out


def _broker(text: str | None, passwords: Path | None):  # -> (Broker, Mosquitto | None)
    from dockgate.sim.device_base import Broker

    if text is None:
        from dockgate.sim.services.mosquitto import Mosquitto

        broker = Mosquitto(persistence=False)
        broker.start()
        typer.echo(f"started a private mosquitto on {broker.host}:{broker.port}", err=True)
        return Broker(broker.host, broker.port), broker
    try:
        return Broker.parse(text, _passwords(passwords)), None
    except ValueError as exc:
        _fail(str(exc))
        raise  # unreachable


def _fault_plan(spec: str | None, seed: int):
    from dockgate.sim.faults import FaultPlan, FaultSpecError

    try:
        return FaultPlan.parse(spec, seed=seed)
    except FaultSpecError as exc:
        _fail(str(exc))
        raise


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        import orjson

        typer.echo(orjson.dumps(summary).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dockgate sim fleet")
    table.add_column("what")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for key in ("stations", "vehicles", "online", "riding", "docked", "faults_plan"):
        table.add_row(key, "", str(summary[key]))
    for group in ("sent", "received", "faults"):
        for kind, count in summary[group].items():  # type: ignore[union-attr]
            table.add_row(group, kind, str(count))
    for key in ("wall_s", "sim_s", "rss_mb", "cpu_s"):
        if key in summary:
            table.add_row(key, "", f"{summary[key]:.1f}")
    Console().print(table)


@app.command()
def fleet(
    stations: int = typer.Option(2, min=0, max=500, help="Docking stations."),
    vehicles: int = typer.Option(10, min=0, max=20000, help="Scooters."),
    spots: int = typer.Option(10, min=1, max=64, help="Spots per station."),
    broker: str | None = typer.Option(
        None, help="HOST:PORT of the broker; without it a private mosquitto is started."
    ),
    passwords: Path | None = typer.Option(
        None, help="File of username:password lines, one per device (for an auth broker)."
    ),
    network: int = typer.Option(1, min=1, help="Network id in the topic tree."),
    faults: str | None = typer.Option(
        None,
        help="none | all | comma list of lost-ack=P, slow-ack=P, jam=P, no-answer=P, "
        "disconnect=R, malformed=R, oversized=R, spoofed=R (P per command, R per device-hour).",
    ),
    duration: float = typer.Option(60.0, min=0.1, help="Wall-clock seconds to run."),
    time_scale: float = typer.Option(1.0, min=0.01, max=10000, help="Simulated s per wall s."),
    seed: int = typer.Option(1, help="Random seed (routes, faults)."),
    report_every: float = typer.Option(10.0, min=0.5, help="Progress line every N wall s."),
    autopilot: bool = typer.Option(True, help="Play a day: riders, trips, docking."),
    json_out: bool = typer.Option(False, "--json", help="Print the final counts as JSON."),
) -> None:
    """Run a whole fleet in one process and print what was sent and received."""
    import asyncio
    import time

    import psutil

    from dockgate.sim.fleet import FleetSim

    plan = _fault_plan(faults, seed)
    addr, private = _broker(broker, passwords)
    proc = psutil.Process()

    async def _main() -> dict:
        sim = FleetSim(
            addr, stations=stations, vehicles=vehicles, spots=spots, network=network,
            time_scale=time_scale, faults=plan, seed=seed,
        )  # fmt: skip
        t0, s0 = time.monotonic(), sim.clock.now()
        await sim.start()
        typer.echo(f"{len(sim.devices)} devices online in {time.monotonic() - t0:.1f}s", err=True)
        runner = asyncio.create_task(sim.run(duration, autopilot=autopilot))
        try:
            while not runner.done():
                await asyncio.wait({runner}, timeout=report_every)
                s = sim.summary()
                sent = sum(s["sent"].values())  # type: ignore[union-attr]
                got = sum(s["received"].values())  # type: ignore[union-attr]
                typer.echo(
                    f"t={time.monotonic() - t0:6.1f}s online={s['online']} riding={s['riding']}"
                    f" docked={s['docked']} sent={sent} received={got}"
                    f" rss={proc.memory_info().rss / 2**20:.0f}MB",
                    err=True,
                )
            runner.result()
        finally:
            runner.cancel()
            summary = sim.summary()
            summary["wall_s"] = time.monotonic() - t0
            summary["sim_s"] = sim.clock.now() - s0
            await sim.stop()
        return summary

    try:
        summary = asyncio.run(_main())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if private is not None:
            private.cleanup()
    cpu = proc.cpu_times()
    summary["rss_mb"] = proc.memory_info().rss / 2**20
    summary["cpu_s"] = cpu.user + cpu.system
    _print_summary(summary, json_out)


@app.command()
def scooter(
    vehicle_id: str = typer.Argument(..., help="Serial number, 6-10 letters or digits."),
    broker: str = typer.Option(..., help="HOST:PORT of the broker."),
    passwords: Path | None = typer.Option(None, help="File of username:password lines."),
    network: int = typer.Option(1, min=1),
    route: str | None = typer.Option(None, help="Ride a demo route (see `dockgate sim routes`)."),
    duration: float = typer.Option(60.0, min=0.1, help="Wall-clock seconds to run."),
    time_scale: float = typer.Option(1.0, min=0.01, max=10000),
    battery: float = typer.Option(90.0, min=0, max=100),
) -> None:
    """Run one scooter: it answers commands and reports telemetry; optionally rides a route."""
    import asyncio

    from dockgate.gateway.protocol import TopicError
    from dockgate.sim.routes import default_routes
    from dockgate.sim.scooter import ScooterSim
    from dockgate.sim.simclock import ScaledClock

    routes = {r.name: r for r in default_routes()}
    if route is not None and route not in routes:
        _fail(f"unknown route {route!r}; known: {', '.join(routes)}")
    addr, _ = _broker(broker, passwords)

    async def _main() -> dict:
        try:
            sim = ScooterSim(vehicle_id, addr, network=network, battery=battery,
                             clock=ScaledClock(time_scale))  # fmt: skip
        except TopicError as exc:
            _fail(str(exc))
        async with sim:
            if route is not None:
                sim.ride(routes[route], unlock=True)
            await asyncio.sleep(duration)
            return sim.counters.as_dict()

    typer.echo(asyncio.run(_main()))


@app.command()
def station(
    station_id: str = typer.Argument(..., help="Station id."),
    broker: str = typer.Option(..., help="HOST:PORT of the broker."),
    passwords: Path | None = typer.Option(None, help="File of username:password lines."),
    network: int = typer.Option(1, min=1),
    spots: int = typer.Option(8, min=1, max=64),
    dock: list[str] = typer.Option([], help="SPOT=VEHICLE to dock at start (repeatable)."),
    duration: float = typer.Option(60.0, min=0.1, help="Wall-clock seconds to run."),
    time_scale: float = typer.Option(1.0, min=0.01, max=10000),
) -> None:
    """Run one docking station: it answers spot commands and reports its spots."""
    import asyncio

    from dockgate.gateway.protocol import TopicError
    from dockgate.sim.simclock import ScaledClock
    from dockgate.sim.station import StationError, StationSim

    addr, _ = _broker(broker, passwords)

    async def _main() -> dict:
        try:
            sim = StationSim(station_id, addr, network=network, spots=spots,
                             clock=ScaledClock(time_scale))  # fmt: skip
            for item in dock:
                n, sep, vid = item.partition("=")
                if not sep or not n.isdigit():
                    _fail(f"--dock wants SPOT=VEHICLE, got {item!r}")
                sim.dock(int(n), vid)
        except (TopicError, StationError) as exc:
            _fail(str(exc))
        async with sim:
            await asyncio.sleep(duration)
            return sim.counters.as_dict()

    typer.echo(asyncio.run(_main()))


@app.command()
def routes() -> None:
    """List the demo city's routes."""
    from dockgate.sim.routes import default_routes

    for r in default_routes():
        kind = "loop" if r.loop else "line"
        typer.echo(f"{r.name:16} {kind}  {r.length_m / 1000:5.2f} km  {len(r.points)} points")
