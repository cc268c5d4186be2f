"""The FastAPI app factory: the backend's sync API, GBFS feeds, health and metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from fastapi import APIRouter, FastAPI

from dockgate.api.auth import RedactTokens, TokenRegistry
from dockgate.api.errors import install_error_handlers
from dockgate.api.gbfs import GbfsFeeds, GbfsSettings
from dockgate.api.metrics import GatewayMetrics
from dockgate.api.ports import BundleValidator, CommandSender, PlayVerifier, rules_bundle_validator
from dockgate.api.routes import alerts, commands, config, events, public, riders, state
from dockgate.api.routes.events import EventWaiter
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store

API_PREFIX = "/api/v1"


def create_app(
    store: Store,
    outbox: Outbox,
    *,
    tokens: TokenRegistry | Mapping[str, Iterable[str]],
    command_sender: CommandSender | None = None,
    play_verifier: PlayVerifier | None = None,
    bundle_validator: BundleValidator = rules_bundle_validator,
    gbfs: GbfsSettings | None = None,
    metrics: GatewayMetrics | None = None,
    command_timeout: float = 5.0,
    max_long_poll: float = 30.0,
    max_stream: float = 300.0,
    extra_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """Build the API over a store and its outbox.

    ``tokens`` maps each token to its scopes (``sync``: the backend, ``read``: a technician).
    Without a ``command_sender`` commands are journaled and left for the daemon to send.
    ``max_long_poll`` caps the ``wait`` of ``GET /events``; ``max_stream`` is how long one
    ``GET /events/stream`` stays open before the client is asked to reconnect.
    ``extra_routers`` (e.g. the site status page under ``api/status/``) are mounted at the root.
    """
    app = FastAPI(
        title="dockgate local API",
        version="1",
        description="The gateway's local sync API. Authenticate with `Authorization: Bearer "
        '<token>` or `?private_token=<token>`. Responses are `{"code": 0, "data": ...}`; '
        "errors carry a non-zero `code` and a `message`.",
    )
    app.state.store = store
    app.state.outbox = outbox
    app.state.tokens = (
        tokens if isinstance(tokens, TokenRegistry) else TokenRegistry.from_mapping(tokens)
    )
    app.state.command_sender = command_sender
    app.state.command_timeout = command_timeout
    app.state.max_long_poll = max_long_poll
    app.state.max_stream = max_stream
    app.state.play_verifier = play_verifier
    app.state.bundle_validator = bundle_validator
    app.state.gbfs = GbfsFeeds(store, gbfs or GbfsSettings())
    app.state.metrics = metrics or GatewayMetrics(outbox)
    app.state.event_waiter = EventWaiter(outbox)
    bundle = store.current_bundle()
    if bundle is not None:
        app.state.metrics.rule_bundle_version.set(bundle["version"])
    install_error_handlers(app)
    for module in (state, events, alerts, riders, config, commands):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(public.router)
    for router in extra_routers:
        app.include_router(router)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())
    return app
