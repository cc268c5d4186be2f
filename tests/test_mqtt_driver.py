"""The MQTT driver against a real Mosquitto: ingest, rejections, commands end to end."""

from __future__ import annotations

import asyncio
import time

import pytest

from dockgate.drivers.mqtt import CommandStatus, MqttDriver, MqttError, MqttSettings
from dockgate.gateway.protocol import (
    MAX_PAYLOAD,
    Channel,
    DeviceRef,
    LockSpot,
    LockVehicle,
    PlaySound,
    SetLight,
    SetMaxSpeed,
    SetSpeedMode,
    SpeedMode,
    UnlockSpot,
    UnlockVehicle,
    encode,
    now_ms,
)
from tests.support.mqtt import telemetry
from tests.support.protocol import station_payloads, vehicle_payloads

VEHICLE = DeviceRef.vehicle(7, "SXB123")
STATION = DeviceRef.station(7, "ST-01")


def settings(broker, **over) -> MqttSettings:
    base = {"port": broker.port, "client_id": f"gw-{time.monotonic_ns()}", "command_timeout": 0.5}
    base.update(over)
    return MqttSettings(**base)


async def collect(driver: MqttDriver, n: int, timeout: float = 10.0) -> list:
    got: list = []

    async def run() -> None:
        async for m in driver.messages():
            got.append(m)
            if len(got) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_every_device_event_arrives_decoded(mosquitto, scripted_device) -> None:
    st = scripted_device(STATION)
    veh = scripted_device(VEHICLE)
    sent = [(st, c, m) for c, m in station_payloads()]
    sent += [(veh, c, m) for c, m in vehicle_payloads() if c is not Channel.REPLY]
    async with MqttDriver(settings(mosquitto)) as driver:
        for dev, channel, model in sent:
            dev.publish(channel, encode(model)).wait_for_publish(5)
        got = await collect(driver, len(sent))
    assert [(m.device, m.channel, m.payload) for m in got] == [(d.device, c, m) for d, c, m in sent]
    assert all(abs(m.received_at - time.time()) < 10 for m in got)
    assert driver.status()["rejected_total"] == 0


async def test_spoofed_and_malformed_are_rejected_and_counted(mosquitto, scripted_device) -> None:
    veh = scripted_device(VEHICLE)
    async with MqttDriver(settings(mosquitto)) as driver:
        bad = [
            (Channel.TELEMETRY, telemetry("SXB999")),  # spoofed id
            (Channel.TELEMETRY, b"{garbage"),
            (Channel.TELEMETRY, b'{"v":1}'),
            (Channel.TELEMETRY, telemetry() + b" " * MAX_PAYLOAD),
            (Channel.EVENT, telemetry()),  # telemetry on the event channel
        ]
        for channel, payload in bad:
            veh.publish(channel, payload).wait_for_publish(5)
        future = telemetry().replace(b'"ts":', b'"ts":9', 1)  # ~10x the epoch: far future
        veh.publish(Channel.TELEMETRY, future).wait_for_publish(5)
        veh.client.publish("dockgate/7/vehicle/SX/telemetry", b"{}", qos=1).wait_for_publish(5)
        veh.publish(Channel.TELEMETRY, telemetry(odometer=42)).wait_for_publish(5)
        (good,) = await collect(driver, 1)
        status = driver.status()
    assert good.payload.odometer == 42
    assert status["rejected"] == {
        "device-mismatch": 1,
        "bad-json": 1,
        "schema": 2,
        "oversized": 1,
        "future-timestamp": 1,
        "bad-topic": 1,
    }
    assert status["accepted"] == 1


ALL = [
    (STATION, UnlockSpot(spot=3)),
    (STATION, LockSpot(spot=3)),
    (VEHICLE, LockVehicle(trip_on_hold=True)),
    (VEHICLE, UnlockVehicle(light=True)),
    (VEHICLE, SetMaxSpeed(max_speed=15)),
    (VEHICLE, SetSpeedMode(speed_mode=SpeedMode.SPORT)),
    (VEHICLE, PlaySound()),
    (VEHICLE, SetLight(on=True)),
]


@pytest.mark.parametrize(("device", "command"), ALL, ids=lambda v: getattr(v, "cmd", ""))
async def test_every_command_is_acked(mosquitto, scripted_device, device, command) -> None:
    dev = scripted_device(device)
    async with MqttDriver(settings(mosquitto)) as driver:
        out = await driver.send_command(device, command)
    physical = command.cmd in {"unlock-spot", "lock-spot", "lock-vehicle", "unlock-vehicle"}
    assert out.status is (CommandStatus.DONE if physical else CommandStatus.ACCEPTED)
    assert out.ok and out.attempts == 1 and out.ack is not None
    assert (out.outcome is not None) == physical
    assert dev.executed == [command.cmd_id]
    ((_, props),) = dev.deliveries
    assert props.CorrelationData == command.cmd_id.encode()
    assert props.ResponseTopic == device.topic(Channel.REPLY)
    assert 1 <= props.MessageExpiryInterval <= 2


