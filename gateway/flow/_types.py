"""The flow's small value types: a tap's decision, a pending rental, the command port.

The command port is what the flow needs from the MQTT driver: ``MqttDriver.send_command``
fits as it is, so the gateway core never imports a transport library.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dockgate.gateway.protocol import Command, DeviceRef

#: Why a tap was refused (short codes, shown to the rider by the station).
REFUSALS = (
    "invalid_tag",  # the SUN message did not verify (detail: the verifier's reason)
    "unknown_reader",  # no station is configured for the reader
    "unknown_record",  # no enabled record has this UID
    "not_paired",  # the record's product is not paired to a rider
    "blocked",  # the rider is blocked
    "first_purchase_required",
    "no_credit",  # credit below the unlock price
    "max_rentals",  # max_simultaneous_rented_vehicle reached
    "no_vehicle",  # no docked vehicle with min_battery_to_rent
    "rent_not_allowed_here",  # the station is outside the border or a no-start zone
    "unlock_failed",  # the spot refused or could not open
)

TapStatus = Literal["unlocked", "unlocking", "refused", "duplicate"]
RentalState = Literal["unlocking", "open", "unknown"]


class CommandResult(Protocol):
    """What the port returns (``dockgate.drivers.mqtt.CommandOutcome`` has these)."""

    @property
    def status(self) -> str:
        """A str enum: done, accepted, failed, rejected, expired, no-ack, ..."""

    @property
    def attempts(self) -> int: ...

    @property
    def reason(self) -> str | None: ...


class CommandPort(Protocol):
    """Sends one command to one device and waits for its ack (and physical outcome)."""

    async def __call__(self, device: DeviceRef, command: Command, /) -> CommandResult: ...


@dataclass(frozen=True, slots=True)
class TapDecision:
    """What the flow did with a tap: ``accepted`` with the chosen spot, or a ``reason``."""

    accepted: bool
    status: TapStatus
    reason: str | None = None
    detail: str | None = None
    station_id: int | None = None
    rider_id: int | None = None
    record_id: int | None = None
    vehicle_id: int | None = None
    spot_id: int | None = None
    spot: int | None = None
    command_id: int | None = None


@dataclass(slots=True)
class Rental:
    """A spot unlocked (or being unlocked) for a rider, waiting for the vehicle to leave.

    ``state``: ``unlocking`` until the command settles, ``open`` once acked, ``unknown``
    after a restart when the command may or may not have reached the station.
    ``sent_at``: when an ``unknown`` rental's unlock was marked sent (the gateway's clock):
    only a station status newer than that (plus a margin) may settle it.
    """

    key: str
    command_id: int
    rider_id: int
    record_id: int | None
    vehicle_id: int
    serial: str
    station_id: int
    spot_id: int
    spot: int
    reader: str | None
    created_at: float
    state: RentalState = "unlocking"
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sent_at: float = 0.0
