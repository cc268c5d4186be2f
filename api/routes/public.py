"""Unauthenticated endpoints: GBFS feeds, health and Prometheus metrics (no secrets in any)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

from dockgate.api.errors import ok
from dockgate.api.gbfs import FeedName
from dockgate.api.gbfs_http import GBFS_RESPONSES, gbfs_response

router = APIRouter()
# The text format ``generate_latest`` writes; prometheus_client's CONTENT_TYPE_LATEST names a
# newer format version in recent releases, which scrapers would then negotiate for.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/gbfs/{feed}.json",
    tags=["gbfs"],
    summary="A GBFS 3.0 feed of this site",
    response_class=Response,
    responses=GBFS_RESPONSES,
)
async def gbfs_feed(request: Request, feed: FeedName) -> Response:
    return gbfs_response(request, feed)


@router.get("/health", tags=["operations"], summary="Liveness and queue summary")
async def health(request: Request) -> dict[str, Any]:
    outbox = request.app.state.outbox
    pending = {p.name.lower(): n for p, n in outbox.pending().items()}
    body: dict[str, Any] = {
        "status": "ok",
        "outbox_pending": pending,
        "last_cursor": outbox.last_cursor,
        "acked_cursor": outbox.acked_cursor,
    }
    provider = getattr(request.app.state, "health_provider", None)
    if provider is not None:  # the daemon adds its parts, readers and broker
        body.update(provider())
    return ok(body)


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format, version 0.0.4",
            "content": {METRICS_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=METRICS_TYPE)
