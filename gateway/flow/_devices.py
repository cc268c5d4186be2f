"""Device messages in arrival order: runs of vehicle telemetry together, everything else alone.

A batch is one transaction: everything a message causes (a vehicle enrolled, its state, an
alert, an outbox event, a trip ended) commits with the batch, so the driver acknowledges the
batch only once all of it is durable. Each telemetry run and each other message is a
savepoint: one whose handling raises is rolled back alone, counted ``failed`` and logged,
and the batch goes on. A message whose effect is not idempotent (``ONCE_ONLY`` channels)
records its identity in its savepoint: the broker's redelivery of it is skipped and counted
``duplicate``. Station messages go to :class:`StationMessages`, telemetry runs to
:class:`TelemetryRuns`; a vehicle's events become alerts or ``vehicle.event`` outbox events
here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Final

from dockgate.gateway.flow._alerts import AlertDesk
from dockgate.gateway.flow._clocks import SkewedClocks, restamped
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._reader_taps import ReaderTaps
from dockgate.gateway.flow._stations import StationMessages
from dockgate.gateway.flow._telemetry import TelemetryRuns, enroll_vehicle
from dockgate.gateway.outbox import events
from dockgate.gateway.protocol import (
    ALERT_OF_EVENT,
    Channel,
    DeviceKind,
    DeviceMessage,
    Telemetry,
    VehicleEvent,
)
from dockgate.gateway.store import NotFound, refused_write

log = logging.getLogger(__name__)

#: Channels whose messages have effects that must not apply twice (events, alerts, trips);
#: telemetry and status are state, replaced only by newer state (``_clocks``).
ONCE_ONLY: Final = frozenset(
    {Channel.SPOT, Channel.POWER, Channel.ALARM, Channel.EVENT, Channel.TAP}
)
LOGGED_FAILURES: Final = 10  # failures logged in full; after that every 1000th


class DeviceMessages:
    """Routes each device message to its handler; counts those it could not place, skipped
    redeliveries, stale state and skewed clocks (``inbound``)."""

    def __init__(
        self,
        parts: FlowParts,
        stations: StationMessages,
        telemetry: TelemetryRuns,
        alerts: AlertDesk,
        ignored: Counter[str],
        inbound: Counter[str],
        *,
        enroll_vehicles: bool = False,
        reader_taps: ReaderTaps | None = None,
    ) -> None:
        self.parts = parts
        self.stations = stations
        self.reader_taps = reader_taps  # taps readers published (None: ignored)
        self.telemetry = telemetry
        self.alerts = alerts
        self.ignored = ignored
        self.inbound = inbound
        self.enroll_vehicles = enroll_vehicles
        self.skewed = SkewedClocks(inbound)

    def handle(self, batch: Sequence[DeviceMessage]) -> None:
        """Handle a driver batch, in arrival order, in one transaction.

        Consecutive telemetry messages are handled together (see :class:`TelemetryRuns`):
        decisions, store state, outbox events (and their order) and commands are those of
        handling the messages one by one. Any other message first ends the telemetry run
        before it, then is handled alone.
        """
        skewed = self.skewed
        run: list[DeviceMessage] = []
        with self.parts.store.transaction():
            for msg in batch:
                skewed.note(msg)
                if msg.device.kind is DeviceKind.VEHICLE and isinstance(msg.payload, Telemetry):
                    run.append(msg)
                    continue
                if run:
                    self._run(run)
                    run = []
                self._alone(msg)
            if run:
                self._run(run)

    def _run(self, run: list[DeviceMessage]) -> None:
        """A telemetry run in a savepoint; if it fails, each of its reports alone."""
        try:
            with self.parts.store.db.savepoint():
                self.telemetry.handle(run)
        except Exception as exc:
            if refused_write(exc) is not None:
                raise  # the disk refused: the whole batch is undone, to be retried
            if len(run) == 1:
                self._failed(run[0])
                return
            self.inbound["runs-split"] += 1
            log.warning(
                "flow: a run of %d telemetry reports failed (%s: %s); handling each alone",
                len(run),
                type(exc).__name__,
                str(exc)[:200],
            )
            for msg in run:
                self._run([msg])

    def _alone(self, msg: DeviceMessage) -> None:
        """Any other message in a savepoint, recognised if it was applied before."""
        before = _tasks()
        try:
            with self.parts.store.db.savepoint():
                if msg.channel in ONCE_ONLY and not self.parts.store.inbox.admit(msg.identity):
                    self.inbound["duplicate"] += 1
                    return
                self._one(restamped(msg))
        except Exception as exc:
            # Commands its handling started are undone with it: they never reach the wire.
            for task in _tasks() - before:
                task.cancel()
            if refused_write(exc) is not None:
                raise  # the disk refused: the whole batch is undone, to be retried
            self._failed(msg)

    def _failed(self, msg: DeviceMessage) -> None:
        self.inbound["failed"] += 1
        n = self.inbound["failed"]
        if n <= LOGGED_FAILURES or n % 1000 == 0:
            log.exception(
                "flow: %s from %s failed and was rolled back [%d so far]",
                msg.channel.value,
                msg.device.device_id,
                n,
            )

    def _one(self, msg: DeviceMessage) -> None:
        try:
            if msg.device.kind is DeviceKind.STATION:
                self.stations.handle(msg)
            elif msg.device.kind is DeviceKind.READER:
                self._reader(msg)
            else:
                self._vehicle(msg)
        except NotFound as exc:
            self.ignored["not-found"] += 1
            log.warning("flow: %s from %s: %s", msg.channel, msg.device.device_id, exc)

    def _reader(self, msg: DeviceMessage) -> None:
        """A reader's published tap: verified and decided as a direct reader's."""
        if self.reader_taps is None:
            self.ignored["reader-tap-unheard"] += 1
            return
        self.reader_taps.handle(msg)

    def _vehicle(self, msg: DeviceMessage) -> None:
        """A vehicle's message other than telemetry: its events."""
        p = self.parts
        serial = msg.device.device_id
        vehicle = p.store.vehicles.by_serial(serial)
        if vehicle is None and self.enroll_vehicles:
            vehicle = p.store.vehicles.get(enroll_vehicle(p, serial))
        if vehicle is None:
            self.ignored["unknown-vehicle"] += 1
            return
        event = msg.payload
        if not isinstance(event, VehicleEvent):
            return
        alert = ALERT_OF_EVENT.get(event.type.value)
        if alert is not None:
            self.alerts.raise_alert(
                alert.value,
                vehicle_id=vehicle.id,
                details={"lat": event.lat, "lng": event.lng, "battery": event.battery},
                dedup=f"vehicle:{vehicle.id}:{alert.value}",
            )
            return
        p.outbox.publish(
            events.VehicleEvent(vehicle.id, event.type.value, event.battery, p.clock()),
            idempotency_key=f"vehicle:{vehicle.id}:{event.type.value}:{event.ts}",
        )


def _tasks() -> set[asyncio.Task[object]]:
    """The event loop's tasks (none outside a running loop)."""
    try:
        return asyncio.all_tasks()
    except RuntimeError:
        return set()
