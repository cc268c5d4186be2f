"""Vehicle telemetry through the rules engine: a run of reports in one transaction.

Each report newer than its vehicle's last applied one (``_clocks``) updates its vehicle and
appends ``vehicle.state``; the engine's decisions journal vehicle commands, hold or end
trips, raise or clear alerts and queue notifications, all in the run's transaction. Once it
has committed, the commands are sent in order. An older report (a late delivery, a replay,
a redelivery) changes nothing and is counted ``stale``: the time-series history, written
before the flow, still has it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from dockgate.gateway.flow._alerts import AlertDesk
from dockgate.gateway.flow._clocks import clock_of, restamped, supersedes
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._trips import TripKeeper
from dockgate.gateway.outbox import Publication, events
from dockgate.gateway.protocol import DeviceMessage, LockState, Telemetry
from dockgate.gateway.rules import AlertAction, Command, CommandKind, Decisions, Trip, VehicleState
from dockgate.gateway.store import (
    OPEN_TRIP_STATES,
    DeviceClock,
    JournalEntry,
    NotFound,
    Rider,
    Store,
    TripState,
    Vehicle,
)
from dockgate.gateway.store import Trip as TripRow

log = logging.getLogger(__name__)
Rows = dict[str, Vehicle | None]  # the run's vehicles by serial
Clocks = dict[str, DeviceClock]  # the clock of each vehicle's last applied report, by serial
Chunk = list[tuple[Vehicle, Telemetry, VehicleState, DeviceClock]]
Sends = list[list[JournalEntry]]  # to send once committed, each list in order

NO_LIMIT_KPH = 60  # the protocol's highest cap: "no limit" for set-max-speed

#: Rule commands that only journal a vehicle command: no store read that can fail, no outbox
#: event, nothing written but the journal entry.
JOURNAL_ONLY = frozenset(
    {CommandKind.SET_MAX_SPEED, CommandKind.PLAY_SOUND, CommandKind.LOCK, CommandKind.UNLOCK}
)


def enroll_vehicle(parts: FlowParts, serial: str) -> int:
    """A vehicle the site has not seen yet joins the fleet on its first valid message (in the
    message's transaction); its id."""
    vehicle_id = parts.store.vehicles.enroll(parts.site.network_id, serial)
    log.info("new vehicle", extra={"serial": serial, "vehicle_id": vehicle_id})
    return vehicle_id


class _RunReads:
    """The trips and riders a telemetry run needs, read in bulk (one query each, by id).

    Filled on first use from every open trip of the run's vehicle rows; ``reset`` after a
    decision wrote trips or riders, so the next use reads them again.
    """

    __slots__ = ("riders", "rows", "store", "trips")

    def __init__(self, store: Store, rows: Rows) -> None:
        self.store = store
        self.rows = rows
        self.trips: dict[int, TripRow] | None = None
        self.riders: dict[int, Rider] = {}

    def reset(self) -> None:
        self.trips = None
        self.riders = {}

    def trip(self, trip_id: int) -> TripRow:
        trips = self.trips
        if trips is None:
            ids = {v.trip_id for v in self.rows.values() if v and v.trip_id is not None}
            ids.add(trip_id)
            trips = self.trips = self.store.trips.by_ids(ids)
            self.riders = self.store.riders.by_ids(
                t.rider_id for t in trips.values() if t.status in OPEN_TRIP_STATES
            )
        row = trips.get(trip_id)
        if row is None:
            row = trips[trip_id] = self.store.trips.get(trip_id)  # NotFound as before
        return row

    def rider(self, rider_id: int) -> Rider:
        row = self.riders.get(rider_id)
        if row is None:
            row = self.riders[rider_id] = self.store.riders.get(rider_id)  # NotFound as before
        return row


class TelemetryRuns:
    """Runs of telemetry reports in, vehicle updates, events, decisions and commands out."""

    def __init__(
        self,
        parts: FlowParts,
        trips: TripKeeper,
        alerts: AlertDesk,
        ignored: Counter[str],
        inbound: Counter[str],
        *,
        enroll_vehicles: bool = False,
    ) -> None:
        self.parts = parts
        self.trips = trips
        self.alerts = alerts
        self.ignored = ignored
        self.inbound = inbound
        self.enroll_vehicles = enroll_vehicles
        self._moved: dict[str, float] = {}  # serial -> when it last moved (or was first seen)
        self._touched = False  # a rule decision wrote trips, riders or alerts (see _apply)

    def handle(self, reports: Sequence[DeviceMessage]) -> None:
        """Vehicle updates, ``vehicle.state`` events and rule decisions of many reports, in
        one transaction, which also marks their commands ``sent``; they are sent, in order,
        once it has committed.

        Reports are cut into chunks in which no vehicle and no rider on a trip appears
        twice: a chunk is evaluated with ``evaluate_many`` at one clock reading, and every
        read a report needs (its vehicle row, trip, rider) happens after the chunks before
        it were written, so nothing differs from handling the reports one by one.
        """
        store = self.parts.store
        sends: Sends = []
        with store.transaction():
            found = self._vehicles([m.device.device_id for m in reports])
            rows: Rows = {serial: vehicle for serial, (vehicle, _) in found.items()}
            clocks: Clocks = {serial: clock for serial, (_, clock) in found.items()}
            self._chunks(reports, rows, clocks, sends)
            if not sends:
                return
            # All of the run's commands are about to go on the wire: marked with the run.
            store.commands.mark_many((e.id for entries in sends for e in entries), "sent")
            for entries in sends:
                self.parts.tasks.spawn(self._dispatch_in_order(entries))

    def _vehicles(self, serials: list[str]) -> dict[str, tuple[Vehicle, DeviceClock]]:
        """The run's vehicles with their report clocks (vehicles first heard of enrolled)."""
        vehicles = self.parts.store.vehicles
        found = vehicles.reporting(serials)
        if self.enroll_vehicles and len(found) < len(set(serials)):
            new = [s for s in dict.fromkeys(serials) if s not in found]
            for serial in new:
                enroll_vehicle(self.parts, serial)
            found.update(vehicles.reporting(new))
        return found

    async def _dispatch_in_order(self, entries: list[JournalEntry]) -> None:
        for entry in entries:
            await self.parts.runner.dispatch(entry, marked=True)

    # --- chunks ----------------------------------------------------------------------------
    def _chunks(
        self, reports: Sequence[DeviceMessage], rows: Rows, clocks: Clocks, sends: Sends
    ) -> None:
        chunk: Chunk = []
        in_chunk: set[Any] = set()
        reads = _RunReads(self.parts.store, rows)

        def cut() -> None:
            nonlocal chunk, in_chunk
            self._flush(chunk, sends)
            if self._touched:
                # A decision wrote trips, riders or vehicles' trips (a hold, a trip ended,
                # an alert): read them again, the chunk's vehicles first. Otherwise the rows
                # read before are still those of the store (telemetry itself only writes
                # position, battery and lock, which the flow does not read back).
                self._touched = False
                serials = [k for k in in_chunk if isinstance(k, str)]
                fresh = self.parts.store.vehicles.by_serials(serials)
                for k in serials:
                    rows[k] = fresh.get(k)
                reads.reset()
            chunk, in_chunk = [], set()

        stale = 0
        with self.parts.store.transaction():
            for msg in reports:
                serial = msg.device.device_id
                if serial in rows and not supersedes(msg, clocks.get(serial)):
                    stale += 1  # older than the state applied: the vehicle never goes back
                    continue
                if serial in in_chunk:
                    cut()
                t: Telemetry = restamped(msg).payload
                try:
                    placed = self._place(serial, t, rows, reads, in_chunk, cut)
                except NotFound as exc:
                    self.ignored["not-found"] += 1
                    log.warning("flow: telemetry from %s: %s", serial, exc)
                    continue
                if placed is None:
                    self.ignored["unknown-vehicle"] += 1
                    continue
                vehicle, state, rider = placed
                clocks[serial] = clock = clock_of(msg)
                chunk.append((vehicle, t, state, clock))
                in_chunk.add(serial)
                if rider is not None:
                    in_chunk.add(rider)
            self._flush(chunk, sends)
        if stale:
            self.inbound["stale"] += stale

    def _place(
        self,
        serial: str,
        t: Telemetry,
        rows: Rows,
        reads: _RunReads,
        in_chunk: set[Any],
        cut: Callable[[], None],
    ) -> tuple[Vehicle, VehicleState, tuple[str, int] | None] | None:
        """The report's vehicle, state and rider key, after cutting the chunk if its rider is
        in it already (its trip's credit may change); None for an unknown vehicle."""
        vehicle = rows.get(serial)
        if vehicle is None:
            return None
        state = self._state_of(t, vehicle, reads)
        if state.trip is None or vehicle.trip_id is None:
            return vehicle, state, None
        rider = ("rider", reads.trip(vehicle.trip_id).rider_id)
        if rider in in_chunk:
            cut()
            vehicle = rows.get(serial)
            if vehicle is None:  # pragma: no cover - a vehicle row never goes
                return None
            state = self._state_of(t, vehicle, reads)
        return vehicle, state, rider if state.trip is not None else None

    def _flush(self, chunk: Chunk, sends: Sends) -> None:
        """Evaluate a chunk, write its vehicles, queue its events and decisions in order."""
        if not chunk:
            return
        p = self.parts
        decisions = p.rules.evaluate_many([c[2] for c in chunk], p.clock())
        p.store.vehicles.report_many(
            (v.id, t.battery, t.lat, t.lng, t.lock is not LockState.UNLOCKED, clock)
            for v, t, _, clock in chunk
        )
        states: list[Publication] = []
        for (vehicle, t, _, _), d in zip(chunk, decisions, strict=True):
            states.append(_vehicle_state(vehicle.id, t))
            if not (d.commands or d.alerts or d.notifications):
                continue
            if not (d.alerts or d.notifications) and all(
                c.kind in JOURNAL_ONLY for c in d.commands
            ):
                # Only journal entries: nothing can be NotFound (no savepoint needed) and no
                # outbox event is appended, so the run of state events goes on.
                entries = self._apply(vehicle, t, d, sends)
                if entries:
                    sends.append(entries)
                continue
            p.outbox.publish_many(states)  # the events before this one keep their order
            states = []
            held = len(sends)
            try:
                with p.store.db.savepoint():
                    entries = self._apply(vehicle, t, d, sends)
            except NotFound as exc:  # only this report's decisions are undone
                del sends[held:]
                self.ignored["not-found"] += 1
                log.warning("flow: decisions for %s: %s", t.device_id, exc)
                continue
            if entries:
                sends.append(entries)
        p.outbox.publish_many(states)

    # --- the engine's view -----------------------------------------------------------------
    def _trip_state(
        self, vehicle: Vehicle, serial: str, moving: bool, reads: _RunReads
    ) -> Trip | None:
        now = self.parts.clock()
        if moving or serial not in self._moved:
            self._moved[serial] = now
        trip_id = vehicle.trip_id
        if trip_id is None:
            return None
        trip = reads.trip(trip_id)
        if trip.status not in OPEN_TRIP_STATES:
            return None
        rider = reads.rider(trip.rider_id)
        held = trip.status == TripState.ON_HOLD
        return Trip(
            str(trip.id),
            trip.started_at,
            rider.credit / 100.0,
            held,
            trip.paused_at if held else None,
            0.0,
            self._moved[serial],
        )

    def _state_of(self, t: Telemetry, vehicle: Vehicle, reads: _RunReads) -> VehicleState:
        """The rules engine's view of a telemetry report (reads the open trip, if any)."""
        serial = t.device_id
        moving = t.speed > self.parts.rules.bundle.safety.walking_speed_kph
        return VehicleState(
            serial,
            t.lat,
            t.lng,
            t.ts / 1000.0,
            t.gps_accuracy,
            t.speed,
            t.battery,
            t.lock is not LockState.UNLOCKED,
            self._trip_state(vehicle, serial, moving, reads),
            vehicle.vehicle_type,  # GBFS rules for its type apply (as the GBFS feed says)
        )

    # --- decisions -------------------------------------------------------------------------
    def _apply(
        self, vehicle: Vehicle, t: Telemetry, d: Decisions, sends: Sends
    ) -> list[JournalEntry]:
        """Journal the engine's commands, open or clear its alerts, queue its notifications.

        Keys name the decision's instant and the report's timestamp, so two reports of one
        vehicle decided within the same millisecond (one batch) never share a key: neither
        decision is lost. A speed cap the vehicle already reports having (its telemetry's
        ``max_speed``) is not sent again: it would change nothing on the vehicle. A trip the
        engine ends adds its lock command to ``sends`` (in the order it is decided).
        """
        p = self.parts
        serial = t.device_id
        device = p.site.vehicle_device(serial)
        vid, trip_id = vehicle.id, vehicle.trip_id
        stamp = f"{round(d.at * 1000)}:{t.ts}"
        entries: list[JournalEntry] = []
        for c in d.commands:
            key = f"rules:{serial}:{c.kind.value}:{stamp}"
            if c.kind in JOURNAL_ONLY:
                fields = self._vehicle_command(c, t.max_speed)
                if c.kind is CommandKind.UNLOCK and trip_id is not None:
                    key = f"trip:{trip_id}:unlock-vehicle"  # the trip start sent it already
            else:
                fields = self._trip_command(c, trip_id, serial, d.at, stamp, sends)
            if fields is not None:
                entry = p.runner.journal(
                    key, device, vid, fields, trip_id=trip_id, ctx={"reason": c.reason}
                )
                if entry is not None:
                    entries.append(entry)
        self._alerts(vid, d)
        for n in d.notifications:
            p.outbox.publish(
                events.Notification(n.kind.value, vid, trip_id, n.to_rider, n.reason, d.at),
                idempotency_key=f"note:{serial}:{n.kind.value}:{stamp}",
            )
        return entries

    def _vehicle_command(self, c: Command, reported_max_speed: int | None) -> dict[str, Any] | None:
        """The command fields of a journal-only decision (None: nothing to send)."""
        if c.kind is CommandKind.SET_MAX_SPEED:
            cap = c.max_speed_kph or NO_LIMIT_KPH
            if cap == reported_max_speed:
                self.ignored["max-speed-already-set"] += 1
                return None
            return {"cmd": "set-max-speed", "max_speed": cap}
        if c.kind is CommandKind.PLAY_SOUND:
            return {"cmd": "play-sound", "sound": "geofencing"}
        if c.kind is CommandKind.LOCK:
            return {"cmd": "lock-vehicle", "trip_on_hold": False}
        return {"cmd": "unlock-vehicle", "light": bool(c.auto_light)}

    def _trip_command(
        self, c: Command, trip_id: int | None, serial: str, at: float, stamp: str, sends: Sends
    ) -> dict[str, Any] | None:
        """Hold or end the vehicle's trip; the hold's lock command fields, if any."""
        if trip_id is None:
            return None
        p = self.parts
        if c.kind is CommandKind.TRIP_HOLD:
            self._touched = True
            p.store.trips.set_status(trip_id, TripState.ON_HOLD)
            p.outbox.publish(
                events.TripOnHold(trip_id, c.reason, at),
                idempotency_key=f"trip:{trip_id}:hold:{stamp}",
            )
            return {"cmd": "lock-vehicle", "trip_on_hold": True}
        if c.kind is CommandKind.END_TRIP:
            self._touched = True
            trip = p.store.trips.get(trip_id)
            if trip.status in OPEN_TRIP_STATES:
                _, entry = self.trips.end(
                    trip, station_id=None, spot_id=None, reason=c.reason, serial=serial
                )
                if entry is not None:
                    sends.append([entry])
        return None

    def _alerts(self, vid: int, d: Decisions) -> None:
        if d.alerts:
            self._touched = True
        for a in d.alerts:
            if a.action is AlertAction.RAISE:
                self.alerts.raise_alert(
                    a.alert_type.value,
                    vehicle_id=vid,
                    severity=a.severity.value,
                    details={"reason": a.reason},
                    dedup=f"vehicle:{vid}:{a.alert_type}",
                )
            elif a.action is AlertAction.CLEAR:
                self.alerts.clear(a.alert_type.value, vehicle_id=vid)


def _vehicle_state(vid: int, t: Telemetry) -> Publication:
    """The ``vehicle.state`` event of a report (compacted per vehicle: the latest counts)."""
    state = events.VehicleState(vid, t.lat, t.lng, t.battery, t.speed, t.lock.value, t.ts / 1000.0)
    return state, f"vehicle:{vid}:state:{t.ts}", f"vehicle:{vid}"
