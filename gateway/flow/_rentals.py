"""Pending rentals: spots opened (or being opened) for a rider, waiting for the vehicle to leave.

Each lives in memory (keyed by station and spot number) and on disk (``RentalBook``), so a
restart takes it back. A rental whose unlock may have reached the station when the gateway
died (``unknown``) and is then cancelled is kept a while as a tombstone: if its vehicle
leaves the spot after all, the rider's trip still starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

from dockgate.gateway.flow._commands import CommandRunner, Settled
from dockgate.gateway.flow._parts import Feedback, FlowParts
from dockgate.gateway.flow._settings import FlowSettings
from dockgate.gateway.flow._types import Rental, RentalState, TapDecision
from dockgate.gateway.outbox import events
from dockgate.gateway.store import JournalEntry, PendingRental

Where = tuple[int, int]  # (station id, spot number)


def entry_spot(entry: JournalEntry) -> int:
    """The spot number an ``unlock-spot`` journal entry opens (0 if it names none)."""
    parsed = CommandRunner.parse(entry)
    return int(parsed[1]["spot"]) if parsed else 0


class Rentals:
    """Open, settle, cancel and take back pending rentals."""

    def __init__(self, parts: FlowParts, feedback: Feedback, settings: FlowSettings) -> None:
        self.parts = parts
        self.feedback = feedback
        self.undock_timeout = settings.undock_timeout
        self.tombstone_ttl = settings.tombstone_ttl
        self.book = parts.store.rentals
        self.pending: dict[Where, Rental] = {}
        # unknown rentals cancelled: (rental, expiry); a late undock still starts the trip
        self.tombstones: dict[Where, tuple[Rental, float]] = {}

    # --- reading ---------------------------------------------------------------------------
    def at(self, station_id: int, spot: int) -> Rental | None:
        return self.pending.get((station_id, spot))

    def reserved_spots(self, station_id: int) -> set[int]:
        """Spot ids of the station already opened (or being opened) for someone."""
        return {r.spot_id for r in self.pending.values() if r.station_id == station_id}

    def active(self, rider_id: int) -> int:
        """The rider's open trips plus pending rentals (``max_simultaneous_rented_vehicle``)."""
        pending = sum(1 for r in self.pending.values() if r.rider_id == rider_id)
        return len(self.parts.store.trips.open(rider_id)) + pending

    # --- opening ---------------------------------------------------------------------------
    def add(self, entry: JournalEntry, ctx: dict[str, Any], at: float) -> Rental:
        """A rental for a journaled unlock (joins the caller's transaction on disk)."""
        rental = Rental(
            entry.idempotency_key,
            entry.id,
            ctx["rider_id"],
            ctx.get("record_id"),
            ctx["vehicle_id"],
            ctx["serial"],
            ctx["station_id"],
            ctx["spot_id"],
            entry_spot(entry),
            ctx.get("reader"),
            at,
        )
        self.pending[(rental.station_id, rental.spot)] = rental
        self.book.add(_on_disk(rental))
        return rental

    def load(self) -> list[Rental]:
        """The rentals a previous run left on disk (not yet taken back), oldest first."""
        return [_in_memory(row) for row in self.book.all()]

    def forget(self, rental: Rental) -> None:
        """Off disk (joins the caller's transaction): its trip started, or it is over."""
        self.book.remove(rental.key)

    def set_state(self, rental: Rental, state: RentalState) -> None:
        rental.state = state
        self.book.set_state(rental.key, state)

    def resume(self, rental: Rental, state: RentalState, *, timer: bool = True) -> None:
        """Take back a rental of a previous run (its undock may still come)."""
        self.pending[(rental.station_id, rental.spot)] = rental
        self.set_state(rental, state)
        if timer:
            self.parts.tasks.spawn(self._undock_timer(rental))

    def after_unlock(self, decision: TapDecision, settled: Settled) -> TapDecision:
        """The unlock settled: wait for the vehicle to leave, or refuse the tap after all."""
        station_id, spot = decision.station_id, decision.spot
        rental = (
            self.pending.get((station_id, spot))
            if station_id is not None and spot is not None
            else None
        )
        if settled.state == "failed":
            if rental is not None:
                self.cancel(rental, "unlock_failed", relock=False)
            if station_id is not None:
                self.feedback.show(
                    station_id,
                    "refused",
                    "unlock_failed",
                    reader=rental.reader if rental else None,
                    spot=spot,
                )
            return replace(
                decision,
                accepted=False,
                status="refused",
                reason="unlock_failed",
                detail=settled.reason,
            )
        # acked, or timed out (the spot may have opened): wait for the vehicle to leave
        if rental is not None:
            self.set_state(rental, "open")
            self.parts.tasks.spawn(self._undock_timer(rental))
        if settled.state == "acked":
            return replace(decision, status="unlocked", detail=settled.status)
        return replace(decision, status="unlocking", detail=settled.status)

    async def _undock_timer(self, rental: Rental) -> None:
        left = self.undock_timeout - max(0.0, self.parts.clock() - rental.created_at)
        try:
            await asyncio.wait_for(rental.done.wait(), max(0.0, left))
        except TimeoutError:
            if self.pending.get((rental.station_id, rental.spot)) is rental:
                self.cancel(rental, "not_undocked", relock=True)

    # --- closing ---------------------------------------------------------------------------
    def take(self, rental: Rental) -> None:
        """The rental ends (its trip starts): out of memory now, off disk with the caller's
        transaction (``book.remove``)."""
        self.pending.pop((rental.station_id, rental.spot), None)
        rental.done.set()

    def cancel(self, rental: Rental, reason: str, *, relock: bool) -> None:
        """The vehicle never left: forget the rental, lock the spot again if it was opened.

        An ``unknown`` rental (its unlock may have reached the station) is kept as a
        tombstone for ``tombstone_ttl``: if its vehicle leaves the spot after all, the
        rider's trip still starts (``rental.cancelled`` then ``trip.started``).
        """
        p = self.parts
        self.take(rental)
        if rental.state == "unknown":
            self._bury(rental)
        entry = None
        with p.store.transaction():
            self.forget(rental)
            if relock:
                entry = p.runner.journal(
                    f"{rental.key}:relock",
                    p.site.station_device(rental.station_id),
                    rental.spot_id,
                    {"cmd": "lock-spot", "spot": rental.spot},
                )
            cancelled = events.RentalCancelled(
                rental.command_id,
                rental.rider_id,
                rental.station_id,
                rental.spot_id,
                rental.vehicle_id,
                reason,
                p.clock(),
            )
            p.outbox.publish(cancelled, idempotency_key=f"{rental.key}:cancelled")
        if entry is not None:
            p.tasks.spawn(p.runner.dispatch(entry))

    def _bury(self, rental: Rental) -> None:
        now = self.parts.clock()
        for where, (_, expiry) in list(self.tombstones.items()):
            if expiry <= now:
                del self.tombstones[where]
        self.tombstones[(rental.station_id, rental.spot)] = (rental, now + self.tombstone_ttl)

    def buried(self, station_id: int, spot: int) -> Rental | None:
        """The cancelled-unknown rental kept for this spot, if any (left in place)."""
        kept = self.tombstones.get((station_id, spot))
        return kept[0] if kept is not None else None

    def unearth(self, station_id: int, spot: int, serial: str | None) -> Rental | None:
        """The cancelled-unknown rental of this spot and vehicle, if still kept (taken)."""
        kept = self.tombstones.get((station_id, spot))
        if kept is None:
            return None
        rental, expiry = kept
        if expiry <= self.parts.clock():
            del self.tombstones[(station_id, spot)]
            return None
        if serial is not None and serial != rental.serial:
            return None
        del self.tombstones[(station_id, spot)]
        return rental


def _on_disk(r: Rental) -> PendingRental:
    return PendingRental(
        r.key,
        r.command_id,
        r.rider_id,
        r.record_id,
        r.vehicle_id,
        r.serial,
        r.station_id,
        r.spot_id,
        r.spot,
        r.reader,
        r.created_at,
        r.state,
    )


def _in_memory(row: PendingRental) -> Rental:
    return Rental(
        row.key,
        row.command_id,
        row.rider_id,
        row.record_id,
        row.vehicle_id,
        row.serial,
        row.station_id,
        row.spot_id,
        row.spot,
        row.reader,
        row.created_at,
        cast(RentalState, row.state),
    )
