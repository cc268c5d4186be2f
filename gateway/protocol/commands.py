"""Commands (gateway -> device, on `.../cmd`) and replies (device -> gateway, on `.../reply`).

A command carries `cmd_id`; the MQTT v5 publish also carries the response topic, the
correlation data (the `cmd_id` bytes) and a message expiry interval. The device answers twice
on the response topic: an **ack** at once (accepted / rejected / expired) and, for commands
that move something, an **outcome** once it knows what physically happened (done / failed).
A repeated `cmd_id` is the same command: the device repeats its replies, it never acts twice.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockgate.gateway.protocol.enums import AckStatus, DeviceKind, OutcomeStatus, SpeedMode
from dockgate.gateway.protocol.messages import (
    SCHEMA_VERSION,
    DeviceId,
    ShortText,
    SpotNumber,
    Timestamp,
    now_ms,
)

CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def new_command_id() -> str:
    """A fresh, unguessable command id (16 hex digits)."""
    return secrets.token_hex(8)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    cmd_id: CommandId = Field(default_factory=new_command_id)
    ts: Timestamp = Field(default_factory=now_ms)  # when the gateway first issued it
    # The device must not act on it after this (ms, its own clock). 0 on a model means "not
    # set yet": the driver fills it in from its timeout before publishing.
    expires_at: Timestamp = 0


class UnlockSpot(_Command):
    """Open a spot's lock so that its vehicle can leave."""

    cmd: Literal["unlock-spot"] = "unlock-spot"
    spot: SpotNumber


class LockSpot(_Command):
    """Close a spot's lock."""

    cmd: Literal["lock-spot"] = "lock-spot"
    spot: SpotNumber


class LockVehicle(_Command):
    """Lock a vehicle; with `trip_on_hold` the trip stays open (the dashboard's trip hold)."""

    cmd: Literal["lock-vehicle"] = "lock-vehicle"
    trip_on_hold: bool = False


class UnlockVehicle(_Command):
    """Unlock a vehicle (start or resume a trip); `light` turns the light on (`auto_light`)."""

    cmd: Literal["unlock-vehicle"] = "unlock-vehicle"
    light: bool = False


class SetMaxSpeed(_Command):
    """Cap the speed (km/h), e.g. in a speed zone (dashboard `max_speed` 6..25) or low battery."""

    cmd: Literal["set-max-speed"] = "set-max-speed"
    max_speed: Annotated[int, Field(ge=1, le=60)]


class SetSpeedMode(_Command):
    """Block the speed mode (1 ECO, 2 NORMAL, 3 SPORT), as the dashboard's `speed_mode`."""

    cmd: Literal["set-speed-mode"] = "set-speed-mode"
    speed_mode: SpeedMode


class PlaySound(_Command):
    """Play a sound: `geofencing` when leaving the network area (`play_vehicle_sound`)."""

    cmd: Literal["play-sound"] = "play-sound"
    sound: Literal["geofencing", "locate"] = "geofencing"


class SetLight(_Command):
    """Turn the vehicle light on or off."""

    cmd: Literal["set-light"] = "set-light"
    on: bool


class StationFeedback(_Command):
    """Tell the rider at a station why a tap was accepted or refused (display, buzzer)."""

    cmd: Literal["station-feedback"] = "station-feedback"
    reader: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    spot: SpotNumber | None = None
    result: Literal["accepted", "refused"]
    reason: Annotated[str, Field(max_length=40)] | None = None

    @model_validator(mode="after")
    def _where(self) -> StationFeedback:
        if self.reader is None and self.spot is None:
            raise ValueError("station-feedback needs a reader or a spot")
        return self


Command = Annotated[
    UnlockSpot
    | LockSpot
    | LockVehicle
    | UnlockVehicle
    | SetMaxSpeed
    | SetSpeedMode
    | PlaySound
    | SetLight
    | StationFeedback,
    Field(discriminator="cmd"),
]

#: Which device kind takes which command.
COMMAND_KIND: dict[str, DeviceKind] = {
    "unlock-spot": DeviceKind.STATION,
    "lock-spot": DeviceKind.STATION,
    "lock-vehicle": DeviceKind.VEHICLE,
    "unlock-vehicle": DeviceKind.VEHICLE,
    "set-max-speed": DeviceKind.VEHICLE,
    "set-speed-mode": DeviceKind.VEHICLE,
    "play-sound": DeviceKind.VEHICLE,
    "set-light": DeviceKind.VEHICLE,
    "station-feedback": DeviceKind.STATION,
}

#: Commands whose physical result the device reports in a second reply (`outcome`).
PHYSICAL_COMMANDS = frozenset({"unlock-spot", "lock-spot", "lock-vehicle", "unlock-vehicle"})


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    ts: Timestamp
    device_id: DeviceId
    cmd_id: CommandId
    reason: ShortText | None = None


class Ack(_Reply):
    """First reply: the device took the command (or refused it, or found it expired)."""

    phase: Literal["ack"] = "ack"
    status: AckStatus


class Outcome(_Reply):
    """Second reply: the spot physically opened, the vehicle physically locked, or not."""

    phase: Literal["outcome"] = "outcome"
    status: OutcomeStatus


Reply = Annotated[Ack | Outcome, Field(discriminator="phase")]
