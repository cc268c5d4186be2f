"""The durable, prioritised outbox of events and alerts for the fleet backend."""

from dockgate.gateway.outbox._outbox import DEFAULT_LIMITS, ClassStats, Event, Outbox, Priority

__all__ = ["DEFAULT_LIMITS", "ClassStats", "Event", "Outbox", "Priority"]
