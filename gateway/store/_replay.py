"""Replay protection: the last accepted SUN read counter per tag UID.

A message is accepted only if its counter is strictly greater than the stored one. The
check and the update are one SQL statement (an UPSERT with a WHERE clause), so two
verifiers sharing the database can never both accept the same (UID, counter).

The counters live in the gateway's database (``store.replay``). A ``ReplayStore`` can also be
opened on a file of its own (``dockgate tag verify --state FILE``): that file gets the same
schema history, so a replay file of an earlier version, which holds only this table, keeps
its counters and opens as well. ``import_file`` takes such a file's counters over.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dockgate.gateway.store._db import BaseDatabase
from dockgate.gateway.store._engines import open_database
from dockgate.gateway.store._schema import migrate

_ACCEPT = (
    "INSERT INTO sun_counters (uid, read_ctr) VALUES (?, ?)"
    " ON CONFLICT (uid) DO UPDATE SET read_ctr = excluded.read_ctr"
    " WHERE excluded.read_ctr > sun_counters.read_ctr"
)


class ReplayStore:
    """Persistent last-accepted counters, keyed by the UID (lowercase hex).

    ``ReplayStore(db)`` joins an open database; ``ReplayStore(path)`` opens (and migrates)
    the SQLite file at ``path`` (or the database a ``postgresql://`` URL names) and closes
    it with ``close()``.
    """

    def __init__(self, target: BaseDatabase | str | Path) -> None:
        self._owned = not isinstance(target, BaseDatabase)
        self.db = target if isinstance(target, BaseDatabase) else open_database(target)
        self.path = Path(self.db.path)
        if self._owned:
            migrate(self.db)

    def accept(self, uid: bytes, read_ctr: int) -> bool:
        """Record ``read_ctr`` for ``uid`` if it is strictly greater; say whether it was."""
        with self.db.lock:
            cur = self.db.conn.execute(_ACCEPT, (uid.hex(), read_ctr))
            return cur.rowcount == 1

    def last(self, uid: bytes) -> int | None:
        """The last accepted counter for ``uid``, or None if the UID was never seen."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT read_ctr FROM sun_counters WHERE uid = ?", (uid.hex(),)
            ).fetchone()
        return None if row is None else int(row[0])

    def import_file(self, path: str | Path) -> int:
        """Take over the counters of a separate replay file (the gateway's before they moved
        into its database): for each UID the higher counter wins, so a message that file
        accepted is never accepted again. Returns how many counters were read; a missing
        file gives 0 and is left alone, as is the file itself.
        """
        source = Path(path)
        if not source.exists():
            return 0
        if self.db.dialect.name == "sqlite" and source.resolve() == self.path.resolve():
            return 0
        legacy = sqlite3.connect(str(source))
        try:
            has_table = legacy.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='sun_counters'"
            ).fetchone()
            rows = (
                legacy.execute("SELECT uid, read_ctr FROM sun_counters").fetchall()
                if has_table
                else []
            )
        finally:
            legacy.close()
        with self.db.transaction() as c:
            c.executemany(_ACCEPT, rows)
        return len(rows)

    def close(self) -> None:
        """Close the database if this store opened it (idempotent)."""
        if self._owned:
            self.db.close()

    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
