"""Read-only fleet state: networks, clusters, stations with spots, vehicles, trips, energy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from dockgate.api.auth import READ, require
from dockgate.api.errors import ApiError, ok
from dockgate.api.params import MAX_ID, AsciiNumber, Digits, Id, parse_id_list
from dockgate.gateway.store import Vehicle

router = APIRouter(tags=["state"], dependencies=[Depends(require(READ))])


def parse_networks(networks: str | None) -> list[int]:
    """The dashboard's ``networks=1,5,7`` list."""
    if networks is None or networks == "":
        return []
    try:
        ids = parse_id_list(networks)
    except ValueError:
        problem = {"loc": ["query", "networks"], "msg": "comma-separated ASCII decimal ids"}
        raise ApiError(422, "networks must be a comma-separated list of ids", [problem]) from None
    if any(i < 1 or i > MAX_ID for i in ids):
        raise ApiError(422, f"network ids must be 1..{MAX_ID}")
    return ids


Networks = Annotated[str | None, Query(description="Network ids, e.g. `1,5,7`", max_length=500)]


def _vehicle(v: Vehicle) -> dict[str, Any]:
    return {
        "id": v.id,
        "network_id": v.network_id,
        "serial_number": v.serial_number,
        "vehicle_type": v.vehicle_type,
        "position": None if v.lat is None else {"lat": v.lat, "lon": v.lon},
        "battery": v.battery,
        "status": v.status,
        "is_locked": bool(v.is_locked),
        "spot_id": v.spot_id,
        "trip_id": v.trip_id,
        "updated_at": v.updated_at,
    }


@router.get("/networks", summary="Get networks")
async def networks(request: Request) -> dict[str, Any]:
    return ok(request.app.state.store.topology.networks())


@router.get("/clusters", summary="Get clusters")
async def clusters(request: Request, networks: Networks = None) -> dict[str, Any]:
    return ok(request.app.state.store.topology.clusters(parse_networks(networks)))


@router.get("/clusters/{id}", summary="Get cluster details")
async def cluster(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.topology.cluster(id))


@router.get("/clusters/{id}/stations", summary="Get stations with spots and docked vehicles")
async def stations(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.topology.cluster_stations(id))


@router.get("/clusters/{id}/outages", summary="Get station outages")
async def outages(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.outages.of_cluster(id))


@router.get("/stations/{id}/energy-consumption", summary="Get energy consumption")
async def energy(
    request: Request,
    id: Id,
    start: Annotated[float, AsciiNumber, Query(ge=0, le=1e11, description="Unix time")],
    end: Annotated[float, AsciiNumber, Query(ge=0, le=1e11, description="Unix time")],
) -> dict[str, Any]:
    if end <= start:
        raise ApiError(422, "end must be after start")
    return ok(request.app.state.store.energy.consumption(id, start, end))


@router.get("/vehicles", summary="Get vehicles with position, battery and trip")
async def vehicles(request: Request, networks: Networks = None) -> dict[str, Any]:
    store = request.app.state.store
    return ok([_vehicle(v) for v in store.vehicles.all(parse_networks(networks))])


@router.get("/vehicles/{id}", summary="Get vehicle")
async def vehicle(request: Request, id: Id) -> dict[str, Any]:
    return ok(_vehicle(request.app.state.store.vehicles.get(id)))


@router.get("/trips", summary="Get trips")
async def trips(
    request: Request,
    last_primary_key: Annotated[int, Digits, Query(ge=0, le=MAX_ID)] = 0,
    page_size: Annotated[int, Digits, Query(ge=10, le=500)] = 20,
) -> dict[str, Any]:
    return ok(request.app.state.store.trips.page(after_id=last_primary_key, limit=page_size))


@router.get("/trips/{id}", summary="Get trip")
async def trip(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.trips.get(id))
