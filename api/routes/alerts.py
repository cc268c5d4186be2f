"""Fleet alerts: current and past ones with the dashboard's filters and sorts, and resolving
them. Both lists are pages (``api/paging.py``): the current list has no silent cap."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ok, ok_page
from dockgate.api.filters import CurrentAlertFilters, HistoryFilters
from dockgate.api.idempotency import idempotent
from dockgate.api.params import MAX_ID, Digits

router = APIRouter(tags=["fleet alerts"])
_WHO = (
    " `user_id` and `email` (a part of it) name the rider on the alert's vehicle when it was "
    "raised; `cluster_name` matches a part of the name; dates are UTC days, both included."
)


@router.get(
    "/fleet-alerts",
    summary="Get fleet alerts",
    description="Open alerts, with the history's filters (but resolution)." + _WHO,
    dependencies=[Depends(require(READ))],
)
async def current(
    request: Request, filters: Annotated[CurrentAlertFilters, Query()]
) -> dict[str, Any]:
    return ok_page(request.app.state.store.alerts.search(filters.alert_query()))


@router.get(
    "/fleet-alerts/history",
    summary="Get fleet alerts history",
    description="Resolved alerts, with the dashboard's filters and sorts." + _WHO,
    dependencies=[Depends(require(READ))],
)
async def history(request: Request, filters: Annotated[HistoryFilters, Query()]) -> dict[str, Any]:
    return ok_page(request.app.state.store.alerts.search(filters.alert_query()))


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
