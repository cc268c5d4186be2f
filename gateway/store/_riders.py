"""Riders: their credit (cents), blocking, the first-purchase flag, and the rider of a record."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dockgate.gateway.store._db import Database, NotFound
from dockgate.gateway.store._rows import Rider, columns
from dockgate.gateway.store._sql import chunked, every, marks, must, one, require

_RIDER = f"SELECT {columns(Rider)} FROM riders"


class Riders:
    """Rider rows, as the backend pushes them and as the flow charges them."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def upsert(
        self,
        id: int,
        *,
        email: str | None = None,
        name: str | None = None,
        credit: int | None = None,
        first_purchase_done: bool | None = None,
    ) -> None:
        """Create or update a rider; fields left ``None`` keep their value (0 when new)."""
        first = None if first_purchase_done is None else int(first_purchase_done)
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO riders(id, email, name, credit, first_purchase_done, updated_at)"
                " VALUES (?,?,?,COALESCE(?,0),COALESCE(?,0),?) ON CONFLICT(id) DO UPDATE SET"
                " email=COALESCE(excluded.email, email), name=COALESCE(excluded.name, name),"
                " credit=COALESCE(?, credit),"
                " first_purchase_done=COALESCE(?, first_purchase_done),"
                " updated_at=excluded.updated_at",
                (id, email, name, credit, first, self.clock(), credit, first),
            )

    def get(self, id: int) -> Rider:
        return must(one(self.db, Rider, f"{_RIDER} WHERE id=?", (id,)), f"rider {id}")

    def by_ids(self, ids: Iterable[int]) -> dict[int, Rider]:
        """The riders with these ids, by id (unknown ones left out): one query per 500."""
        found: dict[int, Rider] = {}
        for part in chunked(ids):
            sql = f"{_RIDER} WHERE id IN ({marks(len(part))})"
            for rider in every(self.db, Rider, sql, part):
                found[rider.id] = rider
        return found

    def page(self, *, limit: int = 100, after_id: int = 0) -> list[Rider]:
        """Riders with an id above ``after_id``, by id, at most ``limit``."""
        sql = f"{_RIDER} WHERE id > ? ORDER BY id LIMIT ?"
        return every(self.db, Rider, sql, (after_id, limit))

    def of_record(self, record_id: int) -> Rider | None:
        """The rider a record's product is paired to, if any."""
        return one(
            self.db,
            Rider,
            f"SELECT {columns(Rider, 'r.')} FROM records c JOIN products p ON c.product_id=p.id"
            " JOIN riders r ON p.rider_id=r.id WHERE c.id=?",
            (record_id,),
        )

    def set_blocked(self, rider_id: int, blocked: bool, reason: str | None = None) -> None:
        now = self.clock()
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE riders SET blocked=?, block_reason=?, blocked_at=?, updated_at=?"
                " WHERE id=?",
                (
                    int(blocked),
                    reason if blocked else None,
                    now if blocked else None,
                    now,
                    rider_id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"rider {rider_id} not found")

    def add_credit(self, rider_id: int, delta: int) -> int:
        """Change a rider's credit (in cents) and return the new balance."""
        with self.db.transaction() as c:
            require(self.db, "riders", rider_id, "rider")
            c.execute(
                "UPDATE riders SET credit = credit + ?, updated_at=? WHERE id=?",
                (delta, self.clock(), rider_id),
            )
            return self.get(rider_id).credit
