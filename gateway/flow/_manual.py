"""Commands an operator sends through the API (lock, unlock, max speed), on the flow's port.

The API journals the command itself (its ``Idempotency-Key`` is the journal key); here it
becomes a protocol command for the right device (a spot's station, a vehicle's serial) with a
``cmd_id`` derived from that key, so a resend is the same command to the device.
"""

from __future__ import annotations

from typing import Any

from dockgate.gateway.flow._commands import JOURNAL_STATE, Settled, build_command
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.protocol import Command, DeviceRef

#: (target kind, API command) -> protocol command name.
MANUAL_COMMANDS = {
    ("vehicle", "lock"): "lock-vehicle",
    ("vehicle", "unlock"): "unlock-vehicle",
    ("vehicle", "max_speed"): "set-max-speed",
    ("spot", "lock"): "lock-spot",
    ("spot", "unlock"): "unlock-spot",
}


class UnknownCommand(ValueError):
    """The API asked for a command this target kind does not take."""


class ManualCommands:
    """Operator commands the API journaled, sent on the flow's port."""

    def __init__(self, parts: FlowParts) -> None:
        self.parts = parts

    def command_for(
        self, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
    ) -> tuple[DeviceRef, Command]:
        """The device and the protocol command for an API command (raises NotFound,
        ValueError)."""
        name = MANUAL_COMMANDS.get((target_kind, command))
        if name is None:
            raise UnknownCommand(f"{target_kind} does not take {command!r}")
        fields: dict[str, Any] = {"cmd": name}
        store, site = self.parts.store, self.parts.site
        if target_kind == "spot":
            spot = store.topology.spot(target_id)
            device = site.station_device(spot.station_id)
            fields["spot"] = spot.number
        else:
            vehicle = store.vehicles.get(target_id)
            device = site.vehicle_device(vehicle.serial_number)
            if name == "set-max-speed":
                fields["max_speed"] = int(args["max_speed"])
            elif name == "lock-vehicle":
                fields["trip_on_hold"] = False
        return device, build_command(fields, f"api:{key}")

    async def send(
        self, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
    ) -> Settled:
        """Send an API command through the flow's port; never raises for device behaviour."""
        device, cmd = self.command_for(target_kind, target_id, command, args, key)
        try:
            result = await self.parts.runner.send(device, cmd)
        except Exception as exc:  # a closed driver: the command did not leave
            return Settled(0, "failed", "not-sent", type(exc).__name__)
        status = str(getattr(result.status, "value", result.status))
        return Settled(0, JOURNAL_STATE.get(status, "failed"), status, result.reason)
