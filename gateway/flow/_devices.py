"""What the flow does with each device message: undock, dock, telemetry, power, alarms.

A mixin of :class:`~dockgate.gateway.flow.RideFlow`, kept apart so that each file stays short.
Telemetry goes through the rules engine; its commands are journaled with the vehicle update
and its alerts in one commit, then sent in order in the background.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dockgate.gateway.outbox import Priority
from dockgate.gateway.outbox._outbox import NewEvent
from dockgate.gateway.protocol import (
    ALERT_OF_EVENT,
    AlarmEvent,
    DeviceKind,
    DeviceMessage,
    DeviceRef,
    LockState,
    PowerEvent,
    SpotDocked,
    SpotFaulted,
    SpotIdentifyFail,
    SpotTemperature,
    SpotUndocked,
    SpotUnexpectedUnlock,
    StationStatus,
    Telemetry,
    VehicleEvent,
)
from dockgate.gateway.rules import AlertAction, CommandKind, Decisions, Trip, VehicleState
from dockgate.gateway.store import NotFound, Store

if TYPE_CHECKING:
    from dockgate.gateway.flow._flow import RideFlow
    from dockgate.gateway.flow._types import Rental

log = logging.getLogger(__name__)
Row = dict[str, Any]

#: Dashboard severity of each alert a device raises.
SEVERITY = {
    "station-power-cut": "critical",
    "station-alarm-triggered": "critical",
    "vehicle-dismantling": "critical",
    "unexpected-unlock": "high",
    "spot-high-temperature": "high",
    "vehicle-lifted": "high",
    "vehicle-illegal-moving": "high",
    "spot-identify-fail": "low",
    "vehicle-fallen": "low",
}
NO_LIMIT_KPH = 60  # the protocol's highest cap: "no limit" for set-max-speed


#: Rule commands that only journal a vehicle command: no store read that can fail, no outbox
#: event, nothing written but the journal entry.
JOURNAL_ONLY = frozenset(
    {CommandKind.SET_MAX_SPEED, CommandKind.PLAY_SOUND, CommandKind.LOCK, CommandKind.UNLOCK}
)


class _RunReads:
    """The trips and riders a telemetry run needs, read in bulk (one query each, by id).

    Filled on first use from every open trip of the run's vehicle rows; ``reset`` after a
    decision wrote trips or riders, so the next use reads them again.
    """

    __slots__ = ("riders", "rows", "store", "trips")

    def __init__(self, store: Store, rows: dict[str, Row]) -> None:
        self.store = store
        self.rows = rows
        self.trips: dict[int, Row] | None = None
        self.riders: dict[int, Row] = {}

    def reset(self) -> None:
        self.trips = None
        self.riders = {}

    def trip(self, trip_id: int) -> Row:
        trips = self.trips
        if trips is None:
            ids = {v["trip_id"] for v in self.rows.values() if v and v["trip_id"] is not None}
            ids.add(trip_id)
            trips = self.trips = self.store.trips_by_id(ids)
            self.riders = self.store.riders_by_id(
                t["rider_id"] for t in trips.values() if t["status"] != "ended"
            )
        row = trips.get(trip_id)
        if row is None:
            row = trips[trip_id] = self.store.trip(trip_id)  # NotFound as before
        return row

    def rider(self, rider_id: int) -> Row:
        row = self.riders.get(rider_id)
        if row is None:
            row = self.riders[rider_id] = self.store.rider(rider_id)  # NotFound as before
        return row


class DeviceHandling:
    """Device messages in, store writes, outbox events and commands out."""

    def __init__(self) -> None:
        self.ignored: Counter[str] = Counter()  # messages the flow could not place, by why
        self._moved: dict[str, float] = {}
        self._touched = False  # a rule decision wrote trips, riders or alerts (see _apply)

    async def on_device_message(self: RideFlow, msg: DeviceMessage) -> None:
        """Handle one validated device message (never raises for device behaviour)."""
        await self.on_device_messages((msg,))

    def _on_message(self: RideFlow, msg: DeviceMessage) -> None:
        try:
            if msg.device.kind is DeviceKind.STATION:
                self._on_station(msg)
            else:
                self._on_vehicle(msg)
        except NotFound as exc:
            self.ignored["not-found"] += 1
            log.warning("flow: %s from %s: %s", msg.channel, msg.device.device_id, exc)

    async def on_device_messages(self: RideFlow, batch: Sequence[DeviceMessage]) -> None:
        """Handle a driver batch (``driver.get_batch(n)``), in arrival order.

        Consecutive telemetry messages are handled together: one transaction, one bulk
        vehicle update per chunk, ``evaluate_many`` over chunks in which no vehicle (and no
        rider) appears twice, the outbox events appended in batches. Decisions, store state,
        outbox events (and their order) and commands are those of handling the messages one
        by one. Any other message first ends the telemetry run before it, then is handled
        exactly as ``on_device_message`` always did.
        """
        run: list[DeviceMessage] = []
        for msg in batch:
            if msg.device.kind is DeviceKind.VEHICLE and isinstance(msg.payload, Telemetry):
                run.append(msg)
                continue
            if run:
                self._telemetry_run(run)
                run = []
            self._on_message(msg)
        if run:
            self._telemetry_run(run)

    # --- lookups ---------------------------------------------------------------------------
    def _station_id(self: RideFlow, device: DeviceRef) -> int | None:
        for sid, dev in self.station_devices.items():
            if dev == device.device_id:
                return sid
        return int(device.device_id) if device.device_id.isdigit() else None

    def _vehicle(self: RideFlow, serial: str) -> Row | None:
        return self.store.vehicle_by_serial(serial)

    def _spot_id(self: RideFlow, station_id: int, number: int) -> int | None:
        for spot in self.store.spots(station_id):
            if spot["number"] == number:
                return int(spot["id"])
        return None

    def _alert(
        self: RideFlow,
        alert_type: str,
        *,
        station_id: int | None = None,
        spot_id: int | None = None,
        vehicle_id: int | None = None,
        severity: str | None = None,
        details: dict[str, Any] | None = None,
        dedup: str | None = None,
    ) -> None:
        """Open an alert (reused while open with the same ``dedup``) and queue it critical."""
        cluster = self.store.station(station_id)["cluster_id"] if station_id else None
        severity = severity or SEVERITY.get(alert_type, "high")
        with self.store.transaction():
            alert_id, created = self.store.raise_alert(
                self.network_id,
                alert_type,
                severity,
                cluster_id=cluster,
                station_id=station_id,
                spot_id=spot_id,
                vehicle_id=vehicle_id,
                details=details,
                dedup_key=dedup,
            )
            if created:
                self.outbox.append(
                    "alert.raised",
                    {
                        "alert_id": alert_id,
                        "alert_type": alert_type,
                        "severity": severity,
                        "station_id": station_id,
                        "spot_id": spot_id,
                        "vehicle_id": vehicle_id,
                        "details": details or {},
                        "at": self.clock(),
                    },
                    idempotency_key=f"alert:{alert_id}:raised",
                    priority=Priority.CRITICAL,
                )

    def _clear(
        self: RideFlow,
        alert_type: str,
        *,
        station_id: int | None = None,
        vehicle_id: int | None = None,
    ) -> None:
        open_ = self.store.alerts(
            [self.network_id],
            resolved=False,
            alert_type=alert_type,
            vehicle_id=vehicle_id,
            page_size=100,
        )
        ids = [a["id"] for a in open_ if station_id is None or a["station_id"] == station_id]
        with self.store.transaction():
            for alert_id in self.store.resolve_alerts(ids, resolved_by="gateway"):
                self.outbox.append(
                    "alert.cleared",
                    {"alert_id": alert_id, "alert_type": alert_type, "at": self.clock()},
                    idempotency_key=f"alert:{alert_id}:cleared",
                    priority=Priority.CRITICAL,
                )

    # --- stations --------------------------------------------------------------------------
    def _on_station(self: RideFlow, msg: DeviceMessage) -> None:
        sid = self._station_id(msg.device)
        if sid is None:
            self.ignored["unknown-station"] += 1
            return
        p = msg.payload
        if isinstance(p, SpotUndocked):
            rental = self.rentals.get((sid, p.spot))
            if rental is None or p.vehicle_id not in (None, rental.serial):
                rental = self.unearth(sid, p.spot, p.vehicle_id)  # cancelled while unknown
            if rental is not None:
                self.start_trip(rental)
            else:
                self._undocked(sid, p.spot, p.vehicle_id)
        elif isinstance(p, SpotDocked):
            self._docked(sid, p.spot, p.vehicle_id)
        elif isinstance(p, StationStatus):
            self._reconcile(sid, p, retained=msg.retained)
        elif isinstance(p, PowerEvent):
            if p.type == "station-power-cut":
                with self.store.transaction():
                    self.store.start_outage(sid, "power-cut")
                    self._alert(
                        "station-power-cut",
                        station_id=sid,
                        details={"battery": p.battery},
                        dedup=f"station:{sid}:power",
                    )
            else:
                with self.store.transaction():
                    self.store.end_outage(sid)
                    self._clear("station-power-cut", station_id=sid)
                    self._state_event("station.power-restored", sid, {"battery": p.battery})
        elif isinstance(p, AlarmEvent):
            if p.type == "station-alarm-triggered":
                self._alert(
                    "station-alarm-triggered",
                    station_id=sid,
                    details={"reason": p.reason},
                    dedup=f"station:{sid}:alarm",
                )
            else:
                self._clear("station-alarm-triggered", station_id=sid)
        elif isinstance(p, SpotIdentifyFail | SpotUnexpectedUnlock):
            self._alert(
                p.type, station_id=sid, spot_id=self._spot_id(sid, p.spot), details={"spot": p.spot}
            )
        elif isinstance(p, SpotTemperature) and p.high:
            self._alert(
                "spot-high-temperature",
                station_id=sid,
                spot_id=self._spot_id(sid, p.spot),
                details={"celsius": p.celsius},
                dedup=f"station:{sid}:spot:{p.spot}:temperature",
            )
        elif isinstance(p, SpotFaulted):
            self._state_event(
                "spot.fault",
                sid,
                {"spot": p.spot, "fault": p.fault.value},
                priority=Priority.OUTCOME,
            )

    def _state_event(
        self: RideFlow,
        kind: str,
        station_id: int,
        body: dict[str, Any],
        priority: Priority = Priority.STATE,
    ) -> None:
        at = self.clock()
        self.outbox.append(
            kind,
            {"station_id": station_id, **body, "at": at},
            idempotency_key=f"{kind}:{station_id}:{body}:{at}",
            priority=priority,
        )

    def _docked(self: RideFlow, sid: int, number: int, serial: str) -> None:
        vehicle = self._vehicle(serial)
        spot_id = self._spot_id(sid, number)
        if vehicle is None or spot_id is None:
            self.ignored["unknown-vehicle-or-spot"] += 1
            return
        if vehicle["trip_id"] is not None:
            trip = self.store.trip(vehicle["trip_id"])
            if trip["status"] != "ended":
                self.end_trip(trip, station_id=sid, spot_id=spot_id, reason="docked", serial=serial)
                return
        self.store.dock_vehicle(vehicle["id"], spot_id)

    def _undocked(self: RideFlow, sid: int, number: int, serial: str | None) -> None:
        """A vehicle left a spot without a rental: the spot is free again, and it is told."""
        spot_id = self._spot_id(sid, number)
        with self.store.transaction():
            vehicle_id = self.store.undock_spot(spot_id, serial) if spot_id is not None else None
            self._state_event(
                "spot.undocked",
                sid,
                {"spot": number, "serial": serial, "vehicle_id": vehicle_id},
            )

    def _reconcile(
        self: RideFlow, sid: int, status: StationStatus, *, retained: bool = False
    ) -> None:
        """Settle rentals from the station's status: a missed undock, an unknown unlock.

        A spot still locked with the vehicle cancels an ``unknown`` rental only if the
        status is fresh (see :meth:`_settles`): a retained or older status may predate the
        unlock reaching the station.
        """
        for s in status.spots:
            rental = self.rentals.get((sid, s.spot))
            if rental is None:
                if self.tombstones and s.vehicle_id is None:
                    gone = self.tombstones.get((sid, s.spot))
                    if gone is not None and self._settles(gone[0], status, retained):
                        rental = self.unearth(sid, s.spot, None)
                        if rental is not None:
                            self.start_trip(rental)  # it left after all
                continue
            if rental.state == "unlocking":
                continue
            if s.vehicle_id != rental.serial:
                self.start_trip(rental)  # the spot opened and the vehicle left
            elif rental.state == "unknown":
                if not s.locked:
                    self._set_state(rental, "open")  # open, vehicle still there: timer relocks
                elif self._settles(rental, status, retained):
                    self._cancel_rental(rental, "unlock_not_done", relock=False)

    def _settles(self: RideFlow, rental: Rental, status: StationStatus, retained: bool) -> bool:
        """May this status settle an ``unknown`` rental? Once the outcome timeout has passed
        since the send, any status; before, only a live one (not retained) stamped by the
        device later than the send plus ``settle_margin``."""
        if self.clock() >= rental.sent_at + self.outcome_timeout:
            return True
        return not retained and status.ts / 1000.0 > rental.sent_at + self.settle_margin

    # --- vehicles --------------------------------------------------------------------------
    def _on_vehicle(self: RideFlow, msg: DeviceMessage) -> None:
        vehicle = self._vehicle(msg.device.device_id)
        if vehicle is None:
            self.ignored["unknown-vehicle"] += 1
            return
        p = msg.payload
        if isinstance(p, Telemetry):
            self._telemetry(vehicle, p)
        elif isinstance(p, VehicleEvent):
            alert = ALERT_OF_EVENT.get(p.type.value)
            if alert is not None:
                self._alert(
                    alert.value,
                    vehicle_id=vehicle["id"],
                    details={"lat": p.lat, "lng": p.lng, "battery": p.battery},
                    dedup=f"vehicle:{vehicle['id']}:{alert.value}",
                )
            else:
                self.outbox.append(
                    "vehicle.event",
                    {
                        "vehicle_id": vehicle["id"],
                        "type": p.type.value,
                        "battery": p.battery,
                        "at": self.clock(),
                    },
                    idempotency_key=f"vehicle:{vehicle['id']}:{p.type.value}:{p.ts}",
                    priority=Priority.STATE,
                )

    def _trip_state(
        self: RideFlow,
        vehicle: Row,
        serial: str,
        moving: bool,
        reads: _RunReads | None = None,
    ) -> Trip | None:
        now = self.clock()
        if moving or serial not in self._moved:
            self._moved[serial] = now
        trip_id = vehicle["trip_id"]
        if trip_id is None:
            return None
        trip = self.store.trip(trip_id) if reads is None else reads.trip(trip_id)
        if trip["status"] == "ended":
            return None
        rider_id = trip["rider_id"]
        rider = self.store.rider(rider_id) if reads is None else reads.rider(rider_id)
        held = trip["status"] != "started"
        return Trip(
            str(trip["id"]),
            trip["started_at"],
            rider["credit"] / 100.0,
            held,
            trip["paused_at"] if held else None,
            0.0,
            self._moved[serial],
        )

    def _state_of(
        self: RideFlow, t: Telemetry, vehicle: Row, reads: _RunReads | None = None
    ) -> VehicleState:
        """The rules engine's view of a telemetry report (reads the open trip, if any)."""
        serial = t.device_id
        moving = t.speed > self.rules.bundle.safety.walking_speed_kph
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
        )

    def _telemetry(self: RideFlow, vehicle: Row, t: Telemetry) -> None:
        """One report of a known vehicle (the batch path with one message)."""
        self._telemetry_reports(
            [(vehicle["serial_number"], t)], {vehicle["serial_number"]: vehicle}
        )

    def _telemetry_run(self: RideFlow, msgs: Sequence[DeviceMessage]) -> None:
        reports = [(m.device.device_id, m.payload) for m in msgs]
        with self.store.transaction():
            rows = self.store.vehicles_by_serial(s for s, _ in reports)
            self._telemetry_reports(reports, rows)  # type: ignore[arg-type]

    def _telemetry_reports(
        self: RideFlow, reports: Sequence[tuple[str, Telemetry]], rows: dict[str, Row]
    ) -> None:
        """Vehicle updates, ``vehicle.state`` events and rule decisions of many reports, in
        one transaction; their commands are sent, in order, once it has committed.

        Reports are cut into chunks in which no vehicle and no rider on a trip appears
        twice: a chunk is evaluated with ``evaluate_many`` at one clock reading, and every
        read a report needs (its vehicle row, trip, rider) happens after the chunks before
        it were written, so nothing differs from handling the reports one by one.
        """
        sends: list[list[Row]] = []
        self._held, outer = sends, self._held
        try:
            self._telemetry_chunks(reports, rows, sends)
        finally:
            self._held = outer
        if outer is not None:  # a batch inside a batch: the outer one sends
            outer.extend(sends)
            return
        if not sends:
            return
        # All of the batch's commands are about to go on the wire: one commit marks them.
        self.store.mark_commands((e["id"] for entries in sends for e in entries), "sent")
        for entries in sends:
            self.spawn(self._dispatch_in_order(entries, marked=True))

    def _telemetry_chunks(
        self: RideFlow,
        reports: Sequence[tuple[str, Telemetry]],
        rows: dict[str, Row],
        sends: list[list[Row]],
    ) -> None:
        chunk: list[tuple[Row, Telemetry, VehicleState]] = []
        in_chunk: set[Any] = set()
        reads = _RunReads(self.store, rows)

        def cut() -> None:
            nonlocal chunk, in_chunk
            self._flush_chunk(chunk, sends)
            if self._touched:
                # A decision wrote trips, riders or vehicles' trips (a hold, a trip ended,
                # an alert): read them again, the chunk's vehicles first. Otherwise the rows
                # read before are still those of the store (telemetry itself only writes
                # position, battery and lock, which the flow does not read back).
                self._touched = False
                fresh = self.store.vehicles_by_serial(k for k in in_chunk if isinstance(k, str))
                for k in in_chunk:
                    if isinstance(k, str):
                        rows[k] = fresh.get(k)  # type: ignore[assignment]
                reads.reset()
            chunk, in_chunk = [], set()

        with self.store.transaction():
            for serial, t in reports:
                if serial in in_chunk:
                    cut()
                vehicle = rows.get(serial)
                if vehicle is None:
                    self.ignored["unknown-vehicle"] += 1
                    continue
                try:
                    state = self._state_of(t, vehicle, reads)
                    rider = None
                    if state.trip is not None:
                        rider = ("rider", reads.trip(vehicle["trip_id"])["rider_id"])
                        if rider in in_chunk:
                            cut()  # its trip's credit may change
                            vehicle = rows.get(serial)
                            if vehicle is None:  # pragma: no cover - a vehicle row never goes
                                self.ignored["unknown-vehicle"] += 1
                                continue
                            state = self._state_of(t, vehicle, reads)
                except NotFound as exc:
                    self.ignored["not-found"] += 1
                    log.warning("flow: telemetry from %s: %s", serial, exc)
                    continue
                chunk.append((vehicle, t, state))
                in_chunk.add(serial)
                if state.trip is not None:
                    in_chunk.add(rider)
            self._flush_chunk(chunk, sends)

    def _flush_chunk(
        self: RideFlow, chunk: list[tuple[Row, Telemetry, VehicleState]], sends: list[list[Row]]
    ) -> None:
        """Evaluate a chunk, write its vehicles, queue its events and decisions in order."""
        if not chunk:
            return
        decisions = self.rules.evaluate_many([c[2] for c in chunk], self.clock())
        self.store.update_vehicles(
            (v["id"], t.battery, t.lat, t.lng, t.lock is not LockState.UNLOCKED)
            for v, t, _ in chunk
        )
        events: list[NewEvent] = []
        for (vehicle, t, _), d in zip(chunk, decisions, strict=True):
            vid = vehicle["id"]
            events.append(
                (
                    "vehicle.state",
                    {
                        "vehicle_id": vid,
                        "lat": t.lat,
                        "lon": t.lng,
                        "battery": t.battery,
                        "speed": t.speed,
                        "lock": t.lock.value,
                        "at": t.ts / 1000.0,
                    },
                    f"vehicle:{vid}:state:{t.ts}",
                    Priority.STATE,
                    f"vehicle:{vid}",
                )
            )
            if not (d.commands or d.alerts or d.notifications):
                continue
            if not (d.alerts or d.notifications) and all(
                c.kind in JOURNAL_ONLY for c in d.commands
            ):
                # Only journal entries: nothing can be NotFound (no savepoint needed) and no
                # outbox event is appended, so the run of state events goes on.
                entries = self._apply(vehicle, t.device_id, d, t.ts, t.max_speed)
                if entries:
                    sends.append(entries)
                continue
            self.outbox.append_many(events)  # the events before this one keep their order
            events = []
            held = len(sends)
            try:
                with self.store.db.savepoint():
                    entries = self._apply(vehicle, t.device_id, d, t.ts, t.max_speed)
            except NotFound as exc:  # only this report's decisions are undone
                del sends[held:]
                self.ignored["not-found"] += 1
                log.warning("flow: decisions for %s: %s", t.device_id, exc)
                continue
            if entries:
                sends.append(entries)
        self.outbox.append_many(events)

    async def _dispatch_in_order(
        self: RideFlow, entries: list[Row], *, marked: bool = False
    ) -> None:
        for entry in entries:
            await self.runner.dispatch(entry, marked=marked)

    def _apply(
        self: RideFlow,
        vehicle: Row,
        serial: str,
        d: Decisions,
        report: int | None = None,
        reported_max_speed: int | None = None,
    ) -> list[Row]:
        """Journal the engine's commands, open or clear its alerts, queue its notifications.

        Keys name the decision's instant and the report's timestamp (``report``), so two
        reports of one vehicle decided within the same millisecond (one batch) never share
        a key: neither decision is lost. A speed cap the vehicle already reports having
        (``reported_max_speed``) is not sent again: it would change nothing on the vehicle.
        """
        device = DeviceRef.vehicle(self.network_id, serial)
        vid = vehicle["id"]
        trip_id = vehicle["trip_id"]
        stamp = round(d.at * 1000) if report is None else f"{round(d.at * 1000)}:{report}"
        entries: list[Row] = []
        for c in d.commands:
            key = f"rules:{serial}:{c.kind.value}:{stamp}"
            fields: dict[str, Any] | None = None
            if c.kind is CommandKind.SET_MAX_SPEED:
                cap = c.max_speed_kph or NO_LIMIT_KPH
                if cap == reported_max_speed:
                    self.ignored["max-speed-already-set"] += 1
                    continue
                fields = {"cmd": "set-max-speed", "max_speed": cap}
            elif c.kind is CommandKind.PLAY_SOUND:
                fields = {"cmd": "play-sound", "sound": "geofencing"}
            elif c.kind is CommandKind.LOCK:
                fields = {"cmd": "lock-vehicle", "trip_on_hold": False}
            elif c.kind is CommandKind.UNLOCK:
                if trip_id is not None:
                    key = f"trip:{trip_id}:unlock-vehicle"  # the trip start sent it already
                fields = {"cmd": "unlock-vehicle", "light": bool(c.auto_light)}
            elif c.kind is CommandKind.TRIP_HOLD and trip_id is not None:
                self._touched = True
                self.store.set_trip_status(trip_id, "on_hold")
                self.outbox.append(
                    "trip.on_hold",
                    {"trip_id": trip_id, "reason": c.reason, "at": d.at},
                    idempotency_key=f"trip:{trip_id}:hold:{stamp}",
                    priority=Priority.OUTCOME,
                )
                fields = {"cmd": "lock-vehicle", "trip_on_hold": True}
            elif c.kind is CommandKind.END_TRIP and trip_id is not None:
                self._touched = True
                trip = self.store.trip(trip_id)
                if trip["status"] != "ended":
                    self.end_trip(
                        trip, station_id=None, spot_id=None, reason=c.reason, serial=serial
                    )
            if fields is not None:
                entry = self.runner.journal(
                    key, device, vid, fields, trip_id=trip_id, ctx={"reason": c.reason}
                )
                if entry is not None:
                    entries.append(entry)
        if d.alerts:
            self._touched = True
        for a in d.alerts:
            if a.action is AlertAction.RAISE:
                self._alert(
                    a.alert_type.value,
                    vehicle_id=vid,
                    severity=a.severity.value,
                    details={"reason": a.reason},
                    dedup=f"vehicle:{vid}:{a.alert_type}",
                )
            elif a.action is AlertAction.CLEAR:
                self._clear(a.alert_type.value, vehicle_id=vid)
        for n in d.notifications:
            self.outbox.append(
                "notification",
                {
                    "kind": n.kind.value,
                    "vehicle_id": vid,
                    "trip_id": trip_id,
                    "to_rider": n.to_rider,
                    "reason": n.reason,
                    "at": d.at,
                },
                idempotency_key=f"note:{serial}:{n.kind.value}:{stamp}",
                priority=Priority.OUTCOME,
            )
        return entries
