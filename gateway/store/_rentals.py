"""Pending rentals on disk: a spot opened for a rider survives a gateway restart.

The flow writes one in the same transaction as the unlock's journal entry and deletes it with
the trip start or the cancellation, so after a crash the undock of an already opened spot
still starts the rider's trip.
"""

from __future__ import annotations

from dataclasses import astuple, fields

from dockgate.gateway.store._db import BaseDatabase
from dockgate.gateway.store._rows import PendingRental, columns
from dockgate.gateway.store._sql import every, marks

_COLUMNS = columns(PendingRental)
_ADD = (  # a rental added again (same key) replaces the earlier one
    f"INSERT INTO flow_rentals({_COLUMNS}) VALUES ({marks(len(fields(PendingRental)))})"
    " ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{f.name} = excluded.{f.name}" for f in fields(PendingRental) if f.name != "key")
)


class PendingRentals:
    """Insert, update and delete pending rentals; joins the caller's open transaction."""

    def __init__(self, db: BaseDatabase) -> None:
        self.db = db

    def add(self, rental: PendingRental) -> None:
        with self.db.transaction() as c:
            c.execute(_ADD, astuple(rental))

    def set_state(self, key: str, state: str) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE flow_rentals SET state=? WHERE key=?", (state, key))

    def remove(self, key: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM flow_rentals WHERE key=?", (key,))

    def all(self) -> list[PendingRental]:
        """Every pending rental, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM flow_rentals ORDER BY created_at"
        return every(self.db, PendingRental, sql)
