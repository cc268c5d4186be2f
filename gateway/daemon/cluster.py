"""The daemon in a cluster: a standby serves the API warm; the leader alone runs the site.

Every node builds the same daemon (settings, store, rule bundle, API). What only the leader
may run waits for a term: the MQTT session under the site's client id and its ingest, the
node's local readers, the flow's commands and timers. A term begins with the parts that hold
state in memory built afresh from the database (the rules engine, the ride flow; the flow
recovers the journal: commands that may have reached a device are never sent again), then
those parts start. A term ends when the lease is lost (see ``dockgate.gateway.cluster``):
the fence already refuses every write, the MQTT session is closed (what it had not
acknowledged stays with the broker for the next leader), the leader parts are cancelled and
the flow's in-memory state is dropped. The node stands by again, and may lead again later
under a new token.

A standby's local reader reads nothing (its taps would need the leader's keys). Where a
reader sits on a standby machine, configure it as ``driver = "broker"`` and run
``dockgate reader publish`` beside it: its taps then reach whichever node leads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from dockgate.gateway.cluster import (
    SINGLE_NODE,
    ClusterStatus,
    Elector,
    Fence,
    Lease,
    LeaseLost,
    Term,
)
from dockgate.gateway.daemon.settings import DaemonSettings
from dockgate.gateway.flow import RideFlow, Settled
from dockgate.gateway.rules import RulesEngine
from dockgate.gateway.store import BaseDatabase, open_database

log = logging.getLogger("dockgate.cluster")

PartRunner = Callable[[], Awaitable[None]]
_STOP_WAIT = 15.0  # s a stopping node waits for its term's parts before giving up the lease


class _Session(Protocol):
    async def aclose(self) -> None: ...


class LeaderHost(Protocol):
    """What a term replaces or stops in the daemon."""

    db: BaseDatabase
    engine: RulesEngine
    flow: RideFlow

    @property
    def mqtt(self) -> _Session: ...

    def make_flow(self) -> RideFlow: ...


class _HasFlow(Protocol):
    flow: RideFlow


def site_key(network_id: int) -> str:
    """The lease row of a site: its network's (one site, one network, one broker subtree)."""
    return f"network-{network_id}"


class CurrentFlow:
    """The API's way to the flow: the current term's, found at each command."""

    def __init__(self, host: _HasFlow) -> None:
        self.host = host

    async def send_api_command(
        self, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
    ) -> Settled:
        return await self.host.flow.send_api_command(target_kind, target_id, command, args, key)


