"""The command journal: every command is written down before it is sent, and its end after.

One row per idempotency key: a retried request or a re-delivered tap finds its command
instead of making a second one. ``journaled`` -> ``sent`` (just before the wire) -> ``acked``,
``failed`` or ``timeout``; what is still ``journaled`` or ``sent`` at start-up is what a
restart must settle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from dockgate.gateway.store._db import BaseDatabase, NotFound, StoreError
from dockgate.gateway.store._rows import JournalEntry, columns
from dockgate.gateway.store._sql import every, must, one

COMMAND_STATES = ("journaled", "sent", "acked", "failed", "timeout")
TARGET_KINDS = ("vehicle", "spot", "station")
_ENTRY = f"SELECT {columns(JournalEntry)} FROM command_journal"
_SETTLE = (
    "UPDATE command_journal SET state=?, outcome=COALESCE(?, outcome), updated_at=? WHERE id=?"
)


def _state(state: str) -> str:
    if state not in COMMAND_STATES:
        raise StoreError(f"unknown command state {state!r}")
    return state


def _outcome(outcome: dict[str, Any] | None) -> str | None:
    return None if outcome is None else json.dumps(outcome)


class CommandJournal:
    """Journal, mark and settle commands; list what a restart must settle."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def journal(
        self,
        idempotency_key: str,
        target_kind: str,
        target_id: int,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        trip_id: int | None = None,
    ) -> tuple[JournalEntry, bool]:
        """Write a command down before it is sent. Returns (entry, created); the same key
        returns the existing entry, so a retried request never makes a second command."""
        if target_kind not in TARGET_KINDS:
            raise StoreError("target_kind must be vehicle, spot or station")
        now = self.clock()
        text = json.dumps(args or {}, sort_keys=True)
        with self.db.transaction() as c:
            # One statement in the usual case (a new key); an existing key is read back.
            cur = c.execute(
                "INSERT INTO command_journal(idempotency_key, target_kind, target_id, command,"
                " args, trip_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(idempotency_key) DO NOTHING RETURNING id",
                (idempotency_key, target_kind, target_id, command, text, trip_id, now, now),
            )
            inserted = cur.fetchone()
            if inserted is None:
                existing = self.by_key(idempotency_key)
                if existing is None:  # pragma: no cover - only the key can conflict
                    raise StoreError(f"command {idempotency_key!r} was not journaled")
                return existing, False
            entry = JournalEntry(  # the row as written: no need to read it back
                int(inserted[0]),
                idempotency_key,
                target_kind,
                target_id,
                command,
                text,
                "journaled",
                None,
                trip_id,
                now,
                now,
            )
            return entry, True

    def mark(self, id: int, state: str, outcome: dict[str, Any] | None = None) -> None:
        """Move a journaled command on: ``sent`` before the wire, then acked/failed/timeout."""
        row = (_state(state), _outcome(outcome), self.clock(), id)
        with self.db.transaction() as c:
            if c.execute(_SETTLE, row).rowcount == 0:
                raise NotFound(f"command {id} not found")

    def mark_many(self, ids: Iterable[int], state: str) -> None:
        """``mark`` for many (no outcome), one prepared statement."""
        _state(state)
        now = self.clock()
        with self.db.transaction() as c:
            c.executemany(
                "UPDATE command_journal SET state=?, updated_at=? WHERE id=?",
                [(state, now, id_) for id_ in ids],
            )

    def settle_many(self, items: Iterable[tuple[int, str, dict[str, Any] | None]]) -> None:
        """``mark`` for many ``(id, state, outcome)``, one prepared statement, one
        transaction (or the caller's); ``NotFound`` (nothing written) if any id is unknown."""
        now = self.clock()
        rows = [(_state(state), _outcome(outcome), now, id_) for id_, state, outcome in items]
        if not rows:
            return
        with self.db.transaction() as c, self.db.savepoint():
            cur = c.executemany(_SETTLE, rows)
            if cur.rowcount != len(rows):
                raise NotFound(f"{len(rows) - cur.rowcount} of {len(rows)} commands not found")

    def get(self, id: int) -> JournalEntry:
        return must(one(self.db, JournalEntry, f"{_ENTRY} WHERE id=?", (id,)), f"command {id}")

    def by_key(self, idempotency_key: str) -> JournalEntry | None:
        return one(self.db, JournalEntry, f"{_ENTRY} WHERE idempotency_key=?", (idempotency_key,))

    def unfinished(self) -> list[JournalEntry]:
        """Commands journaled or sent but without an outcome: what a restart must settle
        (a ``sent`` one may have reached the device and must not be sent blindly again)."""
        sql = f"{_ENTRY} WHERE state IN ('journaled','sent') ORDER BY id"
        return every(self.db, JournalEntry, sql)
