"""The fleet as GBFS 3.0 lists it: vehicle types, stations, their status, parked vehicles.

Both station and vehicle feeds are built from one reading of the store (``FleetView``), so a
station's counts are always those of the vehicles ``vehicle_status`` places there. Vehicles on
a trip are never listed; a vehicle's public id is the store's ``gbfs_id``, drawn afresh at every
trip start and end so that trips cannot be linked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dockgate.gateway.rules.publish import rfc3339
from dockgate.gateway.store import Station, Store, Vehicle

FormFactor = Literal[
    "bicycle", "cargo_bicycle", "car", "moped", "scooter_standing", "scooter_seated", "other"
]
Propulsion = Literal[
    "human",
    "electric_assist",
    "electric",
    "combustion",
    "combustion_diesel",
    "hybrid",
    "plug_in_hybrid",
    "hydrogen_fuel_cell",
]
#: A vehicle of a motorised type must say how far it can still go (``current_range_meters``).
UNASSISTED = "human"
DEFAULT_RANGE_M = 25_000.0


class VehicleTypeSettings(BaseModel):
    """One vehicle type of the fleet; ``id`` is the store's ``vehicle_type`` of its vehicles."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    form_factor: FormFactor = "scooter_standing"
    propulsion_type: Propulsion = "electric"
    max_range_meters: float = Field(default=DEFAULT_RANGE_M, ge=0)
    name: str | None = Field(default=None, max_length=80)

    @property
    def motorised(self) -> bool:
        return self.propulsion_type != UNASSISTED


def default_vehicle_types() -> list[VehicleTypeSettings]:
    """The store's default type: a stand-up e-scooter."""
    return [VehicleTypeSettings(id="scooter", name="E-scooter")]


def published_types(
    configured: Iterable[VehicleTypeSettings], vehicles: Iterable[Vehicle]
) -> dict[str, VehicleTypeSettings]:
    """The configured types, and any type a vehicle of the store has that is not configured
    (published as ``other``, electric, with the default range: no vehicle goes untyped)."""
    types = {t.id: t for t in configured}
    for v in vehicles:
        if v.vehicle_type not in types:
            types[v.vehicle_type] = VehicleTypeSettings.model_construct(
                id=v.vehicle_type,
                form_factor="other",
                propulsion_type="electric",
                max_range_meters=DEFAULT_RANGE_M,
                name=None,
            )
    return types


def vehicle_types_data(
    types: dict[str, VehicleTypeSettings], max_speed: int | None, language: str
) -> dict[str, Any]:
    """``vehicle_types.json``'s data; ``max_speed`` is what the rules let a vehicle reach."""
    out = []
    for t in types.values():
        item: dict[str, Any] = {
            "vehicle_type_id": t.id,
            "form_factor": t.form_factor,
            "propulsion_type": t.propulsion_type,
            "name": [{"text": t.name or t.id, "language": language}],
        }
        if t.motorised:
            item["max_range_meters"] = t.max_range_meters
        if max_speed is not None:
            item["max_permitted_speed"] = max_speed
        out.append(item)
    return {"vehicle_types": out}


@dataclass(frozen=True, slots=True)
class Listed:
    """A vehicle ``vehicle_status`` lists: at a station (docked) or at its position."""

    vehicle: Vehicle
    station_id: int | None

    @property
    def reserved(self) -> bool:
        return self.vehicle.status == "reserved"

    @property
    def disabled(self) -> bool:
        return self.vehicle.status not in ("available", "reserved")


class FleetView:
    """One reading of the stations, spots and vehicles, shared by the feeds built from it."""

    def __init__(self, store: Store) -> None:
        self.stations: list[Station] = store.topology.stations()
        spots = store.topology.spots()
        self.free_docks: dict[int, int] = {s.id: 0 for s in self.stations}
        self.capacity: dict[int, int] = {s.id: 0 for s in self.stations}
        for spot in spots:
            self.capacity[spot.station_id] = self.capacity.get(spot.station_id, 0) + 1
            if spot.vehicle_id is None:
                self.free_docks[spot.station_id] = self.free_docks.get(spot.station_id, 0) + 1
        spot_station = {s.id: s.station_id for s in spots}
        self.vehicles: list[Vehicle] = store.vehicles.all()
        self.listed: list[Listed] = []
        for v in self.vehicles:
            if v.trip_id is not None or v.status == "in_use":
                continue  # on a trip: never published
            station = spot_station.get(v.spot_id) if v.spot_id is not None else None
            if station is None and (v.lat is None or v.lon is None):
                continue  # neither docked nor located: nothing true to publish
            self.listed.append(Listed(v, station))


def station_information_data(view: FleetView, language: str) -> dict[str, Any]:
    stations = [
        {
            "station_id": str(st.id),
            "name": [{"text": st.name, "language": language}],
            "lat": st.lat,
            "lon": st.lon,
            "is_virtual_station": False,
            "capacity": view.capacity.get(st.id, 0),
        }
        for st in view.stations
    ]
    return {"stations": stations}


def station_status_data(
    view: FleetView, types: dict[str, VehicleTypeSettings], renting: Callable[[Station], bool]
) -> dict[str, Any]:
    """Counts from the vehicles listed at each station. A station rents and takes returns
    while it is online (GBFS: even when empty or full); ``renting(station)`` also says
    whether the rules let a ride start where it stands."""
    stations = []
    for st in view.stations:
        here = [item for item in view.listed if item.station_id == st.id]
        available = [i for i in here if not i.reserved and not i.disabled]
        by_type = dict.fromkeys(types, 0)
        for item in available:
            by_type[item.vehicle.vehicle_type] += 1
        online = bool(st.is_online)
        stations.append(
            {
                "station_id": str(st.id),
                "num_vehicles_available": len(available),
                "vehicle_types_available": [
                    {"vehicle_type_id": t, "count": n} for t, n in by_type.items()
                ],
                "num_vehicles_disabled": sum(1 for i in here if i.disabled),
                "num_docks_available": view.free_docks.get(st.id, 0),
                "is_installed": True,
                "is_renting": online and renting(st),
                "is_returning": online,
                "last_reported": rfc3339(st.updated_at),
            }
        )
    return {"stations": stations}


def vehicle_status_data(view: FleetView, types: dict[str, VehicleTypeSettings]) -> dict[str, Any]:
    vehicles = []
    for item in view.listed:
        v = item.vehicle
        vtype = types[v.vehicle_type]
        out: dict[str, Any] = {
            "vehicle_id": v.gbfs_id,
            "vehicle_type_id": vtype.id,
            "is_reserved": item.reserved,
            "is_disabled": item.disabled,
            "last_reported": rfc3339(v.updated_at),
        }
        charge = None if v.battery is None else max(0.0, min(1.0, v.battery / 100))
        if charge is not None:
            out["current_fuel_percent"] = charge
        if vtype.motorised:  # an unknown charge promises no range
            out["current_range_meters"] = round((charge or 0.0) * vtype.max_range_meters, 1)
        if item.station_id is not None:
            out["station_id"] = str(item.station_id)
        else:
            out["lat"], out["lon"] = v.lat, v.lon
        vehicles.append(out)
    return {"vehicles": vehicles}