class SiteRole:
    """Whether this daemon leads its site, and the parts that run only while it does.

    Alone (``[cluster] enabled = false``) it always leads and changes nothing: parts run as
    given and ``run`` is never added.
    """

    def __init__(self, host: LeaderHost, settings: DaemonSettings) -> None:
        self.host = host
        self.elector: Elector | None = None
        self._lease_db: BaseDatabase | None = None
        self._ready: Term | None = None
        self._ready_changed = asyncio.Event()
        self._term_task: asyncio.Task[None] | None = None
        self._serving: Term | None = None  # the last term a task was started for
        if settings.cluster.enabled:
            self._join(settings)

    def _join(self, settings: DaemonSettings) -> None:
        c = settings.cluster
        if c.node_id is None or settings.store.url is None:  # the settings refuse both
            raise ValueError("a cluster node needs its node_id and a postgresql [store] url")
        site = site_key(settings.site.network_id)
        self._lease_db = open_database(settings.store.url)  # a connection of its own
        lease = Lease(
            self._lease_db,
            site,
            c.node_id,
            seconds=c.lease_seconds,
            url=c.advertise_url,
            lock_timeout=c.renew_seconds,
        )
        fence = Fence(site, c.node_id, lease_seconds=c.lease_seconds)
        self.elector = Elector(
            lease,
            fence,
            renew_seconds=c.renew_seconds,
            on_change=self._changed,
            wait_for_close=True,  # no next term before this one's parts have stopped
        )
        self.host.db.guard = fence  # from now on every write transaction proves the lease
        for reader in settings.readers:
            if reader.local:
                log.warning(
                    "cluster: reader %s reads only while node %s leads; for its taps to reach"
                    ' any leader, make it driver = "broker" and run `dockgate reader publish`',
                    reader.id,
                    c.node_id,
                )
        log.info("cluster: node %s joins site %s as a standby", c.node_id, site)

    @property
    def enabled(self) -> bool:
        return self.elector is not None

    @property
    def leading(self) -> bool:
        """This node holds the site's lease (always, alone)."""
        return self.elector is None or self.elector.term is not None

    def status(self) -> ClusterStatus:
        return SINGLE_NODE if self.elector is None else self.elector.status()

    # -- the cluster part -----------------------------------------------------------------
    async def run(self) -> None:
        """Stand by or lead until stopped; a stop ends the term, then gives the lease up."""
        assert self.elector is not None
        try:
            await self.elector.run()
        finally:
            task = self._term_task
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=_STOP_WAIT)
            await self.elector.release()

    def _changed(self, term: Term) -> None:
        if not term.ended.is_set():
            self._serving = term
            self._term_task = asyncio.create_task(self._serve(term), name=f"term-{term.token}")
        elif term is not self._serving:
            term.close()  # it ended before it began here: nothing to undo

    async def _serve(self, term: Term) -> None:
        """One term: build the leader's state, let the leader parts run, undo it at the end."""
        assert self.elector is not None
        try:
            await self._begin(term)
        except Exception as exc:
            if not isinstance(exc, LeaseLost):
                log.exception("cluster: could not take the lead with token %d", term.token)
            self.elector.depose(f"taking the lead failed: {type(exc).__name__}: {exc}"[:300])
        else:
            self._ready = term
            self._ready_changed.set()
            await term.ended.wait()
        await self._end(term)

    async def _begin(self, term: Term) -> None:
        host = self.host
        host.db.cache.clear()  # another leader wrote since: read every copy afresh
        host.engine = RulesEngine(host.engine.bundle)  # no memory of an earlier term
        idle, host.flow = host.flow, host.make_flow()
        await idle.aclose()
        recovery = await host.flow.recover()
        log.info(
            "cluster: took the lead with token %d",
            term.token,
            extra={
                "token": term.token,
                "resent": len(recovery.resent),
                "unknown": len(recovery.unknown),
                "dropped": len(recovery.dropped),
            },
        )

    async def _end(self, term: Term) -> None:
        """Stop what only the leader runs: the MQTT session first, then the flow's work."""
        host = self.host
        if self._ready is term:
            self._ready = None
        try:
            await host.mqtt.aclose()
            old, host.flow = host.flow, host.make_flow()  # an idle flow: its memory dropped
            await old.aclose()
        finally:
            term.close()  # the next term may begin
        log.warning("cluster: standing by after token %d", term.token, extra={"token": term.token})

    # -- leader-only parts ----------------------------------------------------------------
    def leader_only(self, runner: PartRunner) -> PartRunner:
        """``runner`` as a part that runs only during a term (as given, alone): it starts
        once a term is ready and is cancelled when the term ends, to start again with the
        next; a failure while leading is the part's own (the supervisor restarts it)."""
        if self.elector is None:
            return runner

        async def part() -> None:
            while True:
                term = await self._until_ready()
                await self._run_in_term(runner, term)

        return part

    async def _until_ready(self) -> Term:
        while True:
            term = self._ready
            if term is not None and not term.ended.is_set():
                return term
            self._ready_changed.clear()
            await self._ready_changed.wait()

    async def _run_in_term(self, runner: PartRunner, term: Term) -> None:
        body = asyncio.ensure_future(runner())
        ended = asyncio.ensure_future(term.ended.wait())
        try:
            await asyncio.wait({body, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            body.cancel()
            ended.cancel()
            await asyncio.gather(body, ended, return_exceptions=True)
        if term.ended.is_set() or body.cancelled():
            return
        failure = body.exception()
        if isinstance(failure, LeaseLost):  # fenced out: the term ends here
            assert self.elector is not None
            if self.elector.term is term:
                self.elector.depose(str(failure))
            return
        if failure is not None:
            raise failure
        raise RuntimeError("part returned while leading; parts must run until cancelled")

    def close(self) -> None:
        """Close the lease's connection (the daemon's own is closed by the daemon)."""
        if self._lease_db is not None:
            self._lease_db.close()
