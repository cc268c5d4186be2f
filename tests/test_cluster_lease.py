"""The site's lease and its fencing on a real PostgreSQL: one node leads, its token grows at
every change of holder, and a leader that lost the lease commits nothing even before it
notices (each node on connections of its own, as separate processes would be)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockgate.gateway.cluster import Fence, Lease, LeaseLost
from dockgate.gateway.store import BaseDatabase, StoreError, migrate
from tests.support.stores import open_test_database

pytestmark = pytest.mark.engines("postgresql")
SITE = "network-1"


class Site:
    """One site's shared database: the gateway's connection per node, a lease per node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        migrate(open_test_database(path))

    def connection(self) -> BaseDatabase:
        db = open_test_database(self.path)
        db.conn.execute("CREATE TABLE IF NOT EXISTS work (node TEXT NOT NULL, n INTEGER)")
        return db

    def lease(self, node: str, seconds: float = 3.0, **kwargs: float) -> Lease:
        return Lease(open_test_database(self.path), SITE, node, seconds=seconds, **kwargs)

    def rows(self) -> list[tuple[str, int]]:
        db = open_test_database(self.path)
        return [(r[0], r[1]) for r in db.conn.execute("SELECT node, n FROM work ORDER BY n")]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site.db")


def write(db: BaseDatabase, node: str, n: int) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO work (node, n) VALUES (?, ?)", (node, n))


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_of_nodes_that_contend_at_once_exactly_one_leads(site: Site) -> None:
    leases = [site.lease(f"node-{i}") for i in range(5)]
    start = threading.Barrier(len(leases))
    tokens: dict[str, int | None] = {}

    def contend(lease: Lease) -> None:
        start.wait()
        tokens[lease.node_id], _ = lease.try_acquire()

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = {node: token for node, token in tokens.items() if token is not None}
    assert list(winners.values()) == [1]
    (winner,) = winners
    seen = leases[0].observe()
    assert (seen.holder, seen.token, seen.live) == (winner, 1, True)


def test_the_token_grows_at_each_change_of_holder_and_renewals_keep_it(site: Site) -> None:
    a, b = site.lease("a", seconds=0.4), site.lease("b", seconds=0.4)
    assert a.try_acquire()[0] == 1
    first = a.observe()
    time.sleep(0.1)
    assert a.renew(1) == pytest.approx(0.4, abs=0.05)
    renewed = a.observe()
    assert renewed.token == 1 and renewed.expires_at > first.expires_at  # type: ignore[operator]
    assert b.try_acquire()[0] is None  # held and live

    assert a.release(1)
    assert b.try_acquire()[0] == 2  # a released: b at once, one up
    assert a.renew(1) is None and not a.release(1)  # no longer a's

    time.sleep(0.5)  # b stops renewing: its lease expires by the database's clock
    assert b.renew(2) is None  # an expired lease is never revived
    assert a.try_acquire()[0] == 3
    time.sleep(0.5)
    assert a.try_acquire()[0] == 4  # the same holder again: a new term, a new token
    assert a.observe().holder == "a"


def test_a_live_lease_is_not_taken_and_an_expired_one_is(site: Site) -> None:
    a, b = site.lease("a", seconds=0.5), site.lease("b", seconds=0.5)
    token, seen = a.try_acquire()
    assert token == 1 and seen.remaining == pytest.approx(0.5, abs=0.05)
    token, seen = b.try_acquire()
    assert token is None
    assert (seen.holder, seen.token) == ("a", 1) and 0 < seen.remaining <= 0.5
    time.sleep(seen.remaining + 0.05)
    token, seen = b.try_acquire()
    assert token == 2 and seen.holder == "b"


def test_a_stale_leader_commits_nothing_even_before_it_notices(site: Site) -> None:
    """A leader paused past its lease: another took it; its next write is refused, rolled back,
    and its fence tells the node (which then refuses everything as a standby)."""
    a, b = site.lease("a", seconds=0.4), site.lease("b", seconds=0.4)
    lost: list[tuple[int, str]] = []
    fence = Fence(SITE, "a", lease_seconds=0.4, on_lost=lambda t, why: lost.append((t, why)))
    db = site.connection()
    db.guard = fence
    token, _ = a.try_acquire()
    assert token == 1
    fence.arm(token)
    write(db, "a", 1)  # while it leads

    time.sleep(0.5)  # "paused": no renewal; the lease expires and b takes it
    assert b.try_acquire()[0] == 2
    with pytest.raises(LeaseLost, match="passed from token 1 to b with token 2") as refused:
        write(db, "a", 2)
    assert refused.value.token == 1
    assert [t for t, _ in lost] == [1]
    assert fence.token is None and not db.conn.in_transaction
    with pytest.raises(LeaseLost, match="standby"):
        write(db, "a", 3)
    assert site.rows() == [("a", 1)]


def test_a_lease_that_expired_with_nobody_taking_it_refuses_writes_too(site: Site) -> None:
    a = site.lease("a", seconds=0.3)
    fence = Fence(SITE, "a", lease_seconds=0.3)
    db = site.connection()
    db.guard = fence
    token, _ = a.try_acquire()
    assert token is not None
    fence.arm(token)
    time.sleep(0.4)
    with pytest.raises(LeaseLost, match="expired by the database's clock"):
        write(db, "a", 1)
    assert site.rows() == []


