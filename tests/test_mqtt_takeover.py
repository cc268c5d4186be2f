"""The broker belongs to the gateway: a device credential cannot displace its session.

Against a real Mosquitto with a password file and per-device ACLs (the shipped configuration's
choices, ``use_username_as_clientid`` included), a device connects with the gateway's client
id: the broker files the session under the device's own account, and the gateway stays
connected. On an anonymous broker, where nothing binds a client id to an account, the same
move does take the session over (the intruder starts clean, so the gateway's queued messages
are gone), and the driver reports it as an alarm when its reconnect finds no session.
"""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.gateway.protocol import username
from dockgate.sim.services.mosquitto import Mosquitto

GATEWAY_ID = "dockgate-gateway"


def connect_as(broker: Mosquitto, client_id: str, user: tuple[str, str] | None) -> paho.Client:
    """Connect a plain paho client and wait for the CONNACK; raise if it is refused."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if user:
        client.username_pw_set(*user)
    done = threading.Event()
    codes: list[int] = []

    def on_connect(c: paho.Client, userdata: object, flags: object, rc: object, p: object) -> None:
        codes.append(getattr(rc, "value", -1))
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert done.wait(5), "no CONNACK"
    assert codes == [0], codes
    return client


async def test_a_device_credential_cannot_take_over_the_gateway_session(
    mosquitto_auth: Mosquitto,
) -> None:
    users = mosquitto_auth.users  # type: ignore[attr-defined]
    device = mosquitto_auth.devices[0]  # type: ignore[attr-defined]
    settings = MqttSettings(
        port=mosquitto_auth.port,
        username="gateway",
        password=users["gateway"],
        client_id=GATEWAY_ID,
    )
    async with MqttDriver(settings) as driver:
        intruder = connect_as(
            mosquitto_auth, GATEWAY_ID, (username(device), users[username(device)])
        )
        try:
            await asyncio.sleep(1.0)
            status = driver.status()
        finally:
            intruder.loop_stop()
            intruder.disconnect()
        assert driver.connected
    assert status["takeovers"] == status["sessions_lost"] == 0
    assert status["disconnects"] == 0


async def test_a_takeover_where_the_broker_allows_it_is_an_alarm(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(port=mosquitto.port, client_id=GATEWAY_ID, reconnect_max=0.2)
    async with MqttDriver(settings) as driver:
        intruder = connect_as(mosquitto, GATEWAY_ID, None)
        try:
            for _ in range(100):
                if driver.status()["sessions_lost"]:
                    break
                await asyncio.sleep(0.02)
            status = driver.status()
        finally:
            intruder.loop_stop()
            intruder.disconnect()
    assert status["sessions_lost"] >= 1, status
    assert status["disconnects"] >= 1
