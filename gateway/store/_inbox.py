"""What the gateway took in from devices: message identities and station status clocks.

The broker redelivers every message whose PUBACK was not sent, including one whose effect
had committed just before a crash. A message whose effect is not idempotent (a spot event,
a power cut, a vehicle event) records its identity in the same transaction as its effect, so
its redelivery is recognised. Identities are kept ``ttl`` seconds (a day: far longer than the
broker keeps a session) and bounded (``max_identities``, the oldest pruned first).

A station status is state: it is applied only if it is newer than the last one applied,
whose clock (:class:`DeviceClock`) is kept here per station.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dockgate.gateway.store._db import BaseDatabase
from dockgate.gateway.store._sql import fetch_one

PRUNE_EVERY = 1024  # identities admitted between two prunes


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """The clock of a device's last applied state.

    ``ts``: its effective device time (ms; the receive time for a skewed clock);
    ``trusted_until``: until when (gateway seconds) a message with a plausible clock keeps a
    restamped one (an implausible clock's) from replacing it.
    """

    ts: int
    trusted_until: float


class Inbox:
    """Identities of device messages already applied; clocks of station statuses."""

    def __init__(
        self,
        db: BaseDatabase,
        clock: Callable[[], float],
        *,
        ttl: float = 24 * 3600.0,
        max_identities: int = 200_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self.max_identities = max_identities
        self._admitted = 0

    # --- identities --------------------------------------------------------------------------
    def admit(self, identity: bytes) -> bool:
        """Record a message's identity (joins the caller's transaction); False if it was
        recorded before: the message is a redelivery. Now and then, prune."""
        with self.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO inbox(identity, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (identity, self.clock()),
            )
            if cur.rowcount == 0:
                return False
            self._admitted += 1
            if self._admitted % PRUNE_EVERY == 0:
                self.prune()
        return True

    def seen(self, identity: bytes) -> bool:
        """Is this identity recorded (and not yet pruned)?"""
        return fetch_one(self.db, "SELECT 1 FROM inbox WHERE identity = ?", (identity,)) is not None

    def prune(self) -> int:
        """Forget identities older than the TTL, then the oldest beyond ``max_identities``."""
        with self.db.transaction() as c:
            removed = c.execute(
                "DELETE FROM inbox WHERE received_at < ?", (self.clock() - self.ttl,)
            ).rowcount
            over = c.execute(
                "SELECT received_at FROM inbox ORDER BY received_at DESC LIMIT 1 OFFSET ?",
                (self.max_identities,),
            ).fetchone()
            if over is not None:
                removed += c.execute(
                    "DELETE FROM inbox WHERE received_at <= ?", (over[0],)
                ).rowcount
        return removed

    def count(self) -> int:
        row = fetch_one(self.db, "SELECT count(*) FROM inbox")
        return int(row[0]) if row else 0

    # --- station status clocks -----------------------------------------------------------------
    def status_clock(self, station_id: int) -> DeviceClock | None:
        """The clock of the station's last applied status (None: none applied yet)."""
        row = fetch_one(
            self.db,
            "SELECT status_ts, trusted_until FROM station_clocks WHERE station_id = ?",
            (station_id,),
        )
        return None if row is None else DeviceClock(int(row[0]), float(row[1]))

    def set_status_clock(self, station_id: int, clock: DeviceClock) -> None:
        """The station's status was applied (joins the caller's transaction)."""
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO station_clocks(station_id, status_ts, trusted_until) VALUES (?,?,?)"
                " ON CONFLICT(station_id) DO UPDATE SET status_ts = excluded.status_ts,"
                " trusted_until = excluded.trusted_until",
                (station_id, clock.ts, clock.trusted_until),
            )
