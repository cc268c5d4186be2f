"""Payloads that devices publish: every one carries `v` (schema version), `ts` (the device's
own clock, ms since the Unix epoch) and `device_id` (must equal the id in the topic).

Models are strict about unknown fields (`extra="forbid"`) so that a misspelt field is an
error at the gateway rather than a silently ignored value. What comes off the wire is
validated in strict mode (``codec.decode``): `"80"` is not a battery level, `"yes"` is not a
boolean; only what JSON cannot say otherwise is converted (an integer where a number is
expected, a string naming an enum member). Models built in Python stay lax.
"""

from __future__ import annotations

import time
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockgate.gateway.protocol.enums import (
    AlertType,
    LockState,
    SpeedMode,
    SpotFault,
    SpotState,
    VehicleEventType,
)

SCHEMA_VERSION: Final = 1


def now_ms() -> int:
    """The wall clock in ms since the Unix epoch, as `ts` fields carry it."""
    return time.time_ns() // 1_000_000


Timestamp = Annotated[int, Field(ge=0, lt=10**14, description="ms since the Unix epoch")]
VehicleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{6,10}$")]
DeviceId = Annotated[str, Field(min_length=1, max_length=32)]
SpotNumber = Annotated[int, Field(ge=1, le=255)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Percent = Annotated[int, Field(ge=0, le=100)]
Celsius = Annotated[float, Field(ge=-60, le=150)]
ShortText = Annotated[str, Field(max_length=120)]


class Payload(BaseModel):
    """Fields every device payload carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    ts: Timestamp
    device_id: DeviceId


class Online(Payload):
    """Retained on `.../online`; the last-will sets `online: false` with the connect time."""

    online: bool
    firmware: Annotated[str, Field(max_length=32)] | None = None


# --- stations ---------------------------------------------------------------------------


class SpotStatus(BaseModel):
    """One spot inside a station status snapshot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spot: SpotNumber
    state: SpotState
    locked: bool
    vehicle_id: VehicleId | None = None


class StationStatus(Payload):
    """Retained snapshot on `.../status`: sent on connect, on change and as a heartbeat."""

    spots: Annotated[list[SpotStatus], Field(max_length=64)]
    mains: bool = True
    battery: Percent | None = None  # backup battery while mains is cut


class SpotDocked(Payload):
    """A vehicle docked and the spot identified it."""

    type: Literal["spot-docked"]
    spot: SpotNumber
    vehicle_id: VehicleId
    locked: bool = True


class SpotUndocked(Payload):
    """A vehicle left the spot (normally after an unlock-spot command)."""

    type: Literal["spot-undocked"]
    spot: SpotNumber
    vehicle_id: VehicleId | None = None


class SpotIdentifyFail(Payload):
    """Something docked but the spot could not identify it (alert `spot-identify-fail`)."""

    type: Literal["spot-identify-fail"]
    spot: SpotNumber


class SpotTemperature(Payload):
    """A spot's temperature; `high` marks the alert `spot-high-temperature`."""

    type: Literal["spot-temperature"]
    spot: SpotNumber
    celsius: Celsius
    high: bool = False


class SpotFaulted(Payload):
    """A spot's lock jammed, did not answer, or a sensor failed."""

    type: Literal["spot-fault"]
    spot: SpotNumber
    fault: SpotFault
    detail: ShortText | None = None


class SpotUnexpectedUnlock(Payload):
    """A spot lock opened without a command (alert `unexpected-unlock`)."""

    type: Literal["unexpected-unlock"]
    spot: SpotNumber
    vehicle_id: VehicleId | None = None


SpotEvent = Annotated[
    SpotDocked
    | SpotUndocked
    | SpotIdentifyFail
    | SpotTemperature
    | SpotFaulted
    | SpotUnexpectedUnlock,
    Field(discriminator="type"),
]


class PowerEvent(Payload):
    """Mains power cut (alert `station-power-cut`) or restored, on `.../power`."""

    type: Literal["station-power-cut", "station-power-restored"]
    battery: Percent | None = None


class AlarmEvent(Payload):
    """The station's alarm went off (alert `station-alarm-triggered`) or was cleared."""

    type: Literal["station-alarm-triggered", "station-alarm-cleared"]
    reason: ShortText | None = None


# --- vehicles ---------------------------------------------------------------------------


class Telemetry(Payload):
    """Periodic vehicle state on `.../telemetry` (every 10 s riding, 240 s parked)."""

    lat: Latitude
    lng: Longitude
    gps_accuracy: Annotated[float, Field(ge=0, le=100_000)]  # metres
    speed: Annotated[float, Field(ge=0, le=120)]  # km/h
    battery: Percent
    lock: LockState
    speed_mode: SpeedMode
    max_speed: Annotated[int, Field(ge=0, le=120)]  # km/h, current cap
    odometer: Annotated[int, Field(ge=0, le=10**9)]  # metres
    light: bool = False


class VehicleEvent(Payload):
    """A vehicle event on `.../event`; alert names match the dashboard's `AlertType`."""

    type: VehicleEventType
    lat: Latitude | None = None
    lng: Longitude | None = None
    battery: Percent | None = None


# --- readers ----------------------------------------------------------------------------

#: A tap's sequence number: at most 2**53 - 1, so any JSON reader holds it exactly.
TapSequence = Annotated[int, Field(ge=0, lt=2**53)]
#: The NDEF URL a reader read: printable ASCII, no spaces (a SUN URL is ~150 characters).
TapUrl = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[!-~]+$")]
#: The UID the reader's anticollision gave, in hex: 4, 7 or 10 bytes (ISO/IEC 14443-3).
ReaderUid = Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20})$")]
#: Why the read failed, as the reader drivers name it (``removed``, ``no_ndef``, ``io``).
ReadError = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_:.-]{0,39}$")]


