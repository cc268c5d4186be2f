"""Events since a cursor, paged, with long-polling; and their acknowledgement.

The page is assembled from the stored JSON bytes (``orjson.Fragment``), never re-parsed, so
the feed keeps up with a backend catching up after a long outage.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import READ, SYNC, require
from api.errors import ok
from api.idempotency import idempotent
from gateway.outbox import Outbox, Priority

router = APIRouter(tags=["events"])
_PRIORITY_NAMES = {int(p): p.name.lower() for p in Priority}


class EventWaiter:
    """Wakes long-polling requests when the outbox commits an append (from any thread)."""

    def __init__(self, outbox: Outbox) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        outbox.add_listener(self._wake)

    def _wake(self, _cursor: int) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> None:
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


def _page(outbox: Outbox, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = outbox.read_raw(cursor, limit)
    events = [
        {
            "cursor": r[0],
            "priority": _PRIORITY_NAMES[r[1]],
            "kind": r[2],
            "idempotency_key": r[3],
            "created_at": r[4],
            "payload": orjson.Fragment(r[5]),
        }
        for r in rows
    ]
    return events, (rows[-1][0] if rows else cursor)


@router.get(
    "/events",
    summary="Events since a cursor",
    description="Events with a cursor above `cursor`, oldest first. With `wait` > 0 and "
    "nothing new, the request waits up to `wait` seconds for the next event (long-poll). "
    "`next_cursor` is the cursor to ask with next.",
    dependencies=[Depends(require(READ))],
)
async def events(
    request: Request,
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> Response:
    outbox: Outbox = request.app.state.outbox
    page, next_cursor = _page(outbox, cursor, limit)
    if not page and wait > 0:
        await request.app.state.event_waiter.wait(min(wait, request.app.state.max_long_poll))
        page, next_cursor = _page(outbox, cursor, limit)
    body = ok({"events": page, "next_cursor": next_cursor, "acked_cursor": outbox.acked_cursor})
    return Response(orjson.dumps(body), media_type="application/json")


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cursor: int = Field(ge=0, le=2**62, description="Every event up to this cursor is safe")


@router.post(
    "/events/ack",
    summary="Acknowledge events up to a cursor",
    dependencies=[Depends(require(SYNC))],
)
async def ack(request: Request, body: AckBody) -> dict[str, Any]:
    outbox: Outbox = request.app.state.outbox

    async def handler() -> dict[str, Any]:
        removed = outbox.ack(min(body.cursor, outbox.last_cursor))
        return ok({"acked": removed, "acked_cursor": outbox.acked_cursor})

    return await idempotent(request, body.model_dump(), handler)


@router.get(
    "/events/stats", summary="Outbox depth per class", dependencies=[Depends(require(READ))]
)
async def stats(request: Request) -> dict[str, Any]:
    outbox: Outbox = request.app.state.outbox
    return ok(
        {
            "classes": {
                p.name.lower(): {
                    "pending": s.pending,
                    "appended": s.appended,
                    "dropped": s.dropped,
                    "compacted": s.compacted,
                    "acked": s.acked,
                }
                for p, s in outbox.stats().items()
            },
            "last_cursor": outbox.last_cursor,
            "acked_cursor": outbox.acked_cursor,
            "oldest_pending": outbox.oldest_pending(),
        }
    )
