"""Server-sent events over a real HTTP server (uvicorn on loopback): the backlog since a cursor,
live events as they commit, resuming with Last-Event-ID, keepalives, auth, bounded streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.sim.services import free_port
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.stores import open_test_store

pytestmark = pytest.mark.timeout(60)
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@contextlib.asynccontextmanager
async def serving(tmp_path, **kwargs: Any) -> AsyncIterator[tuple[Outbox, str]]:
    store = open_test_store(tmp_path / "sse.db")
    outbox = Outbox(store.db)
    app = create_app(store, outbox, tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]}, **kwargs)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "server did not start"
        await asyncio.sleep(0.02)
    try:
        yield outbox, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        store.db.close()


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an event stream: one dict per message (``comment`` for keepalive lines)."""
    block: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if block:
                yield block
            block = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            block[name] = value.removeprefix(" ")


def append(outbox: Outbox, i: int) -> None:
    outbox.append("e", {"i": i}, idempotency_key=f"k{i}", priority=Priority.STATE)


async def test_stream_sends_backlog_then_live_events_and_resumes(tmp_path) -> None:
    async with serving(tmp_path) as (outbox, base), httpx.AsyncClient(base_url=base) as client:
        for i in range(3):
            append(outbox, i)
        got: list[dict[str, Any]] = []
        async with client.stream(
            "GET", "/api/v1/events/stream", params={"since": 1}, headers=READ
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for m in messages(r):
                if "data" in m:
                    got.append(m)
                    if len(got) == 2:  # the backlog (cursors 2, 3) arrived: now a live one
                        t0 = time.monotonic()
                        append(outbox, 3)
                    if len(got) == 3:
                        live_s = time.monotonic() - t0
                        break
        events = [orjson.loads(m["data"]) for m in got]
        assert [e["payload"]["i"] for e in events] == [1, 2, 3]
        assert [m["id"] for m in got] == ["2", "3", "4"] == [str(e["cursor"]) for e in events]
        assert events[0]["kind"] == "e" and events[0]["priority"] == "state"
        assert live_s < 0.5, live_s  # pushed at commit, not on a poll interval

        # a reconnect with Last-Event-ID gets only what it missed
        append(outbox, 4)
        async with client.stream(
            "GET",
            "/api/v1/events/stream",
            headers={**READ, "Last-Event-ID": "4"},
        ) as r:
            async for m in messages(r):
                if "data" in m:
                    assert orjson.loads(m["data"])["payload"] == {"i": 4}
                    break


async def test_stream_keepalive_auth_and_bounded_duration(tmp_path) -> None:
    async with (
        serving(tmp_path, max_stream=0.6) as (_outbox, base),
        httpx.AsyncClient(base_url=base) as client,
    ):
        r = await client.get("/api/v1/events/stream")
        assert r.status_code == 401 and READ_TOKEN not in r.text
        t0 = time.monotonic()
        seen: list[dict[str, Any]] = []
        async with client.stream(
            "GET",
            "/api/v1/events/stream",
            params={"private_token": READ_TOKEN, "heartbeat": 0.1},
        ) as r:
            assert r.status_code == 200
            seen = [m async for m in messages(r)]  # ends by itself after max_stream
        took = time.monotonic() - t0
        assert 0.5 < took < 5, took
        assert seen[0] == {"retry": "2000"}
        assert sum(1 for m in seen if m.get("comment") == "keepalive") >= 3
        assert not any("data" in m for m in seen)
