"""The gateway's local HTTP API: backend sync, GBFS feeds, health and metrics.

Public objects: ``create_app`` and the interfaces it takes.
"""

from dockgate.api.app import API_PREFIX, create_app
from dockgate.api.auth import READ, SYNC, TokenRegistry
from dockgate.api.gbfs import GbfsSettings
from dockgate.api.metrics import GatewayMetrics
from dockgate.api.ports import (
    CommandOutcome,
    CommandSender,
    FlowCommandSender,
    PlayCheck,
    PlayVerifier,
)

__all__ = [
    "API_PREFIX",
    "READ",
    "SYNC",
    "CommandOutcome",
    "CommandSender",
    "FlowCommandSender",
    "GatewayMetrics",
    "GbfsSettings",
    "PlayCheck",
    "PlayVerifier",
    "TokenRegistry",
    "create_app",
]
