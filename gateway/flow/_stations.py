"""What the flow does with a station's message: undock, dock, status, power, alarms, spot events.

An undock at a pending rental's spot starts the rider's trip; a dock of a vehicle on a trip
ends it; a status settles rentals whose outcome was missed (docs/flow.md, "Restart"). A
status is state: one older than the station's last applied status is skipped, counted
``stale`` (``_clocks``); the events are not ordered (each counts once, see ``_devices``).
"""

from __future__ import annotations

from collections import Counter

from dockgate.gateway.flow._alerts import AlertDesk
from dockgate.gateway.flow._clocks import clock_of, supersedes
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._rentals import Rentals
from dockgate.gateway.flow._settings import FlowSettings
from dockgate.gateway.flow._trips import TripKeeper
from dockgate.gateway.flow._types import Rental
from dockgate.gateway.outbox import events
from dockgate.gateway.protocol import (
    AlarmEvent,
    DeviceMessage,
    PowerEvent,
    SpotDocked,
    SpotFaulted,
    SpotIdentifyFail,
    SpotTemperature,
    SpotUndocked,
    SpotUnexpectedUnlock,
    StationStatus,
)
from dockgate.gateway.store import OPEN_TRIP_STATES


class StationMessages:
    """Station messages in; trips, rentals, alerts and outbox events out."""

    def __init__(
        self,
        parts: FlowParts,
        rentals: Rentals,
        trips: TripKeeper,
        alerts: AlertDesk,
        ignored: Counter[str],
        settings: FlowSettings,
        inbound: Counter[str],
    ) -> None:
        self.parts = parts
        self.rentals = rentals
        self.trips = trips
        self.alerts = alerts
        self.ignored = ignored
        self.inbound = inbound
        self.settle_margin = settings.settle_margin
        self.outcome_timeout = settings.outcome_timeout

    def handle(self, msg: DeviceMessage) -> None:
        """One station message (``NotFound`` propagates to the caller, which counts it)."""
        sid = self.parts.site.station_id(msg.device)
        if sid is None:
            self.ignored["unknown-station"] += 1
            return
        p = msg.payload
        if isinstance(p, SpotUndocked):
            self._undocked(sid, p)
        elif isinstance(p, SpotDocked):
            self._docked(sid, p.spot, p.vehicle_id)
        elif isinstance(p, StationStatus):
            self._status(sid, msg, p)
        elif isinstance(p, PowerEvent):
            self._power(sid, p)
        elif isinstance(p, AlarmEvent):
            self._alarm(sid, p)
        else:
            self._spot_event(sid, p)

    # --- lookups and events ----------------------------------------------------------------
    def _spot_id(self, station_id: int, number: int) -> int | None:
        return self.parts.store.topology.spot_id(station_id, number)

    def _station_event(self, event: events.StationEvent) -> None:
        self.parts.outbox.publish(event, idempotency_key=event.key())

    # --- spots -----------------------------------------------------------------------------
    def _undocked(self, sid: int, p: SpotUndocked) -> None:
        rental = self.rentals.at(sid, p.spot)
        if rental is None or p.vehicle_id not in (None, rental.serial):
            rental = self.rentals.unearth(sid, p.spot, p.vehicle_id)  # cancelled while unknown
        if rental is not None:
            self.trips.start(rental)
            return
        # A vehicle left a spot without a rental: the spot is free again, and it is told.
        store = self.parts.store
        spot_id = self._spot_id(sid, p.spot)
        with store.transaction():
            vehicle_id = (
                store.vehicles.undock_spot(spot_id, p.vehicle_id) if spot_id is not None else None
            )
            self._station_event(
                events.SpotUndocked(sid, p.spot, p.vehicle_id, vehicle_id, self.parts.clock())
            )

    def _docked(self, sid: int, number: int, serial: str) -> None:
        store = self.parts.store
        vehicle = store.vehicles.by_serial(serial)
        spot_id = self._spot_id(sid, number)
        if vehicle is None or spot_id is None:
            self.ignored["unknown-vehicle-or-spot"] += 1
            return
        if vehicle.trip_id is not None:
            trip = store.trips.get(vehicle.trip_id)
            if trip.status in OPEN_TRIP_STATES:
                _, entry = self.trips.end(
                    trip, station_id=sid, spot_id=spot_id, reason="docked", serial=serial
                )
                if entry is not None:
                    self.parts.tasks.spawn(self.parts.runner.dispatch(entry))
                return
        store.vehicles.dock(vehicle.id, spot_id)

    def _spot_event(self, sid: int, p: object) -> None:
        if isinstance(p, SpotIdentifyFail | SpotUnexpectedUnlock):
            self.alerts.raise_alert(
                p.type, station_id=sid, spot_id=self._spot_id(sid, p.spot), details={"spot": p.spot}
            )
        elif isinstance(p, SpotTemperature) and p.high:
            self.alerts.raise_alert(
                "spot-high-temperature",
                station_id=sid,
                spot_id=self._spot_id(sid, p.spot),
                details={"celsius": p.celsius},
                dedup=f"station:{sid}:spot:{p.spot}:temperature",
            )
        elif isinstance(p, SpotFaulted):
            self._station_event(events.SpotFault(sid, p.spot, p.fault.value, self.parts.clock()))

    # --- the station -----------------------------------------------------------------------
    def _power(self, sid: int, p: PowerEvent) -> None:
        store = self.parts.store
        if p.type == "station-power-cut":
            with store.transaction():
                store.outages.start(sid, "power-cut")
                self.alerts.raise_alert(
                    "station-power-cut",
                    station_id=sid,
                    details={"battery": p.battery},
                    dedup=f"station:{sid}:power",
                )
        else:
            with store.transaction():
                store.outages.end(sid)
                self.alerts.clear("station-power-cut", station_id=sid)
                self._station_event(events.PowerRestored(sid, p.battery, self.parts.clock()))

    def _alarm(self, sid: int, p: AlarmEvent) -> None:
        if p.type == "station-alarm-triggered":
            self.alerts.raise_alert(
                "station-alarm-triggered",
                station_id=sid,
                details={"reason": p.reason},
                dedup=f"station:{sid}:alarm",
            )
        else:
            self.alerts.clear("station-alarm-triggered", station_id=sid)

    def _status(self, sid: int, msg: DeviceMessage, status: StationStatus) -> None:
        """Apply a status not older than the last one applied (the same one again is safe: a
        retained copy after a restart settles what the rentals taken back need)."""
        inbox = self.parts.store.inbox
        if not supersedes(msg, inbox.status_clock(sid), or_same=True):
            self.inbound["stale"] += 1
            return
        inbox.set_status_clock(sid, clock_of(msg))
        self._reconcile(sid, status, retained=msg.retained)

    def _reconcile(self, sid: int, status: StationStatus, *, retained: bool = False) -> None:
        """Settle rentals from the station's status: a missed undock, an unknown unlock.

        A spot still locked with the vehicle cancels an ``unknown`` rental only if the
        status is fresh (see :meth:`_settles`): a retained or older status may predate the
        unlock reaching the station.
        """
        for s in status.spots:
            rental = self.rentals.at(sid, s.spot)
            if rental is None:
                if s.vehicle_id is None:
                    self._unearth_if_gone(sid, s.spot, status, retained)
                continue
            if rental.state == "unlocking":
                continue
            if s.vehicle_id != rental.serial:
                self.trips.start(rental)  # the spot opened and the vehicle left
            elif rental.state == "unknown":
                if not s.locked:
                    self.rentals.set_state(rental, "open")  # vehicle still there: timer relocks
                elif self._settles(rental, status, retained):
                    self.rentals.cancel(rental, "unlock_not_done", relock=False)

    def _unearth_if_gone(self, sid: int, spot: int, status: StationStatus, retained: bool) -> None:
        """An empty spot whose unknown rental was cancelled: the vehicle left after all."""
        gone = self.rentals.buried(sid, spot)
        if gone is not None and self._settles(gone, status, retained):
            rental = self.rentals.unearth(sid, spot, None)
            if rental is not None:
                self.trips.start(rental)

    def _settles(self, rental: Rental, status: StationStatus, retained: bool) -> bool:
        """May this status settle an ``unknown`` rental? Once the outcome timeout has passed
        since the send, any status; before, only a live one (not retained) stamped by the
        device later than the send plus ``settle_margin``."""
        if self.parts.clock() >= rental.sent_at + self.outcome_timeout:
            return True
        return not retained and status.ts / 1000.0 > rental.sent_at + self.settle_margin
