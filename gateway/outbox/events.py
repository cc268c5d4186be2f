"""The events the gateway tells the backend, one class per kind: the backend's contract.

Each event's fields are its JSON payload, in order (orjson writes a dataclass field by field),
so ``outbox.publish(events.TripStarted(...), idempotency_key=...)`` stores the same bytes the
backend has always read. ``KIND`` names the event on the wire, ``PRIORITY`` is its outbox
class. An event whose payload leaves a field out when it is unset says so in ``payload()``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from dockgate.gateway.outbox._priority import Priority


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """The base of every event: its kind, its class and its payload."""

    KIND: ClassVar[str]
    PRIORITY: ClassVar[Priority]

    def payload(self) -> object:
        """What is stored and served as the event's ``payload``: the fields, in order."""
        return self


# --- taps and rentals -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TapAccepted(OutboxEvent):
    """A verified tap opened a spot (the unlock is journaled as ``command_id``)."""

    KIND: ClassVar[str] = "tap.accepted"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    rental: bool
    rider_id: int
    record_id: int
    vehicle_id: int
    serial: str
    station_id: int
    spot_id: int
    reader: str
    read_ctr: int | None
    command_id: int
    at: float


@dataclass(frozen=True, slots=True)
class TapRefused(OutboxEvent):
    """A tap was refused (``reason``, one of ``flow.REFUSALS``; ``detail``: the SUN reason)."""

    KIND: ClassVar[str] = "tap.refused"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    reason: str
    detail: str | None
    reader: str
    station_id: int | None
    record_id: int | None
    rider_id: int | None
    read_ctr: int | None
    at: float


@dataclass(frozen=True, slots=True)
class RentalCancelled(OutboxEvent):
    """An opened spot's vehicle never left (or the unlock failed): no trip."""

    KIND: ClassVar[str] = "rental.cancelled"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    command_id: int
    rider_id: int
    station_id: int
    spot_id: int
    vehicle_id: int
    reason: str
    at: float


# --- trips --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TripStarted(OutboxEvent):
    KIND: ClassVar[str] = "trip.started"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    trip_id: int
    rider_id: int
    vehicle_id: int
    station_id: int
    spot_id: int
    command_id: int
    at: float


@dataclass(frozen=True, slots=True)
class TripEnded(OutboxEvent):
    """A trip ended (docked, or ended by a rule) with its cost in cents."""

    KIND: ClassVar[str] = "trip.ended"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    trip_id: int
    rider_id: int
    vehicle_id: int
    station_id: int | None
    spot_id: int | None
    cost: int
    reason: str
    started_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class TripOnHold(OutboxEvent):
    KIND: ClassVar[str] = "trip.on_hold"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    trip_id: int
    reason: str
    at: float


# --- commands -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandSettled(OutboxEvent):
    """A journaled command's end: journal ``state`` and the driver's ``status``, ``reason``
    and ``attempts`` (left out when the command never reached the driver in this run)."""

    KIND: ClassVar[str] = "command.outcome"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    command_id: int
    command: str
    target_kind: str
    target_id: int
    trip_id: int | None
    state: str
    status: str
    reason: str | None
    attempts: int | None
    at: float

    def payload(self) -> object:
        body: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.attempts is None:
            del body["attempts"]
        return body


@dataclass(frozen=True, slots=True)
class ApiCommandOutcome(OutboxEvent):
    """The outcome of a command an operator sent through the API (``outcome``: its result)."""

    KIND: ClassVar[str] = "command.outcome"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    command_id: int
    target_kind: str
    target_id: int
    command: str
    args: dict[str, Any]
    outcome: dict[str, Any]


