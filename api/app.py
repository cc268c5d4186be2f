"""The FastAPI app factory: the backend's sync API, GBFS feeds, health and metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, Unpack

from fastapi import APIRouter, Depends, FastAPI

from dockgate.api import cluster as cluster_routes
from dockgate.api.auth import RedactTokens, TokenRegistry
from dockgate.api.cluster import ClusterView, install_cluster
from dockgate.api.errors import install_error_handlers
from dockgate.api.gbfs import GbfsFeeds, GbfsSettings, GbfsSources
from dockgate.api.guard import RequestGuard, RouteTable
from dockgate.api.limits import ApiLimits
from dockgate.api.metrics import GatewayMetrics
from dockgate.api.openapi import describe_errors
from dockgate.api.ports import BundleValidator, CommandSender, PlayVerifier, rules_bundle_validator
from dockgate.api.query import QueryCheck
from dockgate.api.routes import (
    alerts,
    commands,
    config,
    events,
    geofencing,
    network_settings,
    public,
    riders,
    state,
)
from dockgate.api.routes.events import EventWaiter
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store

API_PREFIX = "/api/v1"


class AppOptions(TypedDict, total=False):
    """``create_app``'s optional keyword arguments (see its docstring)."""

    command_sender: CommandSender | None
    play_verifier: PlayVerifier | None
    bundle_validator: BundleValidator
    gbfs: GbfsSettings | None
    gbfs_sources: GbfsSources | None
    metrics: GatewayMetrics | None
    command_timeout: float
    max_long_poll: float
    max_stream: float
    extra_routers: Iterable[APIRouter]
    limits: ApiLimits
    cluster: ClusterView | None


class _GatewayApi(FastAPI):
    """FastAPI whose OpenAPI document also declares every error answer (``api/openapi.py``)."""

    def openapi(self) -> dict[str, Any]:
        first = self.openapi_schema is None
        schema = super().openapi()
        return describe_errors(schema, API_PREFIX) if first else schema


def create_app(
    store: Store,
    outbox: Outbox,
    *,
    tokens: TokenRegistry | Mapping[str, Iterable[str]],
    **options: Unpack[AppOptions],
) -> FastAPI:
    """Build the API over a store and its outbox.

    ``tokens`` maps each token to its scopes (``sync``: the backend, ``read``: a technician).
    Without a ``command_sender`` commands are journaled and left for the daemon to send.
    ``max_long_poll`` (30 s) caps the ``wait`` of ``GET /events``; ``max_stream`` (300 s) is
    how long one ``GET /events/stream`` stays open before the client is asked to reconnect;
    ``command_timeout`` (5 s) bounds a command's wait for its device. ``extra_routers`` (e.g.
    the site status page under ``api/status/``) are mounted at the root. ``limits`` bound
    request bodies (checked after the token, before anything is parsed): see ``ApiLimits``.
    ``cluster`` (this node's view of its site's leadership) sends a standby's writes to the
    leader: see ``api/cluster.py``.
    """
    app = _GatewayApi(
        title="dockgate local API",
        version="1",
        description="The gateway's local sync API. Authenticate with `Authorization: Bearer "
        '<token>` or `?private_token=<token>`. Responses are `{"code": 0, "data": ...}`; '
        "errors carry the HTTP status as `code`, a `message` and, when known, `problems`. "
        "The token is checked before a body is read; bodies are limited to 64 KiB (8 MiB "
        "for rule bundles) and 64 levels of nesting. A query parameter a route does not read "
        "is refused (422, named in `problems`); `private_token` and `language` are read "
        "everywhere.",
        dependencies=[Depends(QueryCheck())],
    )
    registry = tokens if isinstance(tokens, TokenRegistry) else TokenRegistry.from_mapping(tokens)
    limits = options.get("limits") or ApiLimits()
    _set_state(app, store, outbox, registry, limits, options)
    install_error_handlers(app)
    install_cluster(app, options.get("cluster"))
    table = RouteTable(limits)
    for module in (state, events, alerts, riders, config, commands, geofencing, network_settings):
        _include(app, table, module.router, API_PREFIX)
    _include(app, table, public.router)
    _include(app, table, cluster_routes.router)
    for router in options.get("extra_routers", ()):
        _include(app, table, router)
    app.add_middleware(
        RequestGuard, table=table, tokens=registry, limits=limits, cluster=options.get("cluster")
    )
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())
    return app


def _set_state(
    app: FastAPI,
    store: Store,
    outbox: Outbox,
    tokens: TokenRegistry,
    limits: ApiLimits,
    options: AppOptions,
) -> None:
    """What the routes read from ``request.app.state``."""
    app.state.store = store
    app.state.outbox = outbox
    app.state.tokens = tokens
    app.state.limits = limits
    app.state.command_sender = options.get("command_sender")
    app.state.command_timeout = options.get("command_timeout", 5.0)
    app.state.max_long_poll = options.get("max_long_poll", 30.0)
    app.state.max_stream = options.get("max_stream", 300.0)
    app.state.play_verifier = options.get("play_verifier")
    app.state.bundle_validator = options.get("bundle_validator", rules_bundle_validator)
    gbfs_settings = options.get("gbfs") or GbfsSettings()
    app.state.gbfs = GbfsFeeds(store, gbfs_settings, options.get("gbfs_sources"))
    app.state.metrics = options.get("metrics") or GatewayMetrics(outbox)
    app.state.event_waiter = EventWaiter(outbox)
    bundle = store.bundles.current()
    if bundle is not None:
        app.state.metrics.rule_bundle_version.set(bundle.version)


def _include(app: FastAPI, table: RouteTable, router: APIRouter, prefix: str = "") -> None:
    """Mount ``router`` and tell the request guard what its routes require."""
    table.add(router, prefix)
    app.include_router(router, prefix=prefix)
