"""The site alarm for the gateway's own disk: the backend learns when ingest pauses and resumes.

``StoreHealth`` (``dockgate.gateway.store``) decides when the disk is too full or failing to
take device messages; this tells the fleet backend, through CRITICAL outbox events (never
dropped): ``site.storage-degraded`` when an episode begins, ``site.storage-restored`` when it
ends. While the disk refuses every write an event cannot be stored: it waits here, in memory
(``/health`` and the log say why meanwhile), and is written with the first write that works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dockgate.gateway.outbox import Outbox, Publication, events
from dockgate.gateway.store import StorageChange, StoreHealth

log = logging.getLogger("dockgate.daemon")


class StorageAlarm:
    """Publishes a storage episode's start and end, keeping what the disk would not take."""

    def __init__(
        self, health: StoreHealth, outbox: Outbox, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.health = health
        self.outbox = outbox
        self.clock = clock
        self.unsent: list[Publication] = []
        self._flushing = False
        health.on_change(self._changed)

    def _changed(self, change: StorageChange) -> None:
        key = f"site:storage:{change.since:.6f}"  # one episode, from its start
        now = self.clock()
        if change.old == "ok":
            degraded = events.StorageDegraded(
                change.new,
                change.cause,
                change.free_bytes,
                self.health.min_free_bytes,
                change.since,
                now,
            )
            self.unsent.append((degraded, f"{key}:degraded", None))
        elif change.new == "ok":
            restored = events.StorageRestored(
                change.since, change.write_failures, change.free_bytes, now
            )
            self.unsent.append((restored, f"{key}:restored", None))
        else:
            return  # low <-> failing: the same episode (``/health`` shows which)
        self.flush()

    def flush(self) -> None:
        """Write the events still waiting, if the disk takes them now (else they wait)."""
        if not self.unsent or self._flushing:
            return
        self._flushing = True  # a refused write below changes the state: no recursion
        try:
            self.outbox.publish_many(self.unsent)
        except Exception as exc:
            if not self.health.refused(exc):
                log.exception("storage: the site alarm could not be written")
            return
        finally:
            self._flushing = False
        self.unsent = []
