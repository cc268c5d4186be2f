"""The gateway's local HTTP API: backend sync, GBFS feeds, health and metrics.

Public objects: ``create_app`` and the interfaces it takes.
"""

from api.app import API_PREFIX, create_app
from api.auth import READ, SYNC, TokenRegistry
from api.gbfs import GbfsSettings
from api.metrics import GatewayMetrics
from api.ports import (
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
