"""Routes of the status page: the HTML shell and its live JSON snapshot, with and without a token.

The full picture names every vehicle by its fixed serial with its exact position and trip, and
every recent tap by its chip's UID: it needs a ``read`` token. The public variant shows what a
passer-by could see in the street anyway: parked vehicles under throw-away labels, no vehicle
on a trip, no trip ids, no UIDs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse

from dockgate.api.auth import READ, require

SnapshotProvider = Callable[[], Awaitable[dict[str, Any]]]
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page() -> str:
    return resources.files("dockgate.api.status").joinpath("page.html").read_text(encoding="utf-8")


def public_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` without what identifies a vehicle, a trip or a chip."""
    parked = [v for v in snapshot.get("vehicles", []) if not v.get("trip_id")]
    vehicles = [
        {
            "id": f"vehicle {number}",
            "lat": v.get("lat"),
            "lon": v.get("lon"),
            "battery": v.get("battery"),
            "locked": v.get("locked"),
            "alert": v.get("alert"),
        }
        for number, v in enumerate(parked, start=1)
    ]
    alerts = [
        {k: a.get(k) for k in ("type", "severity", "station_id", "created_at")}
        for a in snapshot.get("alerts", [])
    ]
    taps = [
        {k: t.get(k) for k in ("at", "reader", "valid", "reason")} for t in snapshot.get("taps", [])
    ]
    return {**snapshot, "vehicles": vehicles, "alerts": alerts, "taps": taps}


def status_router(snapshot: SnapshotProvider) -> APIRouter:
    """A router with the status page and its data.

    ``GET /status`` and ``GET /status/snapshot`` need a ``read`` token: open the page as
    ``/status?private_token=<token>`` and its script sends the token with each refresh.
    ``GET /status/public`` and ``/status/public/snapshot`` need none and show
    :func:`public_view`. Neither carries secrets (no keys, no tokens, no rider identities).
    """
    router = APIRouter(tags=["status page"])
    html = _page()
    token = [Depends(require(READ))]

    @router.get("/status", response_class=HTMLResponse, include_in_schema=False, dependencies=token)
    async def status_page() -> HTMLResponse:
        return HTMLResponse(html, headers=_HEADERS)

    @router.get(
        "/status/snapshot",
        summary="Live picture of the site for the status page",
        dependencies=token,
    )
    async def status_snapshot() -> JSONResponse:
        return JSONResponse(await snapshot(), headers=_HEADERS)

    @router.get("/status/public", response_class=HTMLResponse, include_in_schema=False)
    async def public_page() -> HTMLResponse:
        return HTMLResponse(html, headers=_HEADERS)

    @router.get(
        "/status/public/snapshot",
        summary="The status page's picture without serials, trips or chip UIDs",
    )
    async def public_snapshot() -> JSONResponse:
        return JSONResponse(public_view(await snapshot()), headers=_HEADERS)

    return router
