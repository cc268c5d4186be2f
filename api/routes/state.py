"""Read-only fleet state: networks, clusters, stations with spots, vehicles, trips, energy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from dockgate.api.auth import READ, require
from dockgate.api.errors import ApiError, ok

router = APIRouter(tags=["state"], dependencies=[Depends(require(READ))])
Id = Annotated[int, Path(ge=1, le=2**62)]


def parse_networks(networks: str | None) -> list[int]:
    """The dashboard's ``networks=1,5,7`` list."""
    if networks is None or networks == "":
        return []
    try:
        ids = [int(part) for part in networks.split(",")]
    except ValueError:
        raise ApiError(422, "networks must be a comma-separated list of ids") from None
    if any(i < 1 or i > 2**62 for i in ids):
        raise ApiError(422, "network ids must be >= 1")
    return ids


Networks = Annotated[str | None, Query(description="Network ids, e.g. `1,5,7`", max_length=500)]


def _vehicle(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": v["id"],
        "network_id": v["network_id"],
        "serial_number": v["serial_number"],
        "vehicle_type": v["vehicle_type"],
        "position": None if v["lat"] is None else {"lat": v["lat"], "lon": v["lon"]},
        "battery": v["battery"],
        "status": v["status"],
        "is_locked": bool(v["is_locked"]),
        "spot_id": v["spot_id"],
        "trip_id": v["trip_id"],
        "updated_at": v["updated_at"],
    }


@router.get("/networks", summary="Get networks")
async def networks(request: Request) -> dict[str, Any]:
    return ok(request.app.state.store.networks())


@router.get("/clusters", summary="Get clusters")
async def clusters(request: Request, networks: Networks = None) -> dict[str, Any]:
    return ok(request.app.state.store.clusters(parse_networks(networks)))


@router.get("/clusters/{id}", summary="Get cluster details")
async def cluster(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.cluster(id))


@router.get("/clusters/{id}/stations", summary="Get stations with spots and docked vehicles")
async def stations(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.stations(id))


@router.get("/clusters/{id}/outages", summary="Get station outages")
async def outages(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.outages(id))


@router.get("/stations/{id}/energy-consumption", summary="Get energy consumption")
async def energy(
    request: Request,
    id: Id,
    start: Annotated[float, Query(ge=0, le=1e11, description="Unix time")],
    end: Annotated[float, Query(ge=0, le=1e11, description="Unix time")],
) -> dict[str, Any]:
    if end <= start:
        raise ApiError(422, "end must be after start")
    return ok(request.app.state.store.energy_consumption(id, start, end))


@router.get("/vehicles", summary="Get vehicles with position, battery and trip")
async def vehicles(request: Request, networks: Networks = None) -> dict[str, Any]:
    store = request.app.state.store
    return ok([_vehicle(v) for v in store.vehicles(parse_networks(networks))])


@router.get("/vehicles/{id}", summary="Get vehicle")
async def vehicle(request: Request, id: Id) -> dict[str, Any]:
    return ok(_vehicle(request.app.state.store.vehicle(id)))


@router.get("/trips", summary="Get trips")
async def trips(
    request: Request,
    last_primary_key: Annotated[int, Query(ge=0, le=2**62)] = 0,
    page_size: Annotated[int, Query(ge=10, le=500)] = 20,
) -> dict[str, Any]:
    return ok(request.app.state.store.trips(after_id=last_primary_key, limit=page_size))


@router.get("/trips/{id}", summary="Get trip")
async def trip(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.trip(id))
