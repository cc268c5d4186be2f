"""`dockgate rules`: The local rules engine: check bundles, explain what applies where."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dockgate.gateway.rules import RuleBundle

app = typer.Typer(
    help="The local rules engine: check bundles, explain what applies where.", no_args_is_help=True
)


def _parse_at(at: str | None) -> float:
    import time
    from datetime import datetime

    if at is None:
        return time.time()
    try:
        return float(at)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise typer.BadParameter(
            "--at takes epoch seconds or an ISO 8601 / RFC 3339 time"
        ) from None


def _load(bundle: Path, as_json: bool) -> RuleBundle:
    import json

    from dockgate.gateway.rules import BundleError, load_bundle

    try:
        return load_bundle(bundle)
    except BundleError as exc:
        if as_json:
            typer.echo(json.dumps(exc.as_dict()))
        else:
            typer.echo(f"{bundle}: {len(exc.problems)} problem(s)", err=True)
            for p in exc.problems:
                typer.echo(f"  {p.location}: {p.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def explain(
    bundle: Path = typer.Argument(..., help="Dashboard-style bundle (.json/.toml) or GBFS file."),
    lat: float = typer.Option(..., "--lat", min=-90, max=90, help="Latitude, WGS 84 degrees."),
    lon: float = typer.Option(..., "--lon", min=-180, max=180, help="Longitude, WGS 84 degrees."),
    vehicle_type: str | None = typer.Option(None, "--vehicle-type", help="GBFS vehicle_type_id."),
    at: str | None = typer.Option(None, "--at", help="Time: epoch seconds or RFC 3339 (now)."),
    occupancy: list[str] = typer.Option(
        [], "--occupancy", help="Vehicles parked in a virtual parking now: ID=N (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print what applies at a position: network area, speed limit, ride rules, zones,
    virtual parkings with their capacity."""
    import json

    from dockgate.gateway.rules import explain as do_explain

    t = _parse_at(at)
    known: dict[int, int] = {}
    for item in occupancy:
        pid, _, n = item.partition("=")
        try:
            known[int(pid)] = int(n)
        except ValueError:
            raise typer.BadParameter("--occupancy takes ID=N, e.g. 12=4") from None
    b = _load(bundle, as_json)
    result = do_explain(b, lat, lon, vehicle_type, t, parking_occupancy=known.get)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key in (
        "bundle_version",
        "inside_network",
        "border_distance_m",
        "max_speed_kph",
        "ride_start_allowed",
        "ride_end_allowed",
        "ride_through_allowed",
        "station_parking",
        "parking_required",
    ):
        typer.echo(f"{key:22} {result[key]}")
    if result["ride_end_reasons"]:
        typer.echo(f"{'ride_end_reasons':22} {', '.join(result['ride_end_reasons'])}")
    typer.echo(f"{'zones':22} {', '.join(result['zones']) or '-'}")
    for q in result["virtual_parkings"]:
        occ = "occupancy unknown" if q["occupancy"] is None else f"{q['occupancy']} parked"
        full = " (full)" if q["full"] else ""
        typer.echo(
            f"{'virtual_parking':22} {q['id']} {q['name']}: capacity {q['capacity']}, {occ}{full}"
        )


@app.command()
def check(
    bundle: Path = typer.Argument(..., help="Dashboard-style bundle (.json/.toml) or GBFS file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Validate a bundle as a whole and list every problem (exit 1 if any), or every warning it
    was accepted with (exit 0)."""
    import json

    b = _load(bundle, as_json)
    parkings = [
        {"id": p.id, "name": p.name or f"virtual-parking-{p.id}", "capacity": p.capacity}
        for p in b.config.virtual_parkings
    ]
    capacity = sum(p.capacity for p in b.config.virtual_parkings)
    summary = {
        "ok": True,
        "version": b.version,
        "source": b.source,
        "speed_zones": len(b.config.speed_zones),
        "virtual_parkings": len(b.config.virtual_parkings),
        "parkings": parkings,
        "parking_capacity": capacity,
        "parking_required": b.config.parking_required,
        "gbfs_zones": len(b.gbfs.zones) if b.gbfs else 0,
        "border": b.config.border is not None,
        "problems": [],
        "warnings": [w.as_dict() for w in b.warnings],
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{bundle}: ok, version {b.version} ({b.source})")
        _print_warnings(b)
        if parkings:
            need = ", required to end a trip" if b.config.parking_required else ""
            typer.echo(f"  {len(parkings)} virtual parking(s), capacity {capacity}{need}")
            for p in parkings:
                note = " (no vehicle may be left here)" if p["capacity"] == 0 else ""
                typer.echo(f"    {p['id']} {p['name']}: capacity {p['capacity']}{note}")


SHOWN_LOCATIONS = 5  # per warning; ``--json`` lists them all


def _print_warnings(b: RuleBundle) -> None:
    """Every warning, with where it applies (the first few places, and how many more)."""
    if not b.warnings:
        return
    typer.echo(f"  {len(b.warnings)} warning(s), accepted anyway:")
    for w in b.warnings:
        typer.echo(f"    {w.code}: {w.message} ({len(w.locations)} place(s))")
        for loc in w.locations[:SHOWN_LOCATIONS]:
            typer.echo(f"      {loc}")
        more = len(w.locations) - SHOWN_LOCATIONS
        if more > 0:
            typer.echo(f"      ... and {more} more (--json lists every one)")
