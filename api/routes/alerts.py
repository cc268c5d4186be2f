"""Fleet alerts: current, history with the dashboard's filters, and resolving them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ok
from dockgate.api.idempotency import idempotent
from dockgate.api.params import MAX_ID, Digits
from dockgate.api.routes.state import Networks, parse_networks
from dockgate.gateway.store import ALERT_SEVERITIES, ALERT_TYPES, AlertQuery

router = APIRouter(tags=["fleet alerts"])
AlertType = Literal[ALERT_TYPES]  # type: ignore[valid-type]
AlertSeverity = Literal[ALERT_SEVERITIES]  # type: ignore[valid-type]
Dir = Literal["ASC", "DESC"]


def _ts(day: date | None) -> float | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _plus_day(day: date | None) -> float | None:
    return None if day is None else _ts(day) + 86400  # type: ignore[operator]


@router.get("/fleet-alerts", summary="Get fleet alerts", dependencies=[Depends(require(READ))])
async def current(request: Request, networks: Networks = None) -> dict[str, Any]:
    store = request.app.state.store
    query = AlertQuery(parse_networks(networks), resolved=False, page_size=10_000)
    return ok(store.alerts.query(query))


class HistoryFilters(BaseModel):
    """The dashboard's filters of the alert history, as query parameters."""

    networks: str | None = Field(None, max_length=500, description="Network ids, e.g. `1,5,7`")
    primary_key_dir: Dir = "DESC"
    page_size: Annotated[int, Digits] = Field(20, ge=10, le=500)
    last_primary_key: Annotated[int | None, Digits] = Field(None, ge=1, le=MAX_ID)
    sort_by: Literal["creation_date", "alert_severity", "resolved_at"] = "creation_date"
    sort_dir: Dir = "DESC"
    alert_type: AlertType | None = None
    alert_severity: AlertSeverity | None = None
    creation_date_min: date | None = None
    creation_date_max: date | None = None
    resolved_at_min: date | None = None
    resolved_at_max: date | None = None
    cluster_id: Annotated[int | None, Digits] = Field(None, ge=1, le=MAX_ID)
    vehicle_id: Annotated[int | None, Digits] = Field(None, ge=1, le=MAX_ID)


@router.get(
    "/fleet-alerts/history",
    summary="Get fleet alerts history",
    dependencies=[Depends(require(READ))],
)
async def history(request: Request, filters: Annotated[HistoryFilters, Query()]) -> dict[str, Any]:
    store = request.app.state.store
    f = filters
    return ok(
        store.alerts.query(
            AlertQuery(
                parse_networks(f.networks),
                resolved=True,
                alert_type=f.alert_type,
                alert_severity=f.alert_severity,
                cluster_id=f.cluster_id,
                vehicle_id=f.vehicle_id,
                creation_date_min=_ts(f.creation_date_min),
                creation_date_max=_plus_day(f.creation_date_max),
                resolved_at_min=_ts(f.resolved_at_min),
                resolved_at_max=_plus_day(f.resolved_at_max),
                sort_by=f.sort_by,
                sort_dir=f.sort_dir,
                last_primary_key=f.last_primary_key,
                primary_key_dir=f.primary_key_dir,
                page_size=f.page_size,
            )
        )
    )


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_ids: list[Annotated[int, Digits, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=1000
    )


@router.post(
    "/fleet-alerts/resolve", summary="Resolve alerts", dependencies=[Depends(require(SYNC))]
)
async def resolve(request: Request, body: ResolveBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        done = request.app.state.store.alerts.resolve(body.alert_ids, resolved_by="backend")
        return ok({"resolved": done})

    return await idempotent(request, body.model_dump(), handler)
