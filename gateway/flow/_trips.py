"""Trips: started when a rental's vehicle leaves its spot, ended (with their cost) when it docks
or when a rule ends them. Each start or end commits with its outbox event and the vehicle
command that follows from it (unlock, lock); the command is sent once that has committed.
"""

from __future__ import annotations

import logging

from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._rentals import Rentals
from dockgate.gateway.flow._types import Rental
from dockgate.gateway.outbox import events
from dockgate.gateway.rules.pricing import pricing_at, trip_cost
from dockgate.gateway.store import Conflict, JournalEntry, Trip

log = logging.getLogger(__name__)


class TripKeeper:
    """Start and end trips, price them."""

    def __init__(self, parts: FlowParts, rentals: Rentals) -> None:
        self.parts = parts
        self.rentals = rentals

    def start(self, rental: Rental) -> int | None:
        """The vehicle left its spot: trip, outbox event and vehicle unlock in one commit."""
        p = self.parts
        self.rentals.take(rental)
        now = p.clock()
        try:
            with p.store.transaction():
                self.rentals.forget(rental)
                trip_id = p.store.trips.start(
                    rental.rider_id,
                    rental.vehicle_id,
                    record_id=rental.record_id,
                    station_id=rental.station_id,
                    spot_id=rental.spot_id,
                )
                started = events.TripStarted(
                    trip_id,
                    rental.rider_id,
                    rental.vehicle_id,
                    rental.station_id,
                    rental.spot_id,
                    rental.command_id,
                    now,
                )
                p.outbox.publish(started, idempotency_key=f"trip:{trip_id}:started")
                entry = p.runner.journal(
                    f"trip:{trip_id}:unlock-vehicle",
                    p.site.vehicle_device(rental.serial),
                    rental.vehicle_id,
                    {"cmd": "unlock-vehicle", "light": self._auto_light()},
                    trip_id=trip_id,
                )
        except Conflict as exc:
            log.warning("flow: rental %s not started: %s", rental.command_id, exc)
            return None
        if entry is not None:
            p.tasks.spawn(p.runner.dispatch(entry))
        return trip_id

    def _auto_light(self) -> bool:
        settings = self.parts.rules.bundle.config.vehicle_settings
        return any(v.auto_light for v in settings)

    def cost(self, trip: Trip, now: float, *, freefloat_lock: bool = False) -> int:
        """The trip's cost in cents from the pricing window it started in (with the
        freefloat lock price for a trip ending outside a station)."""
        p = self.parts
        b = p.rules.bundle
        price = pricing_at(b.config.pricing, trip.started_at, b.timezone)
        if price is None:
            return 0
        hold = trip.hold_seconds(now)
        ride = max(0.0, now - trip.started_at - hold)
        return round(trip_cost(price, ride, hold, freefloat_lock=freefloat_lock) * 100)

    def end(
        self, trip: Trip, *, station_id: int | None, spot_id: int | None, reason: str, serial: str
    ) -> tuple[Trip | None, JournalEntry | None]:
        """Close a trip with its cost and journal the vehicle's lock, in one commit.

        Returns the ended trip (None if it had already ended) and the lock command to send
        once the caller's transaction has committed (None if there is none).
        """
        p = self.parts
        now = p.clock()
        cost = self.cost(trip, now, freefloat_lock=station_id is None)
        try:
            with p.store.transaction():
                ended = p.store.trips.end(
                    trip.id, cost=cost, station_id=station_id, spot_id=spot_id
                )
                closed = events.TripEnded(
                    trip.id,
                    trip.rider_id,
                    trip.vehicle_id,
                    station_id,
                    spot_id,
                    cost,
                    reason,
                    trip.started_at,
                    ended.ended_at,
                )
                p.outbox.publish(closed, idempotency_key=f"trip:{trip.id}:ended")
                entry = p.runner.journal(
                    f"trip:{trip.id}:lock-vehicle",
                    p.site.vehicle_device(serial),
                    trip.vehicle_id,
                    {"cmd": "lock-vehicle", "trip_on_hold": False},
                    trip_id=trip.id,
                )
        except Conflict:
            return None, None
        return ended, entry
