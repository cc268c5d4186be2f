"""The durable, prioritised outbox of events and alerts for the fleet backend.

Production code publishes typed events (``dockgate.gateway.outbox.events``); ``append`` takes
any kind and JSON payload (benchmarks and tests fill the outbox with it).
"""

from dockgate.gateway.outbox import events
from dockgate.gateway.outbox._outbox import (
    DEFAULT_LIMITS,
    ClassStats,
    Event,
    NewEvent,
    Outbox,
    Publication,
)
from dockgate.gateway.outbox._priority import DROPPABLE, NEVER_DROPPED, Priority
from dockgate.gateway.outbox.events import OutboxEvent

__all__ = [
    "DEFAULT_LIMITS",
    "DROPPABLE",
    "NEVER_DROPPED",
    "ClassStats",
    "Event",
    "NewEvent",
    "Outbox",
    "OutboxEvent",
    "Priority",
    "Publication",
    "events",
]
