"""Device messages in arrival order: runs of vehicle telemetry together, everything else alone.

Station messages go to :class:`StationMessages`, telemetry runs to :class:`TelemetryRuns`;
a vehicle's events become alerts or ``vehicle.event`` outbox events here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from dockgate.gateway.flow._alerts import AlertDesk
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._stations import StationMessages
from dockgate.gateway.flow._telemetry import TelemetryRuns
from dockgate.gateway.outbox import events
from dockgate.gateway.protocol import (
    ALERT_OF_EVENT,
    DeviceKind,
    DeviceMessage,
    Telemetry,
    VehicleEvent,
)
from dockgate.gateway.store import NotFound

log = logging.getLogger(__name__)


class DeviceMessages:
    """Routes each device message to its handler; counts those it could not place."""

    def __init__(
        self,
        parts: FlowParts,
        stations: StationMessages,
        telemetry: TelemetryRuns,
        alerts: AlertDesk,
        ignored: Counter[str],
    ) -> None:
        self.parts = parts
        self.stations = stations
        self.telemetry = telemetry
        self.alerts = alerts
        self.ignored = ignored

    def handle(self, batch: Sequence[DeviceMessage]) -> None:
        """Handle a driver batch, in arrival order.

        Consecutive telemetry messages are handled together (one transaction, see
        :class:`TelemetryRuns`): decisions, store state, outbox events (and their order) and
        commands are those of handling the messages one by one. Any other message first ends
        the telemetry run before it, then is handled alone.
        """
        run: list[tuple[str, Telemetry]] = []
        for msg in batch:
            payload = msg.payload
            if msg.device.kind is DeviceKind.VEHICLE and isinstance(payload, Telemetry):
                run.append((msg.device.device_id, payload))
                continue
            if run:
                self.telemetry.handle(run)
                run = []
            self._one(msg)
        if run:
            self.telemetry.handle(run)

    def _one(self, msg: DeviceMessage) -> None:
        try:
            if msg.device.kind is DeviceKind.STATION:
                self.stations.handle(msg)
            else:
                self._vehicle(msg)
        except NotFound as exc:
            self.ignored["not-found"] += 1
            log.warning("flow: %s from %s: %s", msg.channel, msg.device.device_id, exc)

    def _vehicle(self, msg: DeviceMessage) -> None:
        """A vehicle's message other than telemetry: its events."""
        p = self.parts
        vehicle = p.store.vehicles.by_serial(msg.device.device_id)
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
