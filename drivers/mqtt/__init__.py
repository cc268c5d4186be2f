"""The gateway's MQTT v5 driver for stations and scooters.

async with MqttDriver(MqttSettings(port=1883)) as driver:
    async for msg in driver.messages():  # validated `gateway.protocol.DeviceMessage`s
        ...
    outcome = await driver.send_command(device, UnlockSpot(spot=3))
"""

from drivers.mqtt.backoff import Backoff
from drivers.mqtt.driver import MqttClosed, MqttDriver, MqttError
from drivers.mqtt.outcome import CommandOutcome, CommandStatus
from drivers.mqtt.settings import MqttSettings

__all__ = [
    "Backoff",
    "CommandOutcome",
    "CommandStatus",
    "MqttClosed",
    "MqttDriver",
    "MqttError",
    "MqttSettings",
]
