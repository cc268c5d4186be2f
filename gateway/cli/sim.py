"""`dockgate sim`: firmware simulators: stations, scooters, a whole fleet, over MQTT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dockgate.gateway.cli.options import with_options

if TYPE_CHECKING:
    from dockgate.sim.device_base import Broker
    from dockgate.sim.faults import FaultPlan
    from dockgate.sim.fleet import FleetSummary
    from dockgate.sim.services.mosquitto import Mosquitto

app = typer.Typer(
    help="Firmware simulators: stations, scooters, a whole fleet.", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
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


def _broker(text: str | None, passwords: Path | None) -> tuple[Broker, Mosquitto | None]:
    """The broker at ``text``, or a private Mosquitto started for this run (returned too)."""
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


def _fault_plan(spec: str | None, seed: int) -> FaultPlan:
    from dockgate.sim.faults import FaultPlan, FaultSpecError

    try:
        return FaultPlan.parse(spec, seed=seed)
    except FaultSpecError as exc:
        _fail(str(exc))


def _print_summary(summary: FleetSummary, run: dict[str, float], as_json: bool) -> None:
    if as_json:
        import orjson

        typer.echo(orjson.dumps({**summary, **run}).decode())
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
        for kind, count in summary[group].items():
            table.add_row(group, kind, str(count))
    for key, value in run.items():
        table.add_row(key, "", f"{value:.1f}")
    Console().print(table)


@dataclass(frozen=True, kw_only=True)
class FleetOptions:
    """The options of ``dockgate sim fleet``."""

    stations: Annotated[int, typer.Option(min=0, max=500, help="Docking stations.")] = 2
    vehicles: Annotated[int, typer.Option(min=0, max=20000, help="Scooters.")] = 10
    spots: Annotated[int, typer.Option(min=1, max=64, help="Spots per station.")] = 10
    broker: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of the broker; without it a private mosquitto is started."),
    ] = None
    passwords: Annotated[
        Path | None,
        typer.Option(help="File of username:password lines, one per device (for an auth broker)."),
    ] = None
    network: Annotated[int, typer.Option(min=1, help="Network id in the topic tree.")] = 1
    faults: Annotated[
        str | None,
        typer.Option(
            help="none | all | comma list of lost-ack=P, slow-ack=P, jam=P, no-answer=P, "
            "disconnect=R, malformed=R, oversized=R, spoofed=R (P per command, R per device-hour)."
        ),
    ] = None
    duration: Annotated[float, typer.Option(min=0.1, help="Wall-clock seconds to run.")] = 60.0
    time_scale: Annotated[
        float, typer.Option(min=0.01, max=10000, help="Simulated s per wall s.")
    ] = 1.0
    seed: Annotated[int, typer.Option(help="Random seed (routes, faults).")] = 1
    report_every: Annotated[float, typer.Option(min=0.5, help="Progress line every N wall s.")] = (
        10.0
    )
    autopilot: Annotated[bool, typer.Option(help="Play a day: riders, trips, docking.")] = True
    json_out: Annotated[bool, typer.Option("--json", help="Print the final counts as JSON.")] = (
        False
    )


@app.command()
@with_options(FleetOptions)
def fleet(opts: FleetOptions) -> None:
    """Run a whole fleet in one process and print what was sent and received."""
    import asyncio

    import psutil  # type: ignore[import-untyped]  # no types-psutil among the dev dependencies

    plan = _fault_plan(opts.faults, opts.seed)
    addr, private = _broker(opts.broker, opts.passwords)
    proc = psutil.Process()
    try:
        summary, run = asyncio.run(_run_fleet(opts, addr, plan, proc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if private is not None:
            private.cleanup()
    cpu = proc.cpu_times()
    run["rss_mb"] = proc.memory_info().rss / 2**20
    run["cpu_s"] = cpu.user + cpu.system
    _print_summary(summary, run, opts.json_out)


async def _run_fleet(
    opts: FleetOptions, addr: Broker, plan: FaultPlan, proc: Any
) -> tuple[FleetSummary, dict[str, float]]:
    """Run the fleet for ``opts.duration``, a progress line every ``opts.report_every``: its
    final summary and the wall and simulated seconds it ran."""
    import asyncio
    import time

    from dockgate.sim.fleet import FleetSim

    sim = FleetSim(
        addr, stations=opts.stations, vehicles=opts.vehicles, spots=opts.spots,
        network=opts.network, time_scale=opts.time_scale, faults=plan, seed=opts.seed,
    )  # fmt: skip
    t0, s0 = time.monotonic(), sim.clock.now()
    await sim.start()
    typer.echo(f"{len(sim.devices)} devices online in {time.monotonic() - t0:.1f}s", err=True)
    runner = asyncio.create_task(sim.run(opts.duration, autopilot=opts.autopilot))
    try:
        while not runner.done():
            await asyncio.wait({runner}, timeout=opts.report_every)
            s = sim.summary()
            sent, got = sum(s["sent"].values()), sum(s["received"].values())
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
        run = {"wall_s": time.monotonic() - t0, "sim_s": sim.clock.now() - s0}
        await sim.stop()
    return summary, run


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

    async def _main() -> dict[str, dict[str, int]]:
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

    async def _main() -> dict[str, dict[str, int]]:
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
