"""Which node leads: stand by and try for the lease, or hold it by renewing it.

A standby reads the lease every ``renew_seconds`` (sooner when the lease it saw is about to
run out) and takes it as soon as it is free or expired. The leader renews it every
``renew_seconds``; its term ends when a renewal is refused (the lease is another's, or
expired), when no renewal got through before the lease would have run out (a database it
cannot reach, or a process that was paused: measured on this node's monotonic clock from the
START of its last renewal that got through, never later than the database's expiry), when
the fencing check refused a write, or when the event loop has not run for ``max_stall``
seconds. A term's end disarms the fence first, so nothing commits after it, then tells the
listener on the event loop (the daemon stops its MQTT session and ingest).

Two threads share the work. The lease's calls block on the network, so they run on a thread
of their own ("cluster-lease"): a batch that keeps the event loop busy for seconds does not
hold renewals back (a leader must not lose its lease for working hard). The event loop runs a
watchdog: it ends the term once its deadline has passed without a renewal, so a database call
that hangs on that thread cannot keep a leader that lost its lease from standing down; and it
beats, so that a loop stuck for good (``max_stall``) stops the renewals and lets a standby
take over. A listener may ask for a term to be closed (its cleanup done) before the next is
sought (``wait_for_close``): no write of an ending term can then commit under the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from dockgate.gateway.cluster._fence import Fence
from dockgate.gateway.cluster._lease import Lease, LeaseRecord
from dockgate.gateway.cluster._status import ClusterStatus, LeaderInfo, Role

log = logging.getLogger("dockgate.cluster")

T = TypeVar("T")
_MIN_POLL = 0.05  # s: a standby's shortest wait, and its margin past a lease's expiry


class Term:
    """One leadership of this node, under one token: from its election until ``ended``.

    ``renewed`` is when (monotonic) the last renewal that got through began, ``deadline``
    the monotonic time by which the lease surely has not run out yet. ``close()`` says the
    listener has undone the term (see ``Elector``'s ``wait_for_close``).
    """

    def __init__(self, token: int, renewed: float, deadline: float) -> None:
        self.token = token
        self.renewed = renewed
        self.deadline = deadline
        self.ended = asyncio.Event()
        self.closed = threading.Event()
        self.why: str | None = None

    def close(self) -> None:
        self.closed.set()


def _retrieve(future: asyncio.Future[T]) -> None:
    """A call nobody waited for to the end: its exception is not an unhandled one."""
    if not future.cancelled():
        future.exception()


async def _in_thread(call: Callable[[], T], timeout: float) -> T:
    """``call()`` on a daemon thread of its own, waited for at most ``timeout`` seconds (a
    hung call is left behind; the process does not wait for it at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    future.add_done_callback(_retrieve)

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with exc

    def work() -> None:
        try:
            result, exc = call(), None
        except BaseException as error:
            result, exc = None, error
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=work, name="cluster-lease-call", daemon=True).start()
    async with asyncio.timeout(timeout):
        return await asyncio.shield(future)


class Elector:
    """Keeps this node's place in the site's leadership (see the module docstring).

    ``on_change(term)`` hears of each term's start and end (``term.ended`` is set at its
    end), on the event loop. ``run()`` is the loop's side; its end (cancellation) ends the
    term; ``release()`` then gives the lease up so that a standby need not wait for it to
    expire. ``max_stall`` (default: five leases) is how long the event loop may be kept busy
    before this node stops renewing.
    """

    def __init__(
        self,
        lease: Lease,
        fence: Fence,
        *,
        renew_seconds: float,
        on_change: Callable[[Term], None] | None = None,
        wait_for_close: bool = False,
        max_stall: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_seconds < lease.seconds:
            raise ValueError("renew_seconds must be above 0 and below the lease's seconds")
        self.lease = lease
        self.fence = fence
        fence.on_lost = self.fenced
        self.renew_seconds = renew_seconds
        self.on_change = on_change
        self.wait_for_close = wait_for_close
        self.max_stall = 5 * lease.seconds if max_stall is None else max_stall
        self.clock = clock
        self.node_id = lease.node_id
        self.term: Term | None = None
        self.transitions: dict[Role, int] = {"leader": 0, "standby": 0}
        self._last: Term | None = None
        self._seen: LeaseRecord | None = None
        self._seen_at = 0.0
        self._beat = clock()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unreachable: str | None = None

    # -- the event loop's side --------------------------------------------------------------
    async def run(self) -> None:
        """Start the lease's thread and watch over the term until cancelled; the term (if
        any) ends with it."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = threading.Event()
        self._beat = self.clock()
        worker = threading.Thread(
            target=self._work, args=(self._stopping,), name="cluster-lease", daemon=True
        )
        worker.start()
        try:
            while True:
                self._watch()
                await asyncio.sleep(min(self.renew_seconds / 4, 0.25))
        finally:
            self._stopping.set()
            self.depose("the node is stopping", level=logging.WARNING)

    def _watch(self) -> None:
        """Beat, and end a term whose deadline passed without a renewal."""
        now = self._beat = self.clock()
        term = self.term
        if term is not None:
            self._expire(term, now)

    def depose(self, why: str, *, level: int = logging.ERROR) -> None:
        """End this node's term now (no-op on a standby): nothing commits after this."""
        term = self.term
        if term is not None:
            self._end(term, why, level)

    def fenced(self, token: int, why: str) -> None:
        """The fence refused a write of ``token``'s term (from any thread): end that term."""
        term = self.term
        if term is not None and term.token == token:
            self._end(term, why)

    # -- the lease's thread -----------------------------------------------------------------
    def _work(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                term = self.term
                delay = self._campaign(stopping) if term is None else self._hold(term)
            except Exception as exc:  # the database away: keep trying, say so once
                self._cannot_reach(exc)
                delay = self._retry_delay()
            stopping.wait(delay)

    def _retry_delay(self) -> float:
        term = self.term
        if term is None:
            return self.renew_seconds
        return max(0.0, min(self.renew_seconds / 4, term.deadline - self.clock()))

    def _campaign(self, stopping: threading.Event) -> float:
        """One standby round: take the lease if it is free; how long to wait for the next."""
        last = self._last
        if self.wait_for_close and last is not None and not last.closed.is_set():
            return _MIN_POLL  # the last term is still being undone
        started = self.clock()
        if started - self._beat >= self.max_stall:
            return self.renew_seconds  # a loop stuck for good could not lead
        token, seen = self.lease.try_acquire()
        self._reached()
        self._seen, self._seen_at = seen, started
        if token is not None and stopping.is_set():
            self.lease.release(token)  # taken as the node stops: give it straight back
        elif token is not None:
            self._elect(token, started)
            return self.renew_seconds
        return min(self.renew_seconds, seen.remaining + _MIN_POLL)

    def _hold(self, term: Term) -> float:
        """One leader round: renew, or end the term if the lease cannot be ours any more."""
        started = self.clock()
        stalled = started - self._beat
        if stalled >= self.max_stall:
            self._end(term, f"the event loop has not run for {stalled:.1f} s: letting go")
            return 0.0
        if self._expire(term, started):
            return 0.0
        left = self.lease.renew(term.token)
        self._reached()
        with self._lock:
            if term is not self.term:
                return 0.0  # ended meanwhile
            if left is not None:
                term.renewed, term.deadline = started, started + min(left, self.lease.seconds)
                return self.renew_seconds
        self._end(term, f"the lease of token {term.token} is no longer this node's")
        return 0.0

    # -- terms (either thread) --------------------------------------------------------------
    def _elect(self, token: int, started: float) -> None:
        term = Term(token, started, started + self.lease.seconds)
        with self._lock:
            self.fence.arm(token)
            self.term = self._last = term
            self.transitions["leader"] += 1
        log.warning(
            "cluster: node %s leads site %s with token %d",
            self.node_id,
            self.lease.site,
            token,
            extra={"node": self.node_id, "token": token, "role": "leader"},
        )
        self._on_loop(term)

    def _expire(self, term: Term, now: float) -> bool:
        """End ``term`` if its deadline has passed at ``now`` (no renewal that got through
        moved it meanwhile); whether it has ended."""
        if now < term.deadline:
            return self.term is not term
        idle = now - term.renewed
        why = f"the lease of token {term.token} ran out: not renewed for {idle:.1f} s"
        self._end(term, why, due=now)
        return self.term is not term

    def _end(
        self, term: Term, why: str, level: int = logging.ERROR, *, due: float | None = None
    ) -> None:
        """End ``term`` (unless another ended it, or, with ``due``, a renewal moved its
        deadline past ``due``)."""
        with self._lock:
            if self.term is not term or (due is not None and due < term.deadline):
                return
            self.fence.disarm()
            self.term = None
            term.why = why
            self.transitions["standby"] += 1
        log.log(
            level,
            "cluster: node %s stands down from token %d: %s",
            self.node_id,
            term.token,
            why,
            extra={"node": self.node_id, "token": term.token, "role": "standby"},
        )
        self._on_loop(term)

    def _on_loop(self, term: Term) -> None:
        """Tell the event loop's side (now, if this is it)."""
        if threading.get_ident() == self._loop_thread:
            self._tell(term)
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(self._tell, term)

    def _tell(self, term: Term) -> None:
        if term is not self.term:
            term.ended.set()
        if term.ended.is_set() and not self.wait_for_close:
            term.close()
        if self.on_change is None:
            return
        try:
            self.on_change(term)
        except Exception:
            log.exception("cluster: a listener failed on a change of term")
            if term.ended.is_set():
                term.close()  # it will not: the next term must not wait for it for ever

    async def release(self, timeout: float = 1.0) -> bool:
        """Give up the lease of the last term (once it has ended), so a standby takes over
        without waiting for it to expire; False if it was not ours any more or the
        database did not answer in ``timeout`` seconds."""
        last = self._last
        if last is None or self.term is not None:
            return False
        token = last.token
        try:
            released = await _in_thread(lambda: self.lease.release(token), timeout)
        except Exception as exc:
            log.warning("cluster: could not release the lease of token %d: %s", token, exc)
            return False
        if released:
            log.info("cluster: node %s released the lease of token %d", self.node_id, token)
        return released

    # -- what it knows ----------------------------------------------------------------------
    def _cannot_reach(self, exc: Exception) -> None:
        why = f"{type(exc).__name__}: {exc}"[:300]
        if self._unreachable is None:
            log.warning("cluster: the lease cannot be reached: %s", why)
        self._unreachable = why

    def _reached(self) -> None:
        if self._unreachable is not None:
            log.info("cluster: the lease can be reached again")
        self._unreachable = None

    def status(self) -> ClusterStatus:
        """Role, token, lease age and the leader, as this node knows them now."""
        now = self.clock()
        transitions = dict(self.transitions)
        term = self.term
        if term is not None:
            me = LeaderInfo(self.node_id, self.lease.url)
            held = now - term.renewed
            return ClusterStatus(True, self.node_id, "leader", term.token, held, me, transitions)
        leader, age = self._known_leader(now)
        return ClusterStatus(True, self.node_id, "standby", None, age, leader, transitions)

    def _known_leader(self, now: float) -> tuple[LeaderInfo | None, float | None]:
        """The other node that holds the lease, as last seen, while it may still hold it."""
        seen = self._seen
        if seen is None or seen.holder is None or seen.holder == self.node_id:
            return None, None
        elapsed = now - self._seen_at
        if elapsed >= seen.remaining:
            return None, None
        return LeaderInfo(seen.holder, seen.url), (seen.age or 0.0) + elapsed
