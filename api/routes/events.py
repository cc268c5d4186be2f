"""Events since a cursor: paged with long-polling, or as server-sent events; and their ack.

The page is assembled from the stored JSON bytes (``orjson.Fragment``), never re-parsed, so
the feed keeps up with a backend catching up after a long outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ok
from dockgate.api.idempotency import idempotent
from dockgate.api.params import MAX_ID, AsciiNumber, Digits
from dockgate.gateway.outbox import Outbox, Priority

router = APIRouter(tags=["events"])
_PRIORITY_NAMES = {int(p): p.name.lower() for p in Priority}
_EVENT_ID = re.compile(r"[0-9]{1,19}")


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

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        """An event set at every committed append while the block runs (clear it to rearm).

        Subscribe before reading, so an append between the read and the wait is not missed.
        """
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(entry)
        try:
            yield event
        finally:
            with self._lock:
                self._waiters.discard(entry)

    async def wait(self, timeout: float) -> None:
        with self.subscription() as event, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


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
    cursor: Annotated[int, Digits, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Digits, Query(ge=1, le=5000)] = 500,
    wait: Annotated[float, AsciiNumber, Query(ge=0, le=30)] = 0,
) -> Response:
    outbox: Outbox = request.app.state.outbox
    with request.app.state.event_waiter.subscription() as appended:
        page, next_cursor = _page(outbox, cursor, limit)
        if not page and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(appended.wait(), min(wait, request.app.state.max_long_poll))
            page, next_cursor = _page(outbox, cursor, limit)
    body = ok({"events": page, "next_cursor": next_cursor, "acked_cursor": outbox.acked_cursor})
    return Response(orjson.dumps(body), media_type="application/json")


def _sse(rows: list[Any]) -> bytes:
    """One ``id:``/``data:`` block per event; ``data`` is the long-poll page's event object."""
    out = []
    for r in rows:
        data = orjson.dumps(
            {
                "cursor": r[0],
                "priority": _PRIORITY_NAMES[r[1]],
                "kind": r[2],
                "idempotency_key": r[3],
                "created_at": r[4],
                "payload": orjson.Fragment(r[5]),
            }
        )
        out.append(b"id: %d\ndata: %s\n\n" % (r[0], data))
    return b"".join(out)


async def _stream(
    request: Request, cursor: int, limit: int, heartbeat: float
) -> AsyncIterator[bytes]:
    state = request.app.state
    outbox: Outbox = state.outbox
    deadline = time.monotonic() + state.max_stream
    yield b"retry: 2000\n\n"
    with state.event_waiter.subscription() as appended:
        while True:
            appended.clear()
            rows = outbox.read_raw(cursor, limit)
            if rows:
                cursor = rows[-1][0]
                yield _sse(rows)
                if len(rows) == limit:
                    continue
            left = deadline - time.monotonic()
            if left <= 0 or await request.is_disconnected():
                return  # the client reconnects with Last-Event-ID
            try:
                await asyncio.wait_for(appended.wait(), min(heartbeat, left))
            except TimeoutError:
                yield b": keepalive\n\n"


@router.get(
    "/events/stream",
    summary="Live events as server-sent events",
    description="A `text/event-stream` of the events with a cursor above `since` (or above "
    "the `Last-Event-ID` header when a client reconnects), then each new event as it is "
    "committed. Every message has `id:` (the cursor) and `data:` (the same object as in "
    "`GET /events`); a comment line keeps an idle stream alive every `heartbeat` seconds. "
    "The server closes a stream after a while (`max_stream`): reconnect with Last-Event-ID. "
    "Browsers' EventSource cannot set headers: use `?private_token=`.",
    dependencies=[Depends(require(READ))],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    since: Annotated[int, Digits, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Digits, Query(ge=1, le=5000)] = 500,
    heartbeat: Annotated[float, AsciiNumber, Query(ge=0.05, le=60)] = 15.0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    cursor = since
    if last_event_id is not None and _EVENT_ID.fullmatch(last_event_id):  # else: a fresh start
        cursor = min(int(last_event_id), MAX_ID)
    return StreamingResponse(
        _stream(request, cursor, limit, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cursor: Annotated[int, Digits] = Field(
        ge=0, le=MAX_ID, description="Every event up to this cursor is safe"
    )


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
