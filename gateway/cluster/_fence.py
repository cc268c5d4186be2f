"""The fencing check: every write transaction of the leader proves its token, in itself.

Installed as the gateway database's ``guard`` it runs right after the BEGIN of every
outermost transaction. On the leader it reads the lease row ``FOR KEY SHARE``: the token must
still be this node's term's, the holder this node and the lease unexpired by the database's
clock. The lock then holds the row until the transaction ends. A takeover locks the row
``FOR UPDATE`` first (``Lease.try_acquire``), which waits for every transaction holding it:
a commit that begins before the lease passes to another lands before it, and once it has
passed every transaction is refused at its BEGIN. A process that was paused for longer than
its lease and resumes therefore commits nothing, whether or not its renewal loop has noticed
yet. The leader's own renewals (an UPDATE of no key column) do not conflict with the key-share
lock: however long its transactions, they never hold its renewals back.

A transaction that sits idle, holding the lock, for longer than a lease (its process paused
between two statements) is ended by the server (``idle_in_transaction_session_timeout``, set
for the transaction by the same statement), so it cannot keep a standby from taking over.

On a standby (no token) every write transaction is refused at once: it commits nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from dockgate.gateway.cluster._lease import DB_NOW
from dockgate.gateway.store import Connection

_CHECK = (
    f"SELECT holder, token, expires_at > {DB_NOW},"
    " set_config('idle_in_transaction_session_timeout', ?, true)"
    " FROM cluster_lease WHERE site = ? FOR KEY SHARE"
)


class LeaseLost(RuntimeError):
    """This node does not hold the site's lease (any longer): the transaction was rolled
    back and nothing of it committed. ``token``: the term's token it was begun with (None
    on a standby)."""

    def __init__(self, message: str, token: int | None = None) -> None:
        super().__init__(message)
        self.token = token


class Fence:
    """The gateway database's guard (``db.guard = fence``): see the module docstring.

    ``arm(token)`` when a term begins, ``disarm()`` when it ends. ``on_lost(token, why)`` is
    called (from whichever thread ran the transaction) when the check finds the lease gone.
    """

    def __init__(
        self,
        site: str,
        node_id: str,
        *,
        lease_seconds: float,
        on_lost: Callable[[int, str], None] | None = None,
    ) -> None:
        self.site = site
        self.node_id = node_id
        self.on_lost = on_lost
        self.token: int | None = None
        self.refused = 0  # transactions refused, standby or fenced out
        self._idle_ms = str(max(1, round(lease_seconds * 1000)))

    def arm(self, token: int) -> None:
        self.token = token

    def disarm(self) -> None:
        self.token = None

    def __call__(self, conn: Connection) -> None:
        token = self.token
        if token is None:
            self.refused += 1
            raise LeaseLost(f"node {self.node_id} is a standby: it commits nothing")
        row = conn.execute(_CHECK, (self._idle_ms, self.site)).fetchone()
        why = self._refusal(token, row)
        if why is None:
            return
        self.refused += 1
        if self.token == token:
            self.token = None
        if self.on_lost is not None:
            self.on_lost(token, why)
        raise LeaseLost(why, token)

    def _refusal(self, token: int, row: tuple[str | None, int, bool, str] | None) -> str | None:
        """Why the lease row refuses a write of ``token``'s term (None: it allows it)."""
        if row is None:
            return f"fenced: the site {self.site} has no lease row (token {token})"
        holder, held, live, _ = row
        if holder is None:
            return f"fenced: the lease of token {token} was given up (token {held})"
        if holder != self.node_id or int(held) != token:
            return f"fenced: the lease passed from token {token} to {holder} with token {held}"
        if not live:
            return f"fenced: the lease of token {token} expired by the database's clock"
        return None
