"""The tap-to-ride flow: verified taps to unlocked spots, trips with their cost, rule actions.

flow = RideFlow(store, outbox, engine, driver.send_command, network_id=1,
                readers={"reader-1": 1}, station_devices={1: "ST01"})
await flow.recover()                      # settle what a previous run left unsent
decision = await flow.on_tap(tap)         # refused (why) or unlocked (which spot)
async for msg in driver.messages():
    await flow.on_device_message(msg)     # undock -> trip, dock -> trip ended, telemetry
"""

from dockgate.gateway.flow._commands import CommandRunner, Settled, command_id_for
from dockgate.gateway.flow._flow import RideFlow
from dockgate.gateway.flow._recover import Recovery
from dockgate.gateway.flow._settings import FlowOptions, FlowSettings
from dockgate.gateway.flow._taps import tap_key
from dockgate.gateway.flow._types import REFUSALS, CommandPort, CommandResult, Rental, TapDecision

__all__ = [
    "REFUSALS",
    "CommandPort",
    "CommandResult",
    "CommandRunner",
    "FlowOptions",
    "FlowSettings",
    "Recovery",
    "Rental",
    "RideFlow",
    "Settled",
    "TapDecision",
    "command_id_for",
    "tap_key",
]
