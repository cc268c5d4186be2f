"""Replay protection: the last accepted read counter per UID, in SQLite (WAL).

A message is accepted only if its counter is strictly greater than the stored one. The
check and the update are one SQL statement (an UPSERT with a WHERE clause), so two
verifiers sharing the file can never both accept the same (UID, counter).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sun_counters (
    uid TEXT PRIMARY KEY,
    read_ctr INTEGER NOT NULL
) WITHOUT ROWID
"""
_ACCEPT = """
INSERT INTO sun_counters (uid, read_ctr) VALUES (?, ?)
ON CONFLICT (uid) DO UPDATE SET read_ctr = excluded.read_ctr
WHERE excluded.read_ctr > sun_counters.read_ctr
"""


class ReplayStore:
    """Persistent last-accepted counters, keyed by the UID (lowercase hex)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    def accept(self, uid: bytes, read_ctr: int) -> bool:
        """Record ``read_ctr`` for ``uid`` if it is strictly greater; say whether it was."""
        with self._lock:
            cur = self._db.execute(_ACCEPT, (uid.hex(), read_ctr))
            return cur.rowcount == 1

    def last(self, uid: bytes) -> int | None:
        """The last accepted counter for ``uid``, or None if the UID was never seen."""
        with self._lock:
            row = self._db.execute(
                "SELECT read_ctr FROM sun_counters WHERE uid = ?", (uid.hex(),)
            ).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
