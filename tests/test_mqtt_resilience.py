"""The driver under stress: broker restarts, a slow consumer, and the broker's ACLs."""

from __future__ import annotations

import asyncio
import contextlib

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.drivers.mqtt.driver import reconnect_backoff
from dockgate.gateway.protocol import Channel, DeviceRef, username
from tests.support.mqtt import telemetry

VEHICLE = DeviceRef.vehicle(7, "SXB123")


def device_client(broker, client_id: str, user: tuple[str, str] | None = None) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if user:
        client.username_pw_set(*user)
    client.reconnect_delay_set(0.05, 0.2)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port, clean_start=False)
    client.loop_start()
    return client


async def drain(driver: MqttDriver, want: set[int], timeout: float) -> set[int]:
    seen: set[int] = set()

    async def run() -> None:
        async for m in driver.messages():
            seen.add(m.payload.odometer)
            if seen >= want:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), timeout)
    return seen


async def test_broker_restart_loses_nothing_at_qos1(mosquitto) -> None:
    s = MqttSettings(port=mosquitto.port, client_id="gw-restart", reconnect_max=0.5)
    dev = device_client(mosquitto, "dev-restart")
    try:
        async with MqttDriver(s) as driver:
            topic = VEHICLE.topic(Channel.TELEMETRY)
            for i in range(300):
                dev.publish(topic, telemetry(odometer=i), qos=1)
            await asyncio.to_thread(mosquitto.stop)  # SIGTERM: the broker saves its sessions
            await asyncio.sleep(0.3)
            for i in range(300, 600):  # published while the broker is down: paho queues them
                dev.publish(topic, telemetry(odometer=i), qos=1)
            await asyncio.to_thread(mosquitto.start)
            await driver.wait_connected(10)
            for i in range(600, 900):
                dev.publish(topic, telemetry(odometer=i), qos=1)
            seen = await drain(driver, set(range(900)), 20)
            status = driver.status()
    finally:
        dev.loop_stop()
        dev.disconnect()
    assert seen == set(range(900)), f"lost {900 - len(seen)}"
    assert status["connects"] >= 2 and status["disconnects"] >= 1


async def test_gateway_absence_loses_nothing(mosquitto) -> None:
    """The broker keeps the gateway's session (clean_start false, session expiry)."""
    s = MqttSettings(port=mosquitto.port, client_id="gw-away")
    dev = device_client(mosquitto, "dev-away")
    topic = VEHICLE.topic(Channel.TELEMETRY)
    try:
        async with MqttDriver(s):
            pass
        for i in range(500):
            dev.publish(topic, telemetry(odometer=i), qos=1).wait_for_publish(5)
        async with MqttDriver(s) as driver:
            seen = await drain(driver, set(range(500)), 10)
    finally:
        dev.loop_stop()
        dev.disconnect()
    assert seen == set(range(500))


async def test_slow_consumer_gets_backpressure_not_loss(mosquitto) -> None:
    s = MqttSettings(port=mosquitto.port, client_id="gw-slow", queue_size=50)
    dev = device_client(mosquitto, "dev-slow")
    topic = VEHICLE.topic(Channel.TELEMETRY)
    try:
        async with MqttDriver(s) as driver:
            for i in range(3000):
                dev.publish(topic, telemetry(odometer=i), qos=1)
            await asyncio.sleep(1.0)  # consumer asleep: the queue fills and stays bounded
            assert driver.status()["queue_depth"] <= 50
            seen = await drain(driver, set(range(3000)), 20)
            status = driver.status()
    finally:
        dev.loop_stop()
        dev.disconnect()
    assert seen == set(range(3000))
    assert status["queue_blocked"] >= 1


def test_backoff_is_jittered_exponential_and_capped() -> None:
    b = reconnect_backoff(MqttSettings(reconnect_min=0.1, reconnect_max=2.0)).series()
    delays = [b.next_delay() for _ in range(12)]
    assert all(0.1 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 6  # jittered, not a fixed ladder
    caps = [min(2.0, 0.1 * 2**n) for n in range(12)]
    assert all(d <= c for d, c in zip(delays, caps, strict=True))
    b.reset()
    assert b.next_delay() <= 0.1 + 1e-9


async def test_acl_refuses_a_scooter_publishing_as_another(mosquitto_auth) -> None:
    me, victim = mosquitto_auth.devices[0], mosquitto_auth.devices[1]
    users = mosquitto_auth.users
    s = MqttSettings(
        port=mosquitto_auth.port, username="gateway", password=users["gateway"], client_id="gw"
    )
    acks: dict[int, int] = {}

    def on_publish(client, userdata, mid, rc, props) -> None:
        acks[mid] = rc.value

    dev = device_client(mosquitto_auth, "dev-acl", (username(me), users[username(me)]))
    dev.on_publish = on_publish
    try:
        async with MqttDriver(s) as driver:
            spoof = dev.publish(
                victim.topic(Channel.TELEMETRY), telemetry(victim.device_id, 1), qos=1
            )
            own = dev.publish(me.topic(Channel.TELEMETRY), telemetry(me.device_id, 2), qos=1)
            own.wait_for_publish(5)
            spoof.wait_for_publish(5)
            got = await asyncio.wait_for(anext(driver.messages()), 5)
            await asyncio.sleep(0.3)
            status = driver.status()
    finally:
        dev.loop_stop()
        dev.disconnect()
    assert got.device == me and got.payload.odometer == 2
    assert status["received"] == 1, "the spoofed publish must never reach the gateway"
    assert acks[spoof.mid] == 135  # MQTT v5 PUBACK reason 0x87: not authorized
    assert acks[own.mid] == 0
