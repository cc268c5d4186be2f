"""Routes of the status page: the HTML shell and its live JSON snapshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

SnapshotProvider = Callable[[], Awaitable[dict[str, Any]]]


def _page() -> str:
    return resources.files("dockgate.api.status").joinpath("page.html").read_text(encoding="utf-8")


def status_router(snapshot: SnapshotProvider) -> APIRouter:
    """A router with ``GET /status`` (the page) and ``GET /status/snapshot`` (its data).

    The page is for a technician on site: it needs no token, and the snapshot carries no
    secrets (no keys, no tokens, no rider identities beyond record ids).
    """
    router = APIRouter(tags=["status page"])
    html = _page()

    @router.get("/status", response_class=HTMLResponse, include_in_schema=False)
    async def status_page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/status/snapshot", summary="Live picture of the site for the status page")
    async def status_snapshot() -> JSONResponse:
        return JSONResponse(await snapshot(), headers={"Cache-Control": "no-store"})

    return router
