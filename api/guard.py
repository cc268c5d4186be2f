"""The request guard: who may call, then how much they may send, before any body is read.

FastAPI reads and parses a body before it runs a route's dependencies, so a token check in a
dependency comes too late: an anonymous client could make the gateway buffer and parse
anything. This ASGI middleware runs first. It finds the route's :class:`Requirement` (from a
table built as routers are included), answers 401/403 on the request head alone, sends a
write that reached a cluster's standby to the leader (307, or 503: ``api/cluster.py``), refuses a
``Content-Length`` above the route's limit, then reads the body itself — counted while it
streams, under one deadline — refuses a body nested deeper than ``ApiLimits.json_depth``, and
hands the app the checked bytes. Refusals carry the API's error envelope; one sent while body
bytes are still unread also closes the connection, so they are never read.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockgate.api.auth import READ, SYNC, Requirement, TokenRegistry, authorize, presented_token
from dockgate.api.cluster import ClusterView, WriteElsewhere, standby_refusal
from dockgate.api.errors import CHALLENGE, ApiError, error_bytes, invalid
from dockgate.api.limits import ApiLimits
from dockgate.api.nesting import json_depth


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What the guard enforces on one route: a scope (None: public) and a body size limit."""

    scope: str | None
    body_limit: int


@dataclass(frozen=True, slots=True)
class _Entry:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    policy: RoutePolicy


def _requirements(route: APIRoute) -> Iterator[Requirement]:
    """The route's requirements, declared on the router, the route or as a parameter."""
    for dependant in route.dependant.dependencies:
        if isinstance(dependant.call, Requirement):
            yield dependant.call


class RouteTable:
    """Method and path pattern of every API route, with the policy its requirements state."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.public = RoutePolicy(None, limits.body_bytes)
        self._entries: list[_Entry] = []

    def add(self, router: APIRouter, prefix: str = "") -> None:
        """Record ``router``'s routes as they will be mounted under ``prefix``."""
        for route in router.routes:
            if isinstance(route, APIRoute):
                pattern, _, _ = compile_path(prefix + route.path)
                policy = self._policy(list(_requirements(route)))
                methods = frozenset(route.methods or ())
                self._entries.append(_Entry(methods, pattern, policy))

    def _policy(self, requirements: list[Requirement]) -> RoutePolicy:
        scopes = {r.scope for r in requirements}
        scope = SYNC if SYNC in scopes else READ if READ in scopes else None
        large = any(r.large_body for r in requirements)
        limits = self.limits
        return RoutePolicy(scope, limits.large_body_bytes if large else limits.body_bytes)

    def policy(self, method: str, path: str) -> RoutePolicy:
        """The first route matching like the router would; public for no match (404/405)."""
        for entry in self._entries:
            if method in entry.methods and entry.pattern.match(path):
                return entry.policy
        return self.public


class _Disconnected(Exception):
    """The client went away while its body was being read."""


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _declared_body(scope: Scope) -> tuple[bool, int | None]:
    """(whether a body follows, its Content-Length if given)."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:  # h11 checks too; other servers may not
                message = "Content-Length must be ASCII decimal digits"
                raise invalid(["header", "Content-Length"], message, status=400)
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return chunked or bool(length), length


class RequestGuard:
    """ASGI middleware: authorise on the head, bound the body, then call the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        table: RouteTable,
        tokens: TokenRegistry,
        limits: ApiLimits,
        cluster: ClusterView | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.tokens = tokens
        self.limits = limits
        self.cluster = cluster  # a standby sends writes to the leader (api/cluster.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.table.policy(scope["method"], _route_path(scope))
        has_body = True  # until the head says otherwise: a refusal then closes the connection
        try:
            has_body, length = _declared_body(scope)
            if policy.scope is not None:
                token = presented_token(HTTPConnection(scope))
                authorize(self.tokens, token, policy.scope)
            elsewhere = standby_refusal(self.cluster, scope)
            if elsewhere is not None:
                raise elsewhere
            if has_body:
                if length is not None and length > policy.body_limit:
                    raise _too_large(policy.body_limit)
                receive = await self._checked_body(receive, policy.body_limit)
        except ApiError as refusal:
            await _refuse(send, refusal, close=has_body)
            return
        except _Disconnected:
            return
        await self.app(scope, receive, send)

    async def _checked_body(self, receive: Receive, limit: int) -> Receive:
        """Read the whole body within the limits; a receive that replays it to the app."""
        body = await self._read(receive, limit)
        depth = json_depth(body)
        if depth > self.limits.json_depth:
            message = f"the body nests deeper than {self.limits.json_depth} levels"
            raise ApiError(422, message, [{"loc": ["body"], "msg": message}])
        return _replay(body, receive)

    async def _read(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            raise ApiError(
                408, f"the body did not arrive within {self.limits.body_timeout:g} s"
            ) from None
        return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the body is larger than this route's limit of {limit} bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the checked body once, then the server's (disconnect) messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refusal: ApiError, *, close: bool) -> None:
    body = error_bytes(refusal.status, refusal.message, refusal.problems)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if refusal.status == 401:
        headers += [(k.lower().encode(), v.encode()) for k, v in CHALLENGE.items()]
    if isinstance(refusal, WriteElsewhere):
        headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    if close:  # body bytes may still be on the wire: do not read them to reach the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
