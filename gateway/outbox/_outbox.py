"""The durable, prioritised outbox: what the backend has not yet acknowledged.

Events live next to the state (in the same database), so an event can commit in the same
transaction as the trip or command it reports. Per-class counters are kept in a table updated in
that same transaction, so opening an outbox with a million pending events reads three rows, not
a million.

Bounds drop only STATE events (the latest state of something, which a newer report repeats),
oldest first. CRITICAL and OUTCOME events (alerts; trips, taps, command outcomes: money and
safety) are never dropped by any bound: they count towards ``max_pending`` but never give way,
so they alone can hold the outbox above it (``over_bound``); the disk is their bound.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from dockgate.gateway.outbox._priority import DROPPABLE, NEVER_DROPPED, Priority
from dockgate.gateway.outbox.events import OutboxEvent
from dockgate.gateway.store import BaseDatabase, Connection, StoreError, migrate

RawEvent = tuple[int, int, str, str, float, bytes]
_CACHE = "outbox.pending"
_EXISTING = "SELECT cursor FROM outbox_events WHERE idempotency_key=?"
_EXISTING_MANY = (
    "SELECT idempotency_key, cursor, compact_key, priority FROM outbox_events"
    " WHERE idempotency_key IN ({})"
)
_KEYS_PER_QUERY = 500
_COMPACT = "DELETE FROM outbox_events WHERE compact_key=? AND priority=?"
_INSERT = (
    "INSERT INTO outbox_events(cursor, priority, kind, idempotency_key, compact_key,"
    " created_at, payload) VALUES (?,?,?,?,?,?,?)"
)
#: Cursors come from this counter, moved in the appending transaction: a rollback gives its
#: numbers back (a PostgreSQL sequence would not: the feed would show gaps).
_TAKE_CURSORS = (
    "UPDATE outbox_meta SET value = value + ? WHERE name = 'last_cursor' RETURNING value"
)
_LAST_CURSOR = "SELECT value FROM outbox_meta WHERE name = 'last_cursor'"


#: An event to append: (kind, payload, idempotency_key, priority, compact_key).
NewEvent = tuple[str, Any, str, Priority, str | None]
#: A typed event to publish: (event, idempotency_key, compact_key).
Publication = tuple[OutboxEvent, str, str | None]


DEFAULT_LIMITS: dict[Priority, int | None] = {
    Priority.CRITICAL: None,
    Priority.OUTCOME: None,
    Priority.STATE: 200_000,
}


@dataclass(frozen=True, slots=True)
class Event:
    """One pending event as the backend receives it."""

    cursor: int
    priority: Priority
    kind: str
    idempotency_key: str
    created_at: float
    payload: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "priority": self.priority.name.lower(),
            "kind": self.kind,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class ClassStats:
    pending: int
    appended: int
    dropped: int
    compacted: int
    acked: int


class Outbox:
    """Append events, read them since a cursor in pages, acknowledge them up to a cursor.

    ``limits`` bounds a droppable class (STATE; ``None``: unbounded): past its bound its
    oldest events are dropped. A limit given for CRITICAL or OUTCOME is ignored: those are
    never dropped. ``max_pending`` bounds the whole outbox: past it, the oldest STATE events
    are dropped; CRITICAL and OUTCOME count towards it but never give way. Every drop is
    counted (``stats``).
    """

    def __init__(
        self,
        db: BaseDatabase,
        *,
        limits: Mapping[Priority, int | None] | None = None,
        max_pending: int | None = 2_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        for cls in NEVER_DROPPED:
            self.limits[cls] = None
        for cls, limit in self.limits.items():
            if limit is not None and limit < 1:
                raise StoreError(f"outbox limit for {cls.name} must be at least 1")
        self.max_pending = max_pending
        migrate(db)  # the outbox tables are part of the one schema history
        self._listeners: list[Callable[[int], None]] = []
        self._listeners_lock = threading.Lock()

    # -- class counters ----------------------------------------------------------------------
    def _counts(self, conn: Connection) -> dict[Priority, int]:
        """Pending events per class, kept in memory (``db.cache``) next to the table.

        The ``outbox_stats`` table stays the durable truth, updated in the same transaction
        as every append, drop and ack; memory saves reading it on each append. The copy is
        loaded on first use and dropped by the database on any rollback (then reloaded).
        """
        counts = self.db.cache.get(_CACHE)
        if counts is None:
            counts = self.db.cache[_CACHE] = self._pending_in(conn)
        return counts

    # -- writing ---------------------------------------------------------------------------
    def publish(
        self, event: OutboxEvent, *, idempotency_key: str, compact_key: str | None = None
    ) -> int:
        """Append a typed event (its kind and class are its own); see ``append``."""
        return self.publish_many([(event, idempotency_key, compact_key)])[0]

    def publish_many(self, events: Sequence[Publication]) -> list[int]:
        """Append typed events ``(event, idempotency_key, compact_key)``; see ``append_many``."""
        return self.append_many(
            [(e.KIND, e.payload(), key, e.PRIORITY, compact) for e, key, compact in events]
        )

    def append(
        self,
        kind: str,
        payload: Any,
        *,
        idempotency_key: str,
        priority: Priority = Priority.STATE,
        compact_key: str | None = None,
    ) -> int:
        """Append one event and return its cursor (the existing one for a repeated key).

        Inside ``db.transaction()`` it commits with the caller's other writes. A
        ``compact_key`` (e.g. ``"vehicle:42"``) replaces an older pending event with the same
        key in the STATE class: only the latest state matters.
        """
        return self.append_many([(kind, payload, idempotency_key, priority, compact_key)])[0]

    def append_many(self, events: Sequence[NewEvent]) -> list[int]:
        """Append events in one transaction (or the caller's), in order; their cursors.

        Each is ``(kind, payload, idempotency_key, priority, compact_key)`` and behaves
        exactly as ``append`` would one after the other (repeated keys, compaction, bounds).
        A batch whose events do not touch each other (no key or compaction key twice, no
        repeated event compacted by another) and that no bound cuts is written with one
        statement per table, not three per event: that is every batch of vehicle states the
        telemetry path appends, short of a full outbox.
        """
        if not events:
            return []
        rows = [_row(event) for event in events]
        with self.db.transaction() as conn:
            counts = self._counts(conn)
            existing = _existing(conn, [row.key for row in rows])
            now = self.clock()
            if _independent(rows, existing) and self._room_for(rows, counts):
                cursors = self._append_together(conn, rows, existing, counts, now)
            else:
                cursors = self._append_in_turn(conn, rows, counts, now)
            if cursors:
                last = max(cursors)
                self.db.after_commit(lambda: self._notify(last))
        return cursors

    def _room_for(self, rows: list[_Row], counts: dict[Priority, int]) -> bool:
        """Whether every bound holds with ``rows`` added (none compacted): then no event is
        dropped, and appending them together counts exactly what appending in turn does."""
        added = Counter(row.priority for row in rows)
        grown = {cls: counts.get(cls, 0) + added.get(cls, 0) for cls in {*counts, *added}}
        return not any(self._over(grown, cls) for cls in added)

    def _append_together(
        self,
        conn: Connection,
        rows: list[_Row],
        existing: dict[str, _Stored],
        counts: dict[Priority, int],
        now: float,
    ) -> list[int]:
        """Compact, insert and count a batch of independent events in bulk."""
        fresh = [row for row in rows if row.key not in existing]
        delta: dict[Priority, list[int]] = {}  # priority -> [appended, compacted]
        for priority, compact_keys in _compaction_targets(fresh).items():
            compacted = conn.executemany(
                _COMPACT, [(key, int(priority)) for key in compact_keys]
            ).rowcount
            delta.setdefault(priority, [0, 0])[1] += compacted
            counts[priority] -= compacted
        for row in fresh:
            delta.setdefault(row.priority, [0, 0])[0] += 1
            counts[row.priority] += 1
        new_cursors = iter(_insert_all(conn, fresh, now))
        cursors = [
            existing[row.key].cursor if row.key in existing else next(new_cursors) for row in rows
        ]
        self._flush(conn, delta)
        return cursors

    def _append_in_turn(
        self, conn: Connection, rows: list[_Row], counts: dict[Priority, int], now: float
    ) -> list[int]:
        """Append events one after the other (a batch whose events touch each other)."""
        cursors: list[int] = []
        delta: dict[Priority, list[int]] = {}  # priority -> [appended, compacted]
        for row in rows:
            found = conn.execute(_EXISTING, (row.key,)).fetchone()
            if found is not None:
                cursors.append(int(found[0]))
                continue
            compacted = 0
            if row.compact_key is not None and row.priority >= Priority.STATE:
                compacted = conn.execute(_COMPACT, (row.compact_key, int(row.priority))).rowcount
            cursors.append(_insert_all(conn, [row], now)[0])
            d = delta.setdefault(row.priority, [0, 0])
            d[0] += 1
            d[1] += compacted
            counts[row.priority] += 1 - compacted
            if self._over(counts, row.priority):
                self._flush(conn, delta)
                self._enforce_limits(conn, row.priority, counts)
        self._flush(conn, delta)
        return cursors

    @staticmethod
    def _flush(conn: Connection, delta: dict[Priority, list[int]]) -> None:
        for priority, (appended, compacted) in delta.items():
            conn.execute(
                "UPDATE outbox_stats SET pending=pending+?-?, appended=appended+?,"
                " compacted=compacted+? WHERE priority=?",
                (appended, compacted, appended, compacted, int(priority)),
            )
        delta.clear()

    def _over(self, counts: dict[Priority, int], priority: Priority) -> bool:
        """Whether a bound now asks for a drop (never when nothing droppable is pending)."""
        limit = self.limits.get(priority)
        if limit is not None and counts[priority] > limit:
            return True
        return (
            self.max_pending is not None
            and sum(counts.values()) > self.max_pending
            and any(counts[cls] for cls in DROPPABLE)
        )

    def _drop_oldest(
        self, conn: Connection, priority: Priority, count: int, counts: dict[Priority, int]
    ) -> None:
        dropped = conn.execute(
            "DELETE FROM outbox_events WHERE cursor IN (SELECT cursor FROM outbox_events"
            " WHERE priority=? ORDER BY cursor LIMIT ?)",
            (int(priority), count),
        ).rowcount
        conn.execute(
            "UPDATE outbox_stats SET pending=pending-?, dropped=dropped+? WHERE priority=?",
            (dropped, dropped, int(priority)),
        )
        counts[priority] -= dropped

    @staticmethod
    def _pending_in(conn: Connection) -> dict[Priority, int]:
        rows = conn.execute("SELECT priority, pending FROM outbox_stats").fetchall()
        return {Priority(p): int(n) for p, n in rows}

    def _enforce_limits(
        self, conn: Connection, priority: Priority, counts: dict[Priority, int]
    ) -> None:
        limit = self.limits.get(priority)
        if limit is not None and counts[priority] > limit:
            self._drop_oldest(conn, priority, counts[priority] - limit, counts)
        if self.max_pending is None:
            return
        excess = sum(counts.values()) - self.max_pending
        for victim in DROPPABLE:
            if excess <= 0:
                break
            take = min(excess, counts[victim])
            if take:
                before = counts[victim]
                self._drop_oldest(conn, victim, take, counts)
                excess -= before - counts[victim]

    # -- reading and acknowledging ------------------------------------------------------------
    def read(self, since: int = 0, limit: int = 500) -> list[Event]:
        """Pending events with a cursor above ``since``, oldest first, at most ``limit``."""
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT cursor, priority, kind, idempotency_key, created_at, payload"
                " FROM outbox_events WHERE cursor > ? ORDER BY cursor LIMIT ?",
                (since, max(1, min(limit, 10_000))),
            ).fetchall()
        return [Event(r[0], Priority(r[1]), r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]

    def read_raw(
        self, since: int = 0, limit: int = 500
    ) -> list[tuple[int, int, str, str, float, bytes]]:
        """Like ``read`` but with the payload as its stored JSON bytes (for fast serving)."""
        with self.db.lock:
            return self.db.conn.execute(
                "SELECT cursor, priority, kind, idempotency_key, created_at, payload"
                " FROM outbox_events WHERE cursor > ? ORDER BY cursor LIMIT ?",
                (since, max(1, min(limit, 10_000))),
            ).fetchall()

    def ack(self, cursor: int, *, chunk: int = 5_000) -> int:
        """The backend has every event up to ``cursor``: forget them. Returns how many."""
        total = 0
        while True:
            with self.db.transaction() as conn:
                acked = self.acked_cursor
                if cursor <= acked:
                    return total
                upto = conn.execute(
                    "SELECT max(cursor) FROM (SELECT cursor FROM outbox_events"
                    " WHERE cursor > ? AND cursor <= ? ORDER BY cursor LIMIT ?) AS chunk",
                    (acked, cursor, chunk),
                ).fetchone()[0]
                upto = cursor if upto is None else upto
                counts = conn.execute(
                    "SELECT priority, count(*) FROM outbox_events WHERE cursor > ?"
                    " AND cursor <= ? GROUP BY priority",
                    (acked, upto),
                ).fetchall()
                conn.execute(
                    "DELETE FROM outbox_events WHERE cursor > ? AND cursor <= ?", (acked, upto)
                )
                pending = self._counts(conn)
                for priority, count in counts:
                    conn.execute(
                        "UPDATE outbox_stats SET pending=pending-?, acked=acked+? WHERE priority=?",
                        (count, count, priority),
                    )
                    pending[Priority(priority)] -= count
                    total += count
                conn.execute("UPDATE outbox_meta SET value=? WHERE name='acked_cursor'", (upto,))

    @property
    def acked_cursor(self) -> int:
        with self.db.lock:
            return int(
                self.db.conn.execute(
                    "SELECT value FROM outbox_meta WHERE name='acked_cursor'"
                ).fetchone()[0]
            )

    @property
    def last_cursor(self) -> int:
        """The highest cursor ever handed out (0 before the first event)."""
        with self.db.lock:
            row = self.db.conn.execute(_LAST_CURSOR).fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict[Priority, ClassStats]:
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT priority, pending, appended, dropped, compacted, acked FROM outbox_stats"
            ).fetchall()
        return {Priority(r[0]): ClassStats(*r[1:]) for r in rows}

    def over_bound(self) -> bool:
        """Whether the pending events exceed ``max_pending``: only CRITICAL and OUTCOME
        events, which no bound drops, can hold the outbox there (every STATE one is gone)."""
        if self.max_pending is None:
            return False
        return sum(self.pending().values()) > self.max_pending

    def pending(self) -> dict[Priority, int]:
        """Unacknowledged events per class."""
        with self.db.lock:
            return self._pending_in(self.db.conn)

    def oldest_pending(self) -> float | None:
        """Creation time of the oldest unacknowledged event, or ``None``."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT created_at FROM outbox_events ORDER BY cursor LIMIT 1"
            ).fetchone()
        return float(row[0]) if row else None

    # -- live readers ----------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(cursor)`` after each committed append; returns an unsubscribe."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _notify(self, cursor: int) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(cursor)