class ReaderTap(Payload):
    """A tag read at a reader, on `.../reader/{reader_id}/tap` (QoS 1); `device_id` is the
    reader id. The reader holds no key: it forwards what it read, the gateway verifies it.

    `ts` is when the read finished (the reader's clock); `seq` counts the reader's taps (with
    `ts`, it names the tap: a redelivery repeats both). `url` is the SUN message, `uid` what
    the reader saw (hex), `error` why the read failed (then `url` may be absent), `read_ms`
    how long the read took after the tag was presented.
    """

    seq: TapSequence
    url: TapUrl | None = None
    uid: ReaderUid | None = None
    error: ReadError | None = None
    read_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None

    @model_validator(mode="after")
    def _read_or_failed(self) -> ReaderTap:
        if self.url is None and self.error is None:
            raise ValueError("a tap carries the url read or the read's error")
        return self


#: Which dashboard alert a device event raises (None: no alert, just state).
ALERT_OF_EVENT: dict[str, AlertType | None] = {
    "spot-docked": None,
    "spot-undocked": None,
    "spot-identify-fail": AlertType.SPOT_IDENTIFY_FAIL,
    "spot-temperature": None,  # AlertType.SPOT_HIGH_TEMPERATURE when `high`
    "spot-fault": None,
    "unexpected-unlock": AlertType.UNEXPECTED_UNLOCK,
    "station-power-cut": AlertType.STATION_POWER_CUT,
    "station-power-restored": None,
    "station-alarm-triggered": AlertType.STATION_ALARM_TRIGGERED,
    "station-alarm-cleared": None,
    "vehicle-fallen": AlertType.VEHICLE_FALLEN,
    "vehicle-lifted": AlertType.VEHICLE_LIFTED,
    "vehicle-dismantling": AlertType.VEHICLE_DISMANTLING,
    "vehicle-illegal-moving": AlertType.VEHICLE_ILLEGAL_MOVING,
    "vehicle-low-battery": None,
}
