"""Commands an operator sends through the API (lock, unlock, max speed), on the flow's port.

The API journals the command itself (its ``Idempotency-Key`` is the journal key); here it
becomes a protocol command for the right device (a spot's station, a vehicle's serial) with a
``cmd_id`` derived from that key, so a resend is the same command to the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockgate.gateway.flow._commands import JOURNAL_STATE, Settled, build_command
from dockgate.gateway.protocol import Command, DeviceRef

if TYPE_CHECKING:
    from dockgate.gateway.flow._flow import RideFlow

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


def manual_command(
    flow: RideFlow, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
) -> tuple[DeviceRef, Command]:
    """The device and the protocol command for an API command (raises NotFound, ValueError)."""
    name = MANUAL_COMMANDS.get((target_kind, command))
    if name is None:
        raise UnknownCommand(f"{target_kind} does not take {command!r}")
    fields: dict[str, Any] = {"cmd": name}
    if target_kind == "spot":
        spot = flow.store.spot(target_id)
        device = flow.station_device(int(spot["station_id"]))
        fields["spot"] = int(spot["number"])
    else:
        vehicle = flow.store.vehicle(target_id)
        device = DeviceRef.vehicle(flow.network_id, vehicle["serial_number"])
        if name == "set-max-speed":
            fields["max_speed"] = int(args["max_speed"])
        elif name == "lock-vehicle":
            fields["trip_on_hold"] = False
    return device, build_command(fields, f"api:{key}")


async def send_manual(
    flow: RideFlow, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
) -> Settled:
    """Send an API command through the flow's port; never raises for device behaviour."""
    device, cmd = manual_command(flow, target_kind, target_id, command, args, key)
    try:
        result = await flow.runner.send(device, cmd)
    except Exception as exc:  # a closed driver: the command did not leave
        return Settled(0, "failed", "not-sent", type(exc).__name__)
    status = str(getattr(result.status, "value", result.status))
    return Settled(0, JOURNAL_STATE.get(status, "failed"), status, result.reason)
