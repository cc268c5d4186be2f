"""The uvicorn configuration the API runs under: bounded heads, idle time and connections.

uvicorn bounds the idle time between requests (``timeout_keep_alive``), the head's size (h11's
incomplete-event limit) and the number of connections (``limit_concurrency``, answered 503),
but not the time a client may take to send a request head: a client trickling a header byte
every few seconds holds its connection for ever. :class:`HeadDeadlineH11` closes a
connection whose head is not complete ``header_timeout`` seconds after it opened or after the
previous response. The body's read time is the request guard's (``api/guard.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from dockgate.api.limits import ApiLimits


class HeadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every request head."""

    header_timeout: ClassVar[float] = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request head arrived: the guard times its body
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        self._arm_head_timer()  # before: a pipelined head handled inside disarms it again
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _protocol(header_timeout: float) -> type[HeadDeadlineH11]:
    class Protocol(HeadDeadlineH11):
        pass

    Protocol.header_timeout = header_timeout
    return Protocol


def server_config(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """A uvicorn config for an app from ``create_app``, with the app's ``ApiLimits`` applied.

    ``options`` are passed on to ``uvicorn.Config`` (``log_level``, ``access_log``, ...).
    """
    limits: ApiLimits = app.state.limits
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_protocol(limits.header_timeout),
        timeout_keep_alive=limits.keep_alive,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **options,
    )
