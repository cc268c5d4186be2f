"""Enums of the device protocol, named as in the fleet dashboard API so alerts map 1:1."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class SpeedMode(IntEnum):
    """Vehicle speed mode, as the dashboard's vehicle settings (`speed_mode`)."""

    ECO = 1
    NORMAL = 2
    SPORT = 3


class AlertType(StrEnum):
    """The dashboard's `AlertType` enum; device events that raise an alert use these names."""

    UNEXPECTED_UNLOCK = "unexpected-unlock"
    SPOT_IDENTIFY_FAIL = "spot-identify-fail"
    SPOT_HIGH_TEMPERATURE = "spot-high-temperature"
    STATION_POWER_CUT = "station-power-cut"
    STATION_ALARM_TRIGGERED = "station-alarm-triggered"
    VEHICLE_ILLEGAL_MOVING = "vehicle-illegal-moving"
    VEHICLE_DISMANTLING = "vehicle-dismantling"
    VEHICLE_LIFTED = "vehicle-lifted"
    VEHICLE_FALLEN = "vehicle-fallen"
    VEHICLE_OUT_OF_NETWORK_AREA = "vehicle-out-of-network-area"


class AlertSeverity(StrEnum):
    """The dashboard's `AlertSeverity` enum."""

    LOW = "low"
    HIGH = "high"
    CRITICAL = "critical"


class DeviceKind(StrEnum):
    """Which branch of the topic tree a device lives under."""

    STATION = "station"
    VEHICLE = "vehicle"
    READER = "reader"  # an NFC reader that publishes its taps (on a standby or a station)


class Channel(StrEnum):
    """The last topic level: what a message is about."""

    ONLINE = "online"  # retained online/offline state, last-will
    STATUS = "status"  # station: retained snapshot of its spots
    SPOT = "spot"  # station: spot events
    POWER = "power"  # station: mains power events
    ALARM = "alarm"  # station: alarm events
    TELEMETRY = "telemetry"  # vehicle: periodic state
    EVENT = "event"  # vehicle: events (fallen, lifted, ...)
    CMD = "cmd"  # gateway -> device commands
    REPLY = "reply"  # device -> gateway command replies (ack, then physical outcome)
    TAP = "tap"  # reader: a tag read at the reader, for the leading gateway to verify


class LockState(StrEnum):
    """A vehicle's lock: `on-hold` is locked during a trip (the dashboard's `trip_on_hold`)."""

    LOCKED = "locked"
    UNLOCKED = "unlocked"
    ON_HOLD = "on-hold"


class SpotState(StrEnum):
    """One docking spot as its station sees it."""

    FREE = "free"
    OCCUPIED = "occupied"
    FAULT = "fault"
    DISABLED = "disabled"


class SpotFault(StrEnum):
    """Why a spot reports a fault."""

    LOCK_JAMMED = "lock-jammed"
    LOCK_NO_ANSWER = "lock-no-answer"
    SENSOR = "sensor"
    CHARGER = "charger"


class VehicleEventType(StrEnum):
    """Vehicle events: the alert names from the dashboard, plus `vehicle-low-battery`."""

    FALLEN = "vehicle-fallen"
    LIFTED = "vehicle-lifted"
    DISMANTLING = "vehicle-dismantling"
    ILLEGAL_MOVING = "vehicle-illegal-moving"  # moving while locked
    LOW_BATTERY = "vehicle-low-battery"


class AckStatus(StrEnum):
    """The device's first reply: it took the command, refused it, or found it stale."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


class OutcomeStatus(StrEnum):
    """The device's second reply: what physically happened."""

    DONE = "done"
    FAILED = "failed"