class _Row(NamedTuple):
    """An event to append, checked and serialised (a tuple: one is made per device report)."""

    kind: str
    body: bytes
    key: str
    priority: Priority
    compact_key: str | None

    def values(self, now: float) -> tuple[int, str, str, str | None, float, bytes]:
        return (int(self.priority), self.kind, self.key, self.compact_key, now, self.body)


@dataclass(frozen=True, slots=True)
class _Stored:
    """A pending event already holding an idempotency key of the batch."""

    cursor: int
    compact_key: str | None
    priority: int


def _row(event: NewEvent) -> _Row:
    kind, payload, key, priority, compact_key = event
    if not kind or not key:
        raise StoreError("an outbox event needs a kind and an idempotency key")
    return _Row(kind, orjson.dumps(payload), key, Priority(priority), compact_key)


def _existing(conn: Connection, keys: list[str]) -> dict[str, _Stored]:
    """The pending events holding any of ``keys``, by key."""
    found: dict[str, _Stored] = {}
    for i in range(0, len(keys), _KEYS_PER_QUERY):
        part = keys[i : i + _KEYS_PER_QUERY]
        sql = _EXISTING_MANY.format(",".join("?" * len(part)))
        for key, cursor, compact_key, priority in conn.execute(sql, part):
            found[key] = _Stored(int(cursor), compact_key, int(priority))
    return found


