"""Riders: their credit (cents), blocking, the first-purchase flag, and the rider of a record."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dockgate.gateway.store._db import BaseDatabase, NotFound, StoreError
from dockgate.gateway.store._keyset import FIRST, Filters, Keyset, Listing, Page, Sort
from dockgate.gateway.store._rows import Rider, columns
from dockgate.gateway.store._sql import chunked, every, marks, must, one, require

_RIDER = f"SELECT {columns(Rider)} FROM riders"
_RIDERS = Listing(Rider, columns(Rider, "r."), "riders r", "r.id")
_TRIP_COUNT = "(SELECT count(*) FROM trips t WHERE t.rider_id = r.id)"
_LAST_ACTIVITY = (
    "(SELECT max(COALESCE(t.ended_at, t.started_at)) FROM trips t WHERE t.rider_id = r.id)"
)
#: ``RiderQuery.sort_by``: the SQL each sort key orders by (never active: before everyone).
_SORTS = {"last_activity": f"COALESCE({_LAST_ACTIVITY}, {FIRST})", "trip_count": _TRIP_COUNT}
RIDER_SORTS = tuple(_SORTS)
_TRIPPED = "EXISTS (SELECT 1 FROM trips t WHERE t.rider_id = r.id)"
_TRIPPED_IN = (
    "EXISTS (SELECT 1 FROM trips t JOIN vehicles v ON v.id = t.vehicle_id"
    " WHERE t.rider_id = r.id AND v.network_id IN ({}))"
)


@dataclass(frozen=True, slots=True)
class RiderQuery:
    """Riders (the dashboard's users) with its filters, a page at a time.

    A rider belongs to the networks of the vehicles they rode. With ``network_ids`` only
    those networks' riders are listed (empty: every rider); ``without_network`` True adds the
    riders who never rode, False leaves them out. A rider's activity is what this gateway saw:
    ``last_activity`` is their last trip's start or end (Unix time), ``trip_count`` their
    trips here. ``email`` matches a part (any case); bounds are inclusive.
    """

    network_ids: Sequence[int] = ()
    without_network: bool | None = None
    user_id_min: int | None = None
    user_id_max: int | None = None
    email: str | None = None
    blocked: bool | None = None
    last_activity_min: float | None = None
    last_activity_max: float | None = None
    trip_count_min: float | None = None
    trip_count_max: float | None = None
    sort_by: str | None = None
    keyset: Keyset = field(default_factory=Keyset)

    def filters(self) -> Filters:
        """The WHERE clauses of this query (every page's, before the keyset's)."""
        f = Filters()
        self._networks(f)
        f.between("r.id", self.user_id_min, self.user_id_max)
        f.contains("r.email", self.email)
        f.compare("r.blocked", "=", None if self.blocked is None else int(self.blocked))
        f.between(_LAST_ACTIVITY, self.last_activity_min, self.last_activity_max)
        f.between(_TRIP_COUNT, self.trip_count_min, self.trip_count_max)
        return f

    def _networks(self, f: Filters) -> None:
        ids = list(self.network_ids)
        rode = _TRIPPED_IN.format(marks(len(ids))) if ids else _TRIPPED
        if self.without_network:
            f.add(f"({rode} OR NOT {_TRIPPED})", *ids)
        elif ids or self.without_network is not None:
            f.add(rode, *ids)

    def sort(self) -> Sort | None:
        if self.sort_by is None:
            return None
        if self.sort_by not in _SORTS:
            raise StoreError(f"cannot sort riders by {self.sort_by!r}")
        return Sort(_SORTS[self.sort_by])


class Riders:
    """Rider rows, as the backend pushes them and as the flow charges them."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
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
                " email=COALESCE(excluded.email, riders.email),"
                " name=COALESCE(excluded.name, riders.name), credit=COALESCE(?, riders.credit),"
                " first_purchase_done=COALESCE(?, riders.first_purchase_done),"
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

    def search(self, query: RiderQuery) -> Page[Rider]:
        """``query``'s page and how many riders its filters match in all."""
        return _RIDERS.page(self.db, query.filters(), query.keyset, query.sort())

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
