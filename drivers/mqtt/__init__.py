"""The gateway's MQTT v5 driver for stations and scooters.

async with MqttDriver(MqttSettings(port=1883)) as driver:
    async for msg in driver.messages():  # validated `dockgate.gateway.protocol.DeviceMessage`s
        ...
    outcome = await driver.send_command(device, UnlockSpot(spot=3))
"""

from dockgate.drivers.mqtt.driver import MqttClosed, MqttDriver, MqttError
from dockgate.drivers.mqtt.outcome import CommandOutcome, CommandStatus
from dockgate.drivers.mqtt.settings import MqttSettings

__all__ = [
    "CommandOutcome",
    "CommandStatus",
    "MqttClosed",
    "MqttDriver",
    "MqttError",
    "MqttSettings",
]