def _compaction_key(row: _Row) -> tuple[str, int] | None:
    if row.compact_key is None or row.priority < Priority.STATE:
        return None
    return row.compact_key, int(row.priority)


def _independent(rows: list[_Row], existing: dict[str, _Stored]) -> bool:
    """Whether appending ``rows`` together gives what appending them in turn would: no key
    twice, no compaction key twice among the new ones, and no pending event the batch
    repeats that one of its new events would compact (the order would then matter)."""
    keys = {row.key for row in rows}
    if len(keys) != len(rows):
        return False
    targets = [_compaction_key(row) for row in rows if row.key not in existing]
    wanted = {t for t in targets if t is not None}
    if len(wanted) != sum(t is not None for t in targets):
        return False
    return not any((s.compact_key, s.priority) in wanted for s in existing.values())


def _compaction_targets(fresh: list[_Row]) -> dict[Priority, list[str]]:
    """The compaction keys the new events replace, by class."""
    targets: dict[Priority, list[str]] = {}
    for row in fresh:
        if _compaction_key(row) is not None and row.compact_key is not None:
            targets.setdefault(row.priority, []).append(row.compact_key)
    return targets


def _insert_all(conn: Connection, fresh: list[_Row], now: float) -> range:
    """Insert ``fresh`` with one statement; their cursors, the next ones of the counter.

    Consecutive and gapless as readers see them: the counter moves in this transaction,
    which holds the database's only writer, and a rollback takes the numbers back.
    """
    if not fresh:
        return range(0)
    last = int(conn.execute(_TAKE_CURSORS, (len(fresh),)).fetchone()[0])
    first = last - len(fresh) + 1
    conn.executemany(_INSERT, [(first + i, *row.values(now)) for i, row in enumerate(fresh)])
    return range(first, last + 1)
