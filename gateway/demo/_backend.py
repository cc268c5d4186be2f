"""A fleet backend as the gateway sees it: it pulls ``/api/v1/events`` by cursor and acks.

The demo's checks read what this client received, not the gateway's tables, because that is
what matters: the backend learning every tap, trip and alert exactly once, even after an
outage (:meth:`pause` / :meth:`resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, TypedDict

import httpx

from dockgate.gateway.demo._check import StepFailed


class FeedEvent(TypedDict):
    """One event of ``/api/v1/events`` as the backend stores it (the fields the demo reads)."""

    cursor: int
    kind: str
    priority: str
    idempotency_key: str
    payload: dict[str, Any]


class BackendClient:
    """Long-polls the event feed from cursor 0, acknowledging each page after storing it."""

    def __init__(self, base_url: str, token: str, *, skip_one_on_resume: bool = False) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
        self.cursor = 0
        self.received: list[FeedEvent] = []
        self.errors = 0
        self._running = asyncio.Event()
        self._running.set()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._skip_one = False
        self._skip_on_resume = skip_one_on_resume  # the `--break-step catch-up` self-test

    # -- the API as a backend uses it ---------------------------------------------------------
    async def get(self, path: str, **params: Any) -> Any:
        response = await self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()["data"]

    async def send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = await self._http.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response.json()["data"]

    # -- the event feed -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._pull(), name="demo-backend")

    async def _pull(self) -> None:
        while True:
            if not self._running.is_set():
                self._idle.set()
                await self._running.wait()
            self._idle.clear()
            try:
                page = await self.get("/api/v1/events", cursor=self.cursor, limit=500, wait=0.5)
            except (httpx.HTTPError, OSError):
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            events = page["events"]
            if not events:
                continue
            for event in events:
                if self._skip_one and event["priority"] in ("critical", "outcome"):
                    self._skip_one = False  # deliberately lost: the check must notice
                    continue
                self.received.append(event)
            self.cursor = page["next_cursor"]
            with contextlib.suppress(httpx.HTTPError, OSError, RuntimeError):
                await self.send("POST", "/api/v1/events/ack", {"cursor": self.cursor})

    async def pause(self) -> None:
        """The backend goes away: no pull after the one in flight."""
        self._running.clear()
        await asyncio.wait_for(self._idle.wait(), 5.0)

    def resume(self) -> None:
        self._skip_one = self._skip_on_resume
        self._running.set()

    async def wait_for(
        self,
        kind: str,
        match: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        timeout: float = 10.0,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first received event of ``kind`` (cursor above ``after``) whose payload matches."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.received:
                if event["cursor"] > after and event["kind"] == kind and match(event["payload"]):
                    return event["payload"]
            if time.monotonic() > deadline:
                raise StepFailed(f"the backend received no {kind} event within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()
