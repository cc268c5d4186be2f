"""Electors of one site on a real PostgreSQL: one leads, a standby takes over when the leader
stops renewing or gives the lease up, a fenced write ends a term at once, and a leader whose
lease ran out by its own clock stands down without asking the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockgate.gateway.cluster import Elector, Fence, Lease, LeaseLost, Term
from dockgate.gateway.store import BaseDatabase, migrate
from tests.support.stores import open_test_database

pytestmark = pytest.mark.engines("postgresql")
SITE = "network-1"
LEASE = 0.6
RENEW = 0.15


class Node:
    """One node's elector, with its gateway connection guarded by its fence."""

    def __init__(
        self,
        path: Path,
        node_id: str,
        clock: Callable[[], float] = time.monotonic,
        max_stall: float | None = None,
    ) -> None:
        self.db = open_test_database(path)
        lease = Lease(
            open_test_database(path), SITE, node_id, seconds=LEASE, url=f"http://{node_id}:8080"
        )
        self.fence = Fence(SITE, node_id, lease_seconds=LEASE)
        self.db.guard = self.fence
        self.terms: list[Term] = []
        self.elector = Elector(
            lease,
            self.fence,
            renew_seconds=RENEW,
            on_change=self.changed,
            clock=clock,
            max_stall=max_stall,
        )
        self.task: asyncio.Task[None] | None = None

    def changed(self, term: Term) -> None:
        if term not in self.terms:
            self.terms.append(term)

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    @property
    def leads(self) -> bool:
        return self.elector.term is not None


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.db"
    migrate(open_test_database(path))
    return path


async def until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait for ``check``; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def write(db: BaseDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS work (n INTEGER)")


async def test_one_leads_the_other_stands_by_and_takes_over_when_renewals_stop(
    site: Path,
) -> None:
    a, b = Node(site, "a"), Node(site, "b")
    a.start()
    await until(lambda: a.leads)
    b.start()
    await until(lambda: b.elector.status().leader is not None)
    status = b.elector.status()
    assert (status.role, status.token, status.leader) == (
        "standby",
        None,
        a.elector.status().leader,
    )
    assert status.leader is not None and status.leader.url == "http://a:8080"
    assert status.lease_age_s is not None and 0 <= status.lease_age_s < LEASE
    leading = a.elector.status()
    assert (leading.role, leading.token, leading.node_id) == ("leader", 1, "a")
    await asyncio.sleep(3 * LEASE)  # renewals keep it
    assert a.leads and not b.leads and a.elector.status().token == 1
    write(a.db)  # the leader writes
    with pytest.raises(LeaseLost):
        write(b.db)  # the standby does not

    await a.stop()  # a dies (no release): its lease must run out first
    (term,) = a.terms
    assert term.ended.is_set() and a.fence.token is None
    took = await until(lambda: b.leads)
    assert took < LEASE + RENEW + 0.5
    assert b.elector.status().token == 2
    assert b.elector.transitions == {"leader": 1, "standby": 0}
    assert a.elector.transitions == {"leader": 1, "standby": 1}
    write(b.db)
    with pytest.raises(LeaseLost):
        write(a.db)
    await b.stop()


async def test_a_released_lease_passes_at_once(site: Path) -> None:
    a, b = Node(site, "a"), Node(site, "b")
    a.start()
    await until(lambda: a.leads)
    b.start()
    await asyncio.sleep(RENEW)
    await a.stop()
    assert await a.elector.release()
    took = await until(lambda: b.leads)
    assert took < RENEW + 0.2  # no waiting for the lease to expire
    await b.stop()


async def test_a_fenced_write_ends_the_term_before_the_next_renewal(site: Path) -> None:
    a = Node(site, "a")
    a.start()
    await until(lambda: a.leads)
    (term,) = a.terms
    thief = open_test_database(site)  # the lease passes behind a's back
    thief.conn.execute("UPDATE cluster_lease SET holder = 'b', token = token + 1")
    with pytest.raises(LeaseLost, match="passed from token 1 to b with token 2"):
        write(a.db)
    await asyncio.wait_for(term.ended.wait(), RENEW / 2)
    assert term.why is not None and "token 2" in term.why
    assert a.elector.status().role == "standby" and a.fence.token is None
    await a.stop()


async def test_a_leader_whose_lease_ran_out_by_its_own_clock_stands_down_at_once(
    site: Path,
) -> None:
    """A process that resumes after a pause longer than its lease: its monotonic clock has
    moved on; the first round ends the term before any database call can answer."""
    now = [1000.0]
    a = Node(site, "a", clock=lambda: now[0])
    a.start()
    await until(lambda: a.leads)
    (term,) = a.terms
    now[0] += LEASE + 0.01  # the pause
    await asyncio.wait_for(term.ended.wait(), RENEW + 0.2)
    assert term.why is not None and "ran out" in term.why
    with pytest.raises(LeaseLost):
        write(a.db)
    await a.stop()


async def test_a_leader_busy_on_its_event_loop_keeps_its_lease(site: Path) -> None:
    """A batch that keeps the event loop busy for longer than a lease: the lease's thread
    renews meanwhile, so the leader stays and the standby does not take over."""
    a, b = Node(site, "a"), Node(site, "b")
    a.start()
    await until(lambda: a.leads)
    b.start()
    await asyncio.sleep(RENEW)
    time.sleep(3 * LEASE)  # the loop is busy (a long synchronous batch)
    await asyncio.sleep(RENEW)
    assert a.leads and a.elector.status().token == 1 and a.terms[0].why is None
    assert not b.leads and b.elector.transitions == {"leader": 0, "standby": 0}
    write(a.db)
    await a.stop()
    await b.stop()


async def test_a_leader_whose_event_loop_is_stuck_lets_go(site: Path) -> None:
    """Past ``max_stall`` the lease's thread stops renewing: the standby takes over (on its
    own thread, though it shares the stuck loop here), and the stuck node is fenced out."""
    a, b = Node(site, "a", max_stall=2 * LEASE), Node(site, "b")
    a.start()
    await until(lambda: a.leads)
    b.start()
    await asyncio.sleep(RENEW)
    time.sleep(2 * LEASE + LEASE + 2 * RENEW)  # stuck past max_stall, then past the lease
    with pytest.raises(LeaseLost):
        write(a.db)
    await until(lambda: b.leads, 1)
    (term,) = a.terms
    await asyncio.wait_for(term.ended.wait(), 1)
    assert term.why is not None and "event loop" in term.why
    assert b.elector.status().token == 2
    await a.stop()
    await b.stop()


async def test_status_before_any_election(site: Path) -> None:
    a = Node(site, "a")
    status = a.elector.status()
    assert status.as_dict() == {
        "enabled": True,
        "node_id": "a",
        "role": "standby",
        "token": None,
        "lease_age_s": None,
        "leader": None,
    }
