"""The site's lease: one row in the shared PostgreSQL database names the node that leads.

Why a row and not a session advisory lock: an advisory lock belongs to a connection, and a
connection can outlive the process's ability to act (a paused process keeps its socket, and
its lock, for as long as the kernel keeps the socket) or die while the process goes on
writing through a new one. A row carries what the fencing check needs and a lock cannot
give: a token that grows at every change of holder, and an expiry that every node reads
against the same clock. Times are the DATABASE's (``clock_timestamp()``, seconds since the
epoch): nodes' clocks never take part, so a node whose clock is wrong cannot extend or cut
anyone's lease.

``Lease`` runs on a connection of its own (not the gateway's): a renewal must not wait for
the gateway's lock, and a standby's polling must not queue behind the leader's writes. Row
locks: each write transaction of the leader holds the row ``FOR KEY SHARE``
(:class:`~dockgate.gateway.cluster.Fence`); a renewal updates no key column, so it never waits
for them; a takeover locks the row ``FOR UPDATE`` before it changes the holder, so it waits
until the old leader's transactions in flight have ended (at most ``lock_timeout``, then it
tries again at its next poll).
"""

from __future__ import annotations

from dataclasses import dataclass

from dockgate.gateway.store import BaseDatabase, Connection

#: The database's clock, in seconds since the epoch (``clock_timestamp()``: the time of the
#: statement's execution, not of its transaction's start).
DB_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

_TIMEOUTS = "SELECT set_config('lock_timeout', ?, true), set_config('statement_timeout', ?, true)"
# One row even for a site that never had a lease (its holder NULL, its token 0).
_OBSERVE = (
    "SELECT l.holder, l.holder_url, COALESCE(l.token, 0), l.renewed_at, l.expires_at, t.now"
    f" FROM (SELECT {DB_NOW} AS now) AS t LEFT JOIN cluster_lease AS l ON l.site = ?"
)
# Taken only where no live holder is: a first row, a released lease or an expired one. The
# token is one up on the row's (a re-election of the same node is a new term too).
_ACQUIRE = (
    "INSERT INTO cluster_lease AS l"
    " (site, holder, holder_url, token, acquired_at, renewed_at, expires_at)"
    f" SELECT ?, ?, ?, 1, t.now, t.now, t.now + ? FROM (SELECT {DB_NOW} AS now) AS t"
    " ON CONFLICT (site) DO UPDATE SET holder = excluded.holder,"
    " holder_url = excluded.holder_url, token = l.token + 1,"
    " acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,"
    " expires_at = excluded.expires_at"
    " WHERE l.holder IS NULL OR l.expires_at <= excluded.acquired_at"
    " RETURNING token"
)
# What a takeover waits on: every transaction of the leader in flight (their key-share lock).
_LOCK = "SELECT token FROM cluster_lease WHERE site = ? FOR UPDATE"
_RENEW = (
    "UPDATE cluster_lease SET renewed_at = t.now, expires_at = t.now + ?"
    f" FROM (SELECT {DB_NOW} AS now) AS t"
    " WHERE site = ? AND holder = ? AND token = ? AND expires_at > t.now"
    " RETURNING expires_at - t.now"
)
_RELEASE = (
    f"UPDATE cluster_lease SET holder = NULL, holder_url = NULL, expires_at = {DB_NOW}"
    " WHERE site = ? AND holder = ? AND token = ?"
)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease row as one statement saw it (times by the database's clock, seconds).

    ``holder`` is None when nobody holds it (never taken, or released).
    """

    holder: str | None
    url: str | None
    token: int
    renewed_at: float | None
    expires_at: float | None
    now: float

    @property
    def live(self) -> bool:
        """Held, and not expired at ``now``."""
        return (
            self.holder is not None and self.expires_at is not None and self.expires_at > self.now
        )

    @property
    def remaining(self) -> float:
        """Seconds until it expires (0 when not live)."""
        if not self.live or self.expires_at is None:
            return 0.0
        return self.expires_at - self.now

    @property
    def age(self) -> float | None:
        """Seconds since the holder last renewed it (None when not live)."""
        if not self.live or self.renewed_at is None:
            return None
        return max(0.0, self.now - self.renewed_at)


def _optional(value: float | None) -> float | None:
    return None if value is None else float(value)


class Lease:
    """Acquire, renew, release and observe the lease of ``site`` for node ``node_id``.

    Every call is one short transaction on ``db`` (a connection the lease does not share),
    bounded by ``lock_timeout`` seconds of waiting for the row and of running.
    """

    def __init__(
        self,
        db: BaseDatabase,
        site: str,
        node_id: str,
        *,
        seconds: float,
        url: str | None = None,
        lock_timeout: float = 1.0,
    ) -> None:
        if db.dialect.name != "postgresql":
            raise ValueError("a cluster's lease lives in PostgreSQL ([store] url)")
        if seconds <= 0:
            raise ValueError("a lease lasts some time: seconds > 0")
        self.db = db
        self.site = site
        self.node_id = node_id
        self.seconds = seconds
        self.url = url
        self._timeout_ms = str(max(1, round(lock_timeout * 1000)))

    def _begin(self, conn: Connection) -> None:
        conn.execute(_TIMEOUTS, (self._timeout_ms, self._timeout_ms))

    def observe(self) -> LeaseRecord:
        """The lease as it is now (a free record if the site never had one)."""
        with self.db.transaction() as conn:
            self._begin(conn)
            return self._observe(conn)

    def _observe(self, conn: Connection) -> LeaseRecord:
        holder, url, token, renewed_at, expires_at, now = conn.execute(
            _OBSERVE, (self.site,)
        ).fetchone()
        return LeaseRecord(
            holder, url, int(token), _optional(renewed_at), _optional(expires_at), float(now)
        )

    def try_acquire(self) -> tuple[int | None, LeaseRecord]:
        """Take the lease if nobody holds it live: (the new token or None, the lease after).

        A live lease is only read (no row lock, so a standby's polling never waits for the
        leader's writes, nor they for it). An expired one is locked first: the old leader's
        transactions in flight end (and commit, if they can) before it passes.
        """
        with self.db.transaction() as conn:
            self._begin(conn)
            seen = self._observe(conn)
            if seen.live:
                return None, seen
            conn.execute(_LOCK, (self.site,))
            row = conn.execute(
                _ACQUIRE, (self.site, self.node_id, self.url, self.seconds)
            ).fetchone()
            after = self._observe(conn)
        if row is None:  # another node took it between the read and the write
            return None, after
        return int(row[0]), after

    def renew(self, token: int) -> float | None:
        """Extend the lease held with ``token`` by ``seconds`` from now (database clock): the
        seconds it has left then, or None if it is no longer this node's with that token or
        has expired (an expired lease is never revived: the node stands down and may be
        elected again, with a new token)."""
        with self.db.transaction() as conn:
            self._begin(conn)
            row = conn.execute(_RENEW, (self.seconds, self.site, self.node_id, token)).fetchone()
        return None if row is None else float(row[0])

    def release(self, token: int) -> bool:
        """Give the lease up now (a clean stop), so a standby need not wait for it to
        expire; False if it was no longer this node's."""
        with self.db.transaction() as conn:
            self._begin(conn)
            done = conn.execute(_RELEASE, (self.site, self.node_id, token)).rowcount
        return done > 0
