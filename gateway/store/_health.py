"""Whether the store can write: a full or failing disk is a state to live through, not a death.

SQLite answers a write it cannot make with ``database or disk is full`` (SQLITE_FULL) or
``disk I/O error`` (SQLITE_IOERR) and rolls the whole transaction back (``Database`` then ends
in a known state), so the refused work can simply be retried once the disk takes writes again.
A PostgreSQL server refusing a write for its disk (``53100`` disk_full, ``58030`` io_error)
counts the same; its free space is the server's to watch (``db.disk`` is None: no watermark).

:class:`StoreHealth` keeps that state for the daemon. ``low``: the free space of the database's
filesystem is below a watermark; the gateway stops taking device messages (they wait at the
broker) so what is left stays for the journal, taps, command outcomes and alerts. ``failing``:
the disk refused a write; only a probe (a real one-row commit) ends it. Free space back above
the watermark with some margin (no flapping) and a probe that commits: ``ok`` again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dockgate.gateway.store._db import BaseDatabase

log = logging.getLogger(__name__)

StorageState = Literal["ok", "low", "failing"]

#: After a refused write, the free space needed before a probe is worth trying, whatever the
#: watermark: a one-row probe can succeed on a disk a batch still cannot write to (SQLite
#: reuses its write-ahead log's space), which would end and begin an episode at every batch.
RETRY_HEADROOM = 1024 * 1024
_SQLITE_FULL = 13
_SQLITE_IOERR = 10  # extended I/O codes keep it in their low byte
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
_PG_DISK_STATES = frozenset({"53100", "58030"})  # PostgreSQL's disk_full and io_error
_PROBE = (
    "INSERT INTO storage_probe(id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at"
)


def refused_write(exc: BaseException) -> str | None:
    """Why the disk refused a write, if ``exc`` or an exception it came from says so."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            text = str(current)
            if code is not None and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
                return text
            if "disk is full" in text or "disk I/O error" in text:
                return text
        if getattr(current, "sqlstate", None) in _PG_DISK_STATES:
            return str(current)
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return f"{current.strerror or current}"
        current = current.__cause__ or current.__context__
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True, slots=True)
class StorageChange:
    """A change of state, for whoever tells the backend (``StoreHealth.on_change``)."""

    old: StorageState
    new: StorageState
    cause: str | None
    since: float  # when the current episode (a run of states other than ``ok``) began
    free_bytes: int | None
    write_failures: int  # writes refused during the episode


class StoreHealth:
    """The store's disk as the daemon sees it: free space, refused writes, probes."""

    def __init__(
        self,
        db: BaseDatabase,
        *,
        min_free_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        #: The directory whose filesystem holds the database (None: a server's, not ours).
        self.directory = db.disk
        self.min_free_bytes = min_free_bytes
        # Ingest resumes only a quarter of the watermark above it: no pause-resume flapping.
        self.resume_free_bytes = min_free_bytes + min_free_bytes // 4
        self.retry_free_bytes = max(self.resume_free_bytes, RETRY_HEADROOM)
        self.clock = clock
        self.state: StorageState = "ok"
        self.cause: str | None = None
        self.since: float | None = None
        self.write_failures = 0  # every write the disk refused, ever
        self.episodes = 0  # times the store left ``ok``
        self.probes = 0
        self.last_error: str | None = None
        self._episode_failures = 0
        self._listeners: list[Callable[[StorageChange], None]] = []

    # -- reading the disk --------------------------------------------------------------------
    def free_bytes(self) -> int | None:
        """Bytes an unprivileged writer may still use on the database's filesystem (None:
        unknown, or the database is on a server)."""
        if self.directory is None:
            return None
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def ingest_allowed(self) -> bool:
        """May the gateway take device messages now? Not while writes fail, nor while the
        free space is below the watermark (and, once below, until it is back with margin)."""
        if self.state == "failing":
            return False
        free = self.free_bytes()
        if free is None:
            return self.state == "ok"
        if self.state == "low":
            if free >= self.resume_free_bytes:
                self._enter("ok", None, free)
        elif free < self.min_free_bytes:
            self._enter("low", self._low_cause(free), free)
        return self.state == "ok"

    # -- what writers report -----------------------------------------------------------------
    def refused(self, exc: BaseException) -> bool:
        """Record ``exc`` if it is the disk refusing a write (True), else leave it (False)."""
        why = refused_write(exc)
        if why is None:
            return False
        self.write_failures += 1
        self.last_error = why[:200]
        if self.state != "failing":
            kind = "disk full" if "full" in why or "space" in why else "disk error"
            self._enter("failing", f"{kind}: the store cannot write ({why})"[:300])
        self._episode_failures += 1  # after ``_enter``, which begins an episode at zero
        return True

    def probe(self) -> bool:
        """Commit one row: True (and the failing state ends) if the disk took it.

        Without room to write (``retry_free_bytes``) nothing is tried: the state stays.
        """
        free = self.free_bytes()
        if free is not None and free < self.retry_free_bytes:
            return False
        self.probes += 1
        try:
            with self.db.transaction() as conn:
                conn.execute(_PROBE, (self.clock(),))
        except Exception as exc:
            if not self.refused(exc):
                raise
            return False
        self._enter("ok", None, free)
        return True

    def poll(self) -> None:
        """Look again (the daemon's housekeeping calls it every second): probe while failing,
        check the watermark otherwise, so the state clears even with nothing to ingest."""
        if self.state == "failing":
            self.probe()
        else:
            self.ingest_allowed()

    async def until_ingest(self, interval: float) -> None:
        """Return once device messages may be taken again, probing every ``interval`` s."""
        while not self.ingest_allowed():
            await asyncio.sleep(interval)
            if self.state == "failing":
                self.probe()

    # -- reporting ---------------------------------------------------------------------------
    def on_change(self, listener: Callable[[StorageChange], None]) -> None:
        """Call ``listener`` at every change of state (in the thread that saw it)."""
        self._listeners.append(listener)

    def status(self) -> dict[str, Any]:
        """The ``storage`` section of ``/health`` (and the metrics' source)."""
        return {
            "state": self.state,
            "ingest": "running" if self.state == "ok" else "paused",
            "cause": self.cause,
            "since": self.since,
            "free_bytes": self.free_bytes(),
            "min_free_bytes": self.min_free_bytes,
            "write_failures": self.write_failures,
            "episodes": self.episodes,
            "probes": self.probes,
            "last_error": self.last_error,
        }

    def _low_cause(self, free: int) -> str:
        return (
            f"disk full: {_size(free)} free, below the {_size(self.min_free_bytes)} watermark"
            f" on {self.directory}"
        )

    def _enter(self, new: StorageState, cause: str | None, free: int | None = None) -> None:
        old = self.state
        if new == old and cause == self.cause:
            return
        now = self.clock()
        if old == "ok":
            self.since, self._episode_failures = now, 0
            self.episodes += 1
        since = self.since if self.since is not None else now
        self.state, self.cause = new, cause
        change = StorageChange(old, new, cause, since, free, self._episode_failures)
        if new == "ok":
            self.since = None
            log.warning(
                "storage: writes work again; taking device messages",
                extra={"paused_s": round(now - since, 3), "write_failures": change.write_failures},
            )
        else:
            log.error(
                "storage: not taking device messages (they wait at the broker)",
                extra={"state": new, "cause": cause, "free_bytes": free},
            )
        for listener in list(self._listeners):
            listener(change)