def test_a_takeover_waits_for_the_commit_of_a_write_in_flight(site: Site) -> None:
    """The fence holds the lease row (key share) until COMMIT: a standby that finds the lease
    expired waits for the leader's transaction, which commits before the lease passes."""
    a = site.lease("a", seconds=0.3)
    b = site.lease("b", seconds=0.3, lock_timeout=10.0)
    fence = Fence(SITE, "a", lease_seconds=10.0)  # the server's idle limit out of the way
    db = site.connection()
    db.guard = fence
    token, _ = a.try_acquire()
    assert token is not None
    fence.arm(token)
    taken: list[int | None] = []
    with db.transaction() as conn:
        conn.execute("INSERT INTO work (node, n) VALUES ('a', 1)")
        time.sleep(0.4)  # the lease expires while the write is in flight
        takeover = threading.Thread(target=lambda: taken.append(b.try_acquire()[0]))
        takeover.start()
        time.sleep(0.3)
        assert takeover.is_alive() and taken == []  # waiting for this transaction
    takeover.join(5)
    assert taken == [2]
    assert site.rows() == [("a", 1)]  # committed before the lease passed
    with pytest.raises(LeaseLost):
        write(db, "a", 2)


def test_renewals_never_wait_for_the_leaders_own_transactions(site: Site) -> None:
    """A long write transaction of the leader (a big batch) holds the lease row; its renewal
    on the lease's own connection must not wait for it, or the leader would lose its lease
    for working hard."""
    a = site.lease("a", seconds=1.0, lock_timeout=0.5)
    fence = Fence(SITE, "a", lease_seconds=10.0)
    db = site.connection()
    db.guard = fence
    token, _ = a.try_acquire()
    assert token is not None
    fence.arm(token)
    with db.transaction() as conn:
        conn.execute("INSERT INTO work (node, n) VALUES ('a', 1)")
        started = time.monotonic()
        for _ in range(3):
            assert a.renew(token) == pytest.approx(1.0, abs=0.05)
        assert time.monotonic() - started < 0.5
    assert site.rows() == [("a", 1)]


def test_a_leader_paused_inside_a_transaction_cannot_hold_the_lease_hostage(site: Site) -> None:
    """A process stopped between two statements of a transaction keeps its row lock only as
    long as the server lets a transaction idle: one lease. Then the standby takes over and
    the stopped transaction can never commit."""
    a, b = site.lease("a", seconds=0.5), site.lease("b", seconds=0.5)
    fence = Fence(SITE, "a", lease_seconds=0.5)
    db = site.connection()
    db.guard = fence
    token, _ = a.try_acquire()
    assert token is not None
    fence.arm(token)
    taken: list[int] = []

    def take_over() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                won, _ = b.try_acquire()
            except StoreError:  # lock_timeout: the paused leader still holds the row
                continue
            if won is not None:
                taken.append(won)
                return
            time.sleep(0.05)

    with pytest.raises(StoreError), db.transaction() as conn:
        conn.execute("INSERT INTO work (node, n) VALUES ('a', 1)")
        started = time.monotonic()
        take_over()  # "paused": this transaction idles meanwhile
        assert taken == [2] and time.monotonic() - started < 3.0
        conn.execute("INSERT INTO work (node, n) VALUES ('a', 2)")  # the session is gone
    assert site.rows() == []
    with pytest.raises(LeaseLost):  # the connection comes back; the lease does not
        write(db, "a", 3)


def test_a_standby_reads_but_commits_nothing(site: Site) -> None:
    db = site.connection()
    db.guard = Fence(SITE, "b", lease_seconds=3.0)  # never armed: a standby
    with pytest.raises(LeaseLost, match="node b is a standby"):
        write(db, "b", 1)
    assert not db.conn.in_transaction
    assert db.conn.execute("SELECT count(*) FROM work").fetchone()[0] == 0


def test_the_lease_lives_in_postgresql_only(tmp_path: Path) -> None:
    from dockgate.gateway.store import Database

    with pytest.raises(ValueError, match="PostgreSQL"):
        Lease(Database(tmp_path / "x.db"), SITE, "a", seconds=3.0)


@pytest.mark.engines("sqlite", "postgresql")
def test_the_database_runs_its_guard_once_in_each_outermost_transaction(tmp_path: Path) -> None:
    """The hook the fence uses: after BEGIN, inside the transaction; nested transactions and
    savepoints join the checked one; a refusal rolls back and leaves the database usable."""
    db = open_test_database(tmp_path / "guarded.db")
    db.conn.execute("CREATE TABLE IF NOT EXISTS work (node TEXT NOT NULL, n INTEGER)")
    calls: list[bool] = []
    refuse = [False]

    def guard(conn: object) -> None:
        assert conn is db.conn
        calls.append(db.conn.in_transaction)
        if refuse[0]:
            raise LeaseLost("refused by the test")

    db.guard = guard
    with db.transaction() as conn:
        conn.execute("INSERT INTO work VALUES ('a', 1)")
        with db.transaction(), db.savepoint():
            conn.execute("INSERT INTO work VALUES ('a', 2)")
    with db.savepoint() as conn:  # a savepoint outside a transaction is one of its own
        conn.execute("INSERT INTO work VALUES ('a', 3)")
    assert calls == [True, True]

    refuse[0] = True
    with pytest.raises(LeaseLost), db.transaction() as conn:
        conn.execute("INSERT INTO work VALUES ('a', 4)")
    assert db.depth == 0 and not db.conn.in_transaction
    refuse[0] = False
    write(db, "a", 5)  # the lock was released: the next transaction runs
    assert [r[0] for r in db.conn.execute("SELECT n FROM work ORDER BY n")] == [1, 2, 3, 5]
