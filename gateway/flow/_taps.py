"""Taps: refused (recorded, the rider told why) or accepted (a spot's unlock journaled, sent).

A tap is decided at most once: the same tap handed over again, in this run or after a
restart, finds its first decision (in memory) or its journaled unlock (in the store).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import replace

from dockgate.gateway.flow._parts import Feedback, FlowParts
from dockgate.gateway.flow._rent import Choice, choose_spot, rider_refusal
from dockgate.gateway.flow._rentals import Rentals
from dockgate.gateway.flow._types import TapDecision
from dockgate.gateway.outbox import events
from dockgate.gateway.store import JournalEntry, Record, Rider
from dockgate.gateway.taps import Tap

Prepared = tuple[TapDecision, JournalEntry | None]
RECENT = 4096  # decisions kept in memory for re-delivered taps


def tap_key(tap: Tap) -> str:
    """The idempotency key of a tap, hashed (no UID in the journal).

    A tap whose SUN message verified: UID and read counter (a re-delivered tap, or the
    same tap after a restart, finds its journaled unlock). Any other tap also carries its
    verdict, its reader and its read's time: a replay (which repeats the UID and counter of
    the tap it copies) is never folded into the accepted original, and read errors (no URL,
    no counter) never share one key; only the very same tap handed over again does.
    """
    e = tap.event
    if tap.accepted:
        raw = f"{tap.uid}:{tap.read_ctr}" if tap.read_ctr is not None else f"{e.url}"
    else:
        raw = (
            f"refused:{tap.reason}:{tap.uid}:{tap.read_ctr}:{e.url}:{e.reader}"
            f":{e.wall_time!r}:{e.presented_at!r}"
        )
    return "tap:" + hashlib.sha256(raw.encode()).hexdigest()[:24]


class TapDesk:
    """Decide on taps, journal and send the unlock of accepted ones.

    ``readers`` (reader id -> station id) is the flow's own mapping: a reader added to it
    later is known from then on. ``on_unlock_latency(seconds)`` gets the time from a
    verified tap to its unlock handed to the port.
    """

    def __init__(
        self,
        parts: FlowParts,
        rentals: Rentals,
        feedback: Feedback,
        readers: MutableMapping[str, int],
        on_unlock_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.parts = parts
        self.rentals = rentals
        self.feedback = feedback
        self.readers = readers
        self.on_unlock_latency = on_unlock_latency
        self._recent: OrderedDict[str, TapDecision] = OrderedDict()

    async def on_tap(self, tap: Tap, *, station_id: int | None = None) -> TapDecision:
        """Refuse (recorded, rider told) or unlock a spot; returns once the spot answered."""
        started = time.monotonic()
        decision, entry = self.prepare(tap, station_id=station_id)
        if entry is None:
            return decision
        return await self.unlock(tap, decision, entry, started)

    async def unlock(
        self, tap: Tap, decision: TapDecision, entry: JournalEntry, started: float = 0.0
    ) -> TapDecision:
        """Send the unlock :meth:`prepare` journaled (once it is committed); returns once the
        spot answered."""
        probe = None
        if self.on_unlock_latency is not None:
            since = tap.verified_at or started  # monotonic, like the reader's timestamps
            observe = self.on_unlock_latency

            def probe() -> None:
                observe(max(0.0, time.monotonic() - since))

        settled = await self.parts.runner.dispatch(entry, on_send=probe)
        return self.rentals.after_unlock(decision, settled)

    def prepare(self, tap: Tap, *, station_id: int | None = None) -> Prepared:
        """Decide on a tap and, if accepted, journal the unlock (nothing is sent yet).

        Returns the decision and the journal entry to dispatch (None when refused or when
        this tap was already handled: a re-delivered tap never makes a second command).
        """
        if tap.duplicate:
            return TapDecision(tap.accepted, "duplicate", tap.reason), None
        key = tap_key(tap)
        seen = self._recent.get(key)
        if seen is not None:
            return replace(seen, status="duplicate"), None
        if station_id is None:
            station_id = self.readers.get(tap.event.reader)
        if station_id is None:
            return self._refuse(tap, key, None, "unknown_reader"), None
        if not tap.accepted:
            return self._refuse(tap, key, station_id, "invalid_tag", detail=tap.reason), None
        journaled = self.parts.store.commands.by_key(key)
        if journaled is not None:
            decision = TapDecision(
                True, "duplicate", station_id=station_id, command_id=journaled.id
            )
            return self._remember(key, decision), None
        return self._accept(tap, key, station_id)

    def _accept(self, tap: Tap, key: str, station_id: int) -> Prepared:
        """A verified tap at a known station: the rider's checks, then a spot to open."""
        store = self.parts.store
        record = store.records.by_uid(tap.uid) if tap.uid else None
        if record is None:
            return self._refuse(tap, key, station_id, "unknown_record"), None
        rider = store.riders.of_record(record.id)
        if rider is None:
            return self._refuse(tap, key, station_id, "not_paired", record=record), None
        now = self.parts.clock()
        active = self.rentals.active(rider.id)
        why = rider_refusal(rider, self.parts.rules, active, now)
        if why is None:
            reserved = self.rentals.reserved_spots(station_id)
            station = store.topology.station(station_id)
            choice, why = choose_spot(store, self.parts.rules, station, active, reserved, now)
            if choice is not None:
                return self._journal_unlock(tap, key, station_id, record, rider, choice, now)
        refusal = why or "no_vehicle"
        return self._refuse(tap, key, station_id, refusal, record=record, rider=rider), None

    def _journal_unlock(
        self,
        tap: Tap,
        key: str,
        station_id: int,
        record: Record,
        rider: Rider,
        choice: Choice,
        now: float,
    ) -> Prepared:
        """One commit: the unlock's journal entry, the pending rental, the scan, the event."""
        p = self.parts
        ctx = {
            "rental": True,
            "rider_id": rider.id,
            "record_id": record.id,
            "vehicle_id": choice.vehicle_id,
            "serial": choice.serial,
            "station_id": station_id,
            "spot_id": choice.spot_id,
            "reader": tap.event.reader,
        }
        with p.store.transaction():
            entry = p.runner.journal(
                key,
                p.site.station_device(station_id),
                choice.spot_id,
                {"cmd": "unlock-spot", "spot": choice.spot},
                ctx=ctx,
            )
            if entry is None:  # the same tap, raced in concurrently
                return TapDecision(True, "duplicate", station_id=station_id), None
            p.store.records.count_scan(record.id)
            self.rentals.add(entry, ctx, now)
            accepted = events.TapAccepted(
                True,
                rider.id,
                record.id,
                choice.vehicle_id,
                choice.serial,
                station_id,
                choice.spot_id,
                tap.event.reader,
                tap.read_ctr,
                entry.id,
                now,
            )
            p.outbox.publish(accepted, idempotency_key=f"{key}:accepted")
        decision = TapDecision(
            True,
            "unlocking",
            None,
            None,
            station_id,
            rider.id,
            record.id,
            choice.vehicle_id,
            choice.spot_id,
            choice.spot,
            entry.id,
        )
        return self._remember(key, decision), entry

    def _refuse(
        self,
        tap: Tap,
        key: str,
        station_id: int | None,
        reason: str,
        *,
        detail: str | None = None,
        record: Record | None = None,
        rider: Rider | None = None,
    ) -> TapDecision:
        """Record the refusal (scan counted, outbox event) and tell the rider at the station."""
        p = self.parts
        decision = TapDecision(
            False,
            "refused",
            reason,
            detail,
            station_id,
            rider.id if rider else None,
            record.id if record else None,
        )
        with p.store.transaction():
            if record is not None:
                p.store.records.count_scan(record.id)
            refused = events.TapRefused(
                reason,
                detail,
                tap.event.reader,
                station_id,
                decision.record_id,
                decision.rider_id,
                tap.read_ctr,
                p.clock(),
            )
            p.outbox.publish(refused, idempotency_key=f"{key}:refused")
        if station_id is not None:
            self.feedback.show(station_id, "refused", reason, reader=tap.event.reader)
        return self._remember(key, decision)

    def _remember(self, key: str, decision: TapDecision) -> TapDecision:
        self._recent[key] = decision
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return decision
