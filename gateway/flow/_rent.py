"""May this rider rent here, and which spot opens: the dashboard's rent settings, applied.

Rider checks come first (blocked, first purchase, credit, simultaneous rentals); then the
docked vehicles are tried from the highest battery down with the rules engine's
``check_rent`` at the station's position (battery, border, GBFS no-start zones).
"""

from __future__ import annotations

from dataclasses import dataclass

from dockgate.gateway.rules import RulesEngine, VehicleState
from dockgate.gateway.rules.pricing import pricing_at
from dockgate.gateway.store import Rider, Spot, Station, Store, Vehicle


@dataclass(frozen=True, slots=True)
class Choice:
    """The spot to open and the vehicle in it."""

    spot_id: int
    spot: int
    vehicle_id: int
    serial: str
    battery: int


def unlock_price_cents(engine: RulesEngine, at: float) -> int:
    """The unlock price now (cents), 0 when the bundle has no pricing window for ``at``."""
    b = engine.bundle
    p = pricing_at(b.config.pricing, at, b.timezone)
    return round(p.unlock_price * 100) if p is not None else 0


def rider_refusal(rider: Rider, engine: RulesEngine, active: int, at: float) -> str | None:
    """Why this rider may not start a rental now, or None."""
    if rider.blocked:
        return "blocked"
    rs = engine.bundle.config.rent_settings
    if rs is not None and rs.first_purchase_required and not rider.first_purchase_done:
        return "first_purchase_required"
    if rider.credit <= 0 or rider.credit < unlock_price_cents(engine, at):
        return "no_credit"
    if rs is not None and active >= rs.max_simultaneous_rented_vehicle:
        return "max_rentals"
    return None


def choose_spot(
    store: Store,
    engine: RulesEngine,
    station: Station,
    active: int,
    reserved: set[int],
    at: float,
) -> tuple[Choice | None, str | None]:
    """The docked vehicle with the highest battery that may be rented, or a refusal."""
    candidates: list[tuple[Spot, Vehicle]] = []
    for spot in store.topology.spots(station.id):
        if spot.vehicle_id is None or spot.id in reserved or spot.state != "occupied":
            continue
        vehicle = store.vehicles.get(spot.vehicle_id)
        if vehicle.trip_id is None:
            candidates.append((spot, vehicle))
    candidates.sort(key=lambda sv: (-(sv[1].battery or 0), sv[0].number))
    refusal = "no_vehicle"
    for spot, vehicle in candidates:
        battery = int(vehicle.battery or 0)
        where = (station.lat, station.lon, at, 0.0, 0.0)  # at the station, at rest
        state = VehicleState(
            vehicle.serial_number, *where, battery, True, vehicle_type_id=vehicle.vehicle_type
        )
        ok, reasons = engine.check_rent(state, active, at)
        if ok:
            return Choice(spot.id, spot.number, vehicle.id, vehicle.serial_number, battery), None
        if "rent_settings.max_simultaneous_rented_vehicle" in reasons:
            return None, "max_rentals"
        if "rent_settings.min_battery_to_rent" in reasons:
            return None, "no_vehicle"  # sorted by battery: no other will do
        refusal = "rent_not_allowed_here"
    return None, refusal
