"""The API's idempotency keys: the first answer to a key is the answer to every retry of it.

Keys expire after ``ttl`` seconds and are bounded (``max_keys``, the oldest pruned first), so a
backend that sends a fresh key per request cannot grow the database without end.
"""

from __future__ import annotations

from collections.abc import Callable

from dockgate.gateway.store._db import BaseDatabase
from dockgate.gateway.store._rows import StoredResponse
from dockgate.gateway.store._sql import one

PRUNE_EVERY = 64  # remembered answers between two prunes


class IdempotencyKeys:
    """Remember answers by (scope, key); read them back while fresh."""

    def __init__(
        self,
        db: BaseDatabase,
        clock: Callable[[], float],
        *,
        ttl: float = 24 * 3600.0,
        max_keys: int = 100_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self.max_keys = max_keys
        self._remembered = 0

    def response(self, scope: str, key: str) -> StoredResponse | None:
        """The first answer given to ``key`` in ``scope``, unless older than the TTL."""
        return one(
            self.db,
            StoredResponse,
            "SELECT fingerprint, response FROM idempotency WHERE scope=? AND key=?"
            " AND created_at >= ?",
            (scope, key, self.clock() - self.ttl),
        )

    def remember(self, scope: str, key: str, fingerprint: str, response: str) -> None:
        """Keep an answer for its key (an expired one is replaced); now and then, prune."""
        now = self.clock()
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO idempotency(scope, key, fingerprint, response, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(scope, key) DO UPDATE SET"
                " fingerprint=excluded.fingerprint, response=excluded.response,"
                " created_at=excluded.created_at WHERE idempotency.created_at < ?",
                (scope, key, fingerprint, response, now, now - self.ttl),
            )
        self._remembered += 1
        if self._remembered % PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> int:
        """Forget keys older than the TTL, then the oldest beyond ``max_keys``."""
        with self.db.transaction() as c:
            removed = c.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (self.clock() - self.ttl,)
            ).rowcount
            (kept,) = c.execute("SELECT count(*) FROM idempotency").fetchone()
            if kept > self.max_keys:
                removed += c.execute(
                    "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key"
                    " FROM idempotency ORDER BY created_at LIMIT ?)",
                    (kept - self.max_keys,),
                ).rowcount
        return removed
