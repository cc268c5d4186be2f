"""The gateway's local HTTP API: backend sync, GBFS feeds, health and metrics.

Public objects: ``create_app``, the interfaces it takes, its ``ApiLimits`` and ``server_config``
(the uvicorn configuration that applies them).
"""

from dockgate.api.app import API_PREFIX, AppOptions, create_app
from dockgate.api.auth import READ, SYNC, TokenRegistry
from dockgate.api.gbfs import GbfsSettings
from dockgate.api.limits import ApiLimits
from dockgate.api.metrics import GatewayMetrics
from dockgate.api.ports import (
    CommandOutcome,
    CommandSender,
    FlowCommandSender,
    PlayCheck,
    PlayVerifier,
)
from dockgate.api.server import server_config

__all__ = [
    "API_PREFIX",
    "READ",
    "SYNC",
    "ApiLimits",
    "AppOptions",
    "CommandOutcome",
    "CommandSender",
    "FlowCommandSender",
    "GatewayMetrics",
    "GbfsSettings",
    "PlayCheck",
    "PlayVerifier",
    "TokenRegistry",
    "create_app",
    "server_config",
]