async def test_physical_failure_is_kept_apart_from_the_ack(mosquitto, scripted_device) -> None:
    scripted_device(STATION, outcome="failed")
    async with MqttDriver(settings(mosquitto)) as driver:
        out = await driver.send_command(STATION, UnlockSpot(spot=2))
    assert out.ack.status == "accepted"
    assert out.status is CommandStatus.FAILED and out.reason == "lock-jammed"


async def test_no_outcome_in_time(mosquitto, scripted_device) -> None:
    scripted_device(STATION, outcome=None)
    async with MqttDriver(settings(mosquitto)) as driver:
        out = await driver.send_command(STATION, UnlockSpot(spot=2), outcome_timeout=0.3)
    assert out.status is CommandStatus.NO_OUTCOME and out.ack is not None


async def test_timeout_retries_with_the_same_id(mosquitto, scripted_device) -> None:
    dev = scripted_device(VEHICLE, behaviour="silent")
    async with MqttDriver(settings(mosquitto, command_retries=2)) as driver:
        cmd = SetLight(on=True)
        out = await driver.send_command(VEHICLE, cmd, timeout=0.2)
        status = driver.status()
    assert out.status is CommandStatus.NO_ACK and out.attempts == 3
    assert [cid for cid, _ in dev.deliveries] == [cmd.cmd_id] * 3
    assert status["command_retries"] == 2 and status["outcomes"] == {"no-ack": 1}


async def test_retry_after_a_lost_delivery_succeeds(mosquitto, scripted_device) -> None:
    dev = scripted_device(STATION, behaviour="ignore-first")
    async with MqttDriver(settings(mosquitto)) as driver:
        cmd = UnlockSpot(spot=1)
        out = await driver.send_command(STATION, cmd, timeout=0.2)
    assert out.status is CommandStatus.DONE and out.attempts == 2
    assert dev.executed == [cmd.cmd_id]


async def test_duplicate_replies_are_counted_not_doubled(mosquitto, scripted_device) -> None:
    dev = scripted_device(VEHICLE, behaviour="dup")
    async with MqttDriver(settings(mosquitto)) as driver:
        out = await driver.send_command(VEHICLE, LockVehicle(), outcome_timeout=2)
        await asyncio.sleep(0.1)
        status = driver.status()
    assert out.status is CommandStatus.DONE and len(dev.executed) == 1
    assert status["duplicate_replies"] + status["late_replies"] >= 1


async def test_rejected_and_expired(mosquitto, scripted_device) -> None:
    dev = scripted_device(VEHICLE, behaviour="reject")
    scripted_device(STATION, behaviour="expired")  # its clock says the command is stale
    async with MqttDriver(settings(mosquitto)) as driver:
        out = await driver.send_command(VEHICLE, SetMaxSpeed(max_speed=10))
        assert out.status is CommandStatus.REJECTED and out.reason == "busy"
        out2 = await driver.send_command(STATION, UnlockSpot(spot=1))
        assert out2.status is CommandStatus.EXPIRED and out2.attempts == 1
        # a command already past its expiry is never published at all
        stale = SetLight(on=True, expires_at=now_ms() - 1)
        out3 = await driver.send_command(VEHICLE, stale)
    assert out3.status is CommandStatus.EXPIRED and out3.attempts == 0
    assert stale.cmd_id not in [cid for cid, _ in dev.deliveries]
    assert dev.executed == []


async def test_wrong_kind_command_is_refused_locally(mosquitto) -> None:
    async with MqttDriver(settings(mosquitto)) as driver:
        with pytest.raises(ValueError):
            await driver.send_command(VEHICLE, UnlockSpot(spot=1))


async def test_bad_credentials_fail_cleanly(mosquitto_auth) -> None:
    s = settings(mosquitto_auth, username="gateway", password="wrong", connect_timeout=1.0)
    with pytest.raises(MqttError) as err:
        async with MqttDriver(s):
            pass
    assert "wrong" not in str(err.value)
    assert "wrong" not in repr(s)
    good = settings(mosquitto_auth, username="gateway", password=mosquitto_auth.users["gateway"])
    async with MqttDriver(good) as driver:
        assert driver.connected


@pytest.mark.parametrize(
    ("expiry", "topic", "corr"),
    [(6, "dockgate/1/vehicle/SXB00001/reply", b"a" * 32), (300_000, "t" * 200, b"x")],
)
def test_packed_command_properties_equal_paho_packing(expiry, topic, corr) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from dockgate.drivers.mqtt._props import (
        PackedProperties,
        pack_publish_properties,
        pack_response_topic,
    )

    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = topic
    props.CorrelationData = corr
    props.MessageExpiryInterval = expiry
    packed = PackedProperties(pack_publish_properties(expiry, pack_response_topic(topic), corr))
    assert packed.pack() == props.pack()