# --- alerts -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertRaised(OutboxEvent):
    KIND: ClassVar[str] = "alert.raised"
    PRIORITY: ClassVar[Priority] = Priority.CRITICAL

    alert_id: int
    alert_type: str
    severity: str
    station_id: int | None
    spot_id: int | None
    vehicle_id: int | None
    details: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class AlertCleared(OutboxEvent):
    KIND: ClassVar[str] = "alert.cleared"
    PRIORITY: ClassVar[Priority] = Priority.CRITICAL

    alert_id: int
    alert_type: str
    at: float


# --- the site itself ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StorageDegraded(OutboxEvent):
    """The gateway stopped taking device messages (they wait at the broker): its disk is
    nearly full (``state`` ``low``: free space below the watermark) or refuses writes
    (``failing``). Written as soon as the disk takes it, at the latest with the recovery."""

    KIND: ClassVar[str] = "site.storage-degraded"
    PRIORITY: ClassVar[Priority] = Priority.CRITICAL

    state: str
    cause: str | None
    free_bytes: int | None
    min_free_bytes: int
    since: float
    at: float


@dataclass(frozen=True, slots=True)
class StorageRestored(OutboxEvent):
    """The disk takes writes again: device messages flow again (``since``: the episode's
    start; ``write_failures``: writes refused during it)."""

    KIND: ClassVar[str] = "site.storage-restored"
    PRIORITY: ClassVar[Priority] = Priority.CRITICAL

    since: float
    write_failures: int
    free_bytes: int | None
    at: float


# --- stations -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StationEvent(OutboxEvent):
    """An event about a station: ``station_id`` first and ``at`` last, what happened between.

    ``key()`` is its idempotency key: kind, station, what happened and when.
    """

    def key(self) -> str:
        edges = ("station_id", "at")
        body = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in edges}
        station_id, at = (getattr(self, name) for name in edges)
        return f"{self.KIND}:{station_id}:{body}:{at}"


@dataclass(frozen=True, slots=True)
class PowerRestored(StationEvent):
    KIND: ClassVar[str] = "station.power-restored"
    PRIORITY: ClassVar[Priority] = Priority.STATE

    station_id: int
    battery: int | None
    at: float


@dataclass(frozen=True, slots=True)
class SpotFault(StationEvent):
    KIND: ClassVar[str] = "spot.fault"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    station_id: int
    spot: int
    fault: str
    at: float


@dataclass(frozen=True, slots=True)
class SpotUndocked(StationEvent):
    """A vehicle left a spot without a rental (``vehicle_id``: the one that left, if known)."""

    KIND: ClassVar[str] = "spot.undocked"
    PRIORITY: ClassVar[Priority] = Priority.STATE

    station_id: int
    spot: int
    serial: str | None
    vehicle_id: int | None
    at: float


# --- vehicles -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VehicleState(OutboxEvent):
    """A vehicle's reported state (compacted per vehicle: only the latest is kept pending)."""

    KIND: ClassVar[str] = "vehicle.state"
    PRIORITY: ClassVar[Priority] = Priority.STATE

    vehicle_id: int
    lat: float
    lon: float
    battery: int
    speed: float
    lock: str
    at: float


@dataclass(frozen=True, slots=True)
class VehicleEvent(OutboxEvent):
    """A vehicle event that is not an alert (``type``: the device's event type)."""

    KIND: ClassVar[str] = "vehicle.event"
    PRIORITY: ClassVar[Priority] = Priority.STATE

    vehicle_id: int
    type: str
    battery: int | None
    at: float


@dataclass(frozen=True, slots=True)
class Notification(OutboxEvent):
    """A rules engine notification for the rider or the operator (``kind``: which)."""

    KIND: ClassVar[str] = "notification"
    PRIORITY: ClassVar[Priority] = Priority.OUTCOME

    kind: str
    vehicle_id: int
    trip_id: int | None
    to_rider: bool
    reason: str
    at: float


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConfigApplied(OutboxEvent):
    """A configuration bundle the backend pushed was applied."""

    KIND: ClassVar[str] = "config.applied"
    PRIORITY: ClassVar[Priority] = Priority.STATE

    version: int
    kind: str
