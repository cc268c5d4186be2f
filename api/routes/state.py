"""Read-only fleet state: networks, clusters, stations with spots, vehicles, trips, energy.

Every list is a page (``api/paging.py``); trips take the dashboard's filters and sorts
(``api/filters.py``) and refuse by name those this gateway has no data for.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from dockgate.api.auth import READ, require
from dockgate.api.errors import invalid, ok, ok_page
from dockgate.api.filters import TRIPS_UNSUPPORTED, Timezone, TripFilters, zone
from dockgate.api.paging import NetworksPageQuery, PageQuery
from dockgate.api.params import AsciiNumber, Id
from dockgate.api.query import Unsupported
from dockgate.gateway.store import Vehicle

router = APIRouter(tags=["state"], dependencies=[Depends(require(READ))])
Paging = Annotated[PageQuery, Query()]


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
async def networks(request: Request, page: Paging) -> dict[str, Any]:
    return ok_page(request.app.state.store.topology.networks_page(page.keyset()))


@router.get("/clusters", summary="Get clusters")
async def clusters(request: Request, page: Annotated[NetworksPageQuery, Query()]) -> dict[str, Any]:
    topology = request.app.state.store.topology
    return ok_page(topology.clusters_page(page.network_ids(), page.keyset()))


@router.get("/clusters/{id}", summary="Get cluster details")
async def cluster(
    request: Request,
    id: Id,
    lang: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z]{2}$",
            description="The dashboard's description language: a cluster here has no "
            "localized text, so every language gets the same answer",
        ),
    ] = None,
) -> dict[str, Any]:
    return ok(request.app.state.store.topology.cluster(id))


@router.get("/clusters/{id}/stations", summary="Get stations with spots and docked vehicles")
async def stations(request: Request, id: Id, page: Paging) -> dict[str, Any]:
    topology = request.app.state.store.topology
    return ok_page(topology.cluster_stations_page(id, page.keyset()))


@router.get("/clusters/{id}/outages", summary="Get station outages")
async def outages(request: Request, id: Id, page: Paging) -> dict[str, Any]:
    return ok_page(request.app.state.store.outages.page_of_cluster(id, page.keyset()))


class EnergyWindow(BaseModel):
    """Unix times ``start`` to ``end``, or the dashboard's days ``start_date`` to ``end_date``
    (both included) in ``timezone`` (UTC if not given); one pair, not a mix."""

    start: Annotated[float | None, AsciiNumber] = Field(None, ge=0, le=1e11)
    end: Annotated[float | None, AsciiNumber] = Field(None, ge=0, le=1e11)
    start_date: date | None = None
    end_date: date | None = None
    timezone: Timezone

    def bounds(self) -> tuple[float, float]:
        """(start, end) as Unix times, or a 422 naming the parameter at fault."""
        if self.start_date is None and self.end_date is None:
            if self.timezone is not None:
                raise invalid(["query", "timezone"], "timezone applies to start_date, end_date")
            return _ordered("start", self.start, "end", self.end)
        if self.start is not None or self.end is not None:
            name = "start" if self.start is not None else "end"
            raise invalid(["query", name], "give start and end, or start_date and end_date")
        tz = zone(self.timezone)
        low = None if self.start_date is None else _midnight(self.start_date, tz)
        high = None if self.end_date is None else _midnight(self.end_date + timedelta(1), tz)
        return _ordered("start_date", low, "end_date", high)


def _midnight(day: date, tz: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _ordered(
    low_name: str, low: float | None, high_name: str, high: float | None
) -> tuple[float, float]:
    if low is None:
        raise invalid(["query", low_name], f"{low_name} is required")
    if high is None:
        raise invalid(["query", high_name], f"{high_name} is required")
    if high <= low:
        raise invalid(["query", high_name], f"{high_name} must be after {low_name}")
    return low, high


@router.get(
    "/stations/{id}/energy-consumption",
    summary="Get energy consumption",
    description="Energy used between `start` and `end` (Unix times), or over the days "
    "`start_date` to `end_date` (both included) in `timezone` (UTC if not given).",
)
async def energy(
    request: Request, id: Id, window: Annotated[EnergyWindow, Query()]
) -> dict[str, Any]:
    start, end = window.bounds()
    return ok(request.app.state.store.energy.consumption(id, start, end))


@router.get("/vehicles", summary="Get vehicles with position, battery and trip")
async def vehicles(request: Request, page: Annotated[NetworksPageQuery, Query()]) -> dict[str, Any]:
    store = request.app.state.store
    return ok_page(store.vehicles.page(page.network_ids(), page.keyset()), _vehicle)


@router.get("/vehicles/{id}", summary="Get vehicle")
async def vehicle(request: Request, id: Id) -> dict[str, Any]:
    return ok(_vehicle(request.app.state.store.vehicles.get(id)))


@router.get(
    "/trips",
    summary="Get trips",
    description="The dashboard's trip filters and sorts. `state` is `running`, `on-hold`, "
    "`finished` or `cancelled` (comma-separated for several); a running trip's duration runs "
    "to now and it sorts after every ended trip by `end_date`. Refused: "
    + ", ".join(f"`{name}`" for name in TRIPS_UNSUPPORTED)
    + " (not recorded here).",
    dependencies=[Depends(Unsupported(TRIPS_UNSUPPORTED))],
)
async def trips(request: Request, filters: Annotated[TripFilters, Query()]) -> dict[str, Any]:
    return ok_page(request.app.state.store.trips.search(filters.trip_query()))


@router.get("/trips/{id}", summary="Get trip")
async def trip(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.trips.get(id))
