"""Counters of the MQTT driver, for /health and /metrics.

Each counter is written by one thread only (the network thread or the event loop), so plain
ints are enough; readers take a snapshot with :meth:`DriverStats.snapshot`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DriverStats:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    last_error: str | None = None
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    queue_blocked: int = 0  # times the network thread waited for the consumer
    commands_sent: int = 0
    command_publishes: int = 0
    command_retries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    late_replies: int = 0
    duplicate_replies: int = 0
    foreign_replies: int = 0

    def snapshot(self, queue_depth: int = 0, pending_commands: int = 0) -> dict[str, Any]:
        """A plain dict (JSON-ready) of every counter."""
        return {
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "received": self.received,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "queue_depth": queue_depth,
            "queue_blocked": self.queue_blocked,
            "commands_sent": self.commands_sent,
            "command_publishes": self.command_publishes,
            "command_retries": self.command_retries,
            "pending_commands": pending_commands,
            "outcomes": dict(self.outcomes),
            "late_replies": self.late_replies,
            "duplicate_replies": self.duplicate_replies,
            "foreign_replies": self.foreign_replies,
        }
