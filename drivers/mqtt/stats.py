"""Counters of the MQTT driver, for /health and /metrics.

Each counter is written by one thread only (the network thread or the event loop), so plain
ints are enough; ``rejected``, written by both (replies are refused on the network thread,
everything else on the event loop), is written under the driver's lock. Readers take a
snapshot with :meth:`DriverStats.snapshot`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (seconds) of the command latency buckets: a loopback round trip is ~1 ms, a
# device on a mobile link tens to hundreds, a retry seconds.
# Fine steps up to 10 ms: a command's round trip on a site's loopback or LAN is there.
LATENCY_BUCKETS = (
    *(0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01),
    *(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@dataclass(slots=True)
class LatencyHistogram:
    """Cumulative-ready bucket counts of one command kind's first-publish -> ack latency."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


@dataclass
class DriverStats:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    last_error: str | None = None
    received: int = 0
    accepted: int = 0  # device messages, validated on the event loop
    replies_accepted: int = 0  # command replies, validated on the network thread
    rejected: Counter[str] = field(default_factory=Counter)
    queue_blocked: int = 0  # times the network thread waited for the consumer
    commands_sent: int = 0
    command_publishes: int = 0
    command_retries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    late_replies: int = 0
    duplicate_replies: int = 0
    foreign_replies: int = 0
    # (command kind, final status) -> count; command kind -> ack latency
    results: Counter[tuple[str, str]] = field(default_factory=Counter)
    ack_latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    takeovers: int = 0  # the broker said another client took our client id (reason 0x8E)
    sessions_lost: int = 0  # a reconnect found no session: taken over, or the broker forgot

    def snapshot(
        self, queue_depth: int = 0, pending_commands: int = 0, unacked: int = 0
    ) -> dict[str, Any]:
        """A plain dict (JSON-ready) of every counter."""
        return {
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "received": self.received,
            "accepted": self.accepted + self.replies_accepted,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "queue_depth": queue_depth,
            "unacked": unacked,  # received, not yet acknowledged to the broker
            "queue_blocked": self.queue_blocked,
            "commands_sent": self.commands_sent,
            "command_publishes": self.command_publishes,
            "command_retries": self.command_retries,
            "pending_commands": pending_commands,
            "outcomes": dict(self.outcomes),
            "results": [
                {"cmd": cmd, "status": status, "count": n}
                for (cmd, status), n in sorted(self.results.items())
            ],
            "ack_latency": {
                cmd: {"le": list(LATENCY_BUCKETS), "counts": list(h.counts), "sum": h.total}
                for cmd, h in sorted(self.ack_latency.items())
            },
            "late_replies": self.late_replies,
            "duplicate_replies": self.duplicate_replies,
            "foreign_replies": self.foreign_replies,
            "takeovers": self.takeovers,
            "sessions_lost": self.sessions_lost,
        }
