"""Every part can come back: a driver closed by a failed part is entered again, and the daemon's
supervisor restarts the part and shows, in ``/health``, the failure that began it all.

The drivers are the real ones: MQTT against a private Mosquitto; PN532 over a socat pty to the
simulated PN532; nfcpy over its UDP transport to a simulated tag; PC/SC through the real pcscd
and a vpcd card. The daemon test runs ``dockgate run`` as its own process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from dockgate.drivers.mqtt import CommandStatus, MqttDriver, MqttError, MqttSettings
from dockgate.drivers.readers.nfcpy_reader import NfcpyReader
from dockgate.drivers.readers.pcsc import PcscDriver
from dockgate.drivers.readers.pn532 import Pn532Reader
from dockgate.gateway.protocol import Channel, DeviceRef, LockVehicle
from dockgate.gateway.readers import ReaderDriver, TapEvent
from dockgate.sim.ntag424 import card
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.transports import VpcdCard
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag
from dockgate.sim.transports.pn532_serial import Pn532Simulator
from tests.support.mqtt import ScriptedDevice, telemetry
from tests.support.system_harness import DaemonProcess, StationConf, until
from tests.support.taps import FILE, META

pytestmark = pytest.mark.timeout(120)

VEHICLE = DeviceRef.vehicle(7, "SXB123")


# --- the MQTT driver --------------------------------------------------------------------------
async def _next_odometer(driver: MqttDriver) -> int:
    batch = await asyncio.wait_for(driver.get_batch(1), 10)
    driver.acknowledge_delivered()
    return int(batch[0].payload.odometer)  # type: ignore[union-attr]


async def test_mqtt_driver_is_entered_again_after_close(mosquitto: Mosquitto) -> None:
    """Closed and entered again, the same object connects, takes what the broker kept for
    its session meanwhile, and sends commands: what a restarted MQTT part needs."""
    driver = MqttDriver(
        MqttSettings(port=mosquitto.port, client_id="gw-reenter", command_timeout=1.0)
    )
    device = ScriptedDevice(mosquitto, VEHICLE, outcome="done")
    try:
        async with driver:
            device.publish(Channel.TELEMETRY, telemetry(odometer=1)).wait_for_publish(5)
            assert await _next_odometer(driver) == 1
        assert not driver.connected
        device.publish(Channel.TELEMETRY, telemetry(odometer=2)).wait_for_publish(5)
        for round_ in range(2):  # entered a second and a third time
            async with driver:
                assert driver.connected
                if round_ == 0:
                    assert await _next_odometer(driver) == 2  # kept by the broker meanwhile
                outcome = await driver.send_command(VEHICLE, LockVehicle())
                assert outcome.status is CommandStatus.DONE, outcome
        status = driver.status()
        assert status["connects"] == 3 and status["queue_depth"] == 0
    finally:
        device.close()


async def test_mqtt_driver_entered_twice_at_once_is_refused(mosquitto: Mosquitto) -> None:
    async with MqttDriver(MqttSettings(port=mosquitto.port, client_id="gw-twice")) as driver:
        with pytest.raises(MqttError, match="already open"):
            await driver.__aenter__()


async def test_mqtt_driver_that_could_not_connect_connects_when_entered_again(
    mosquitto: Mosquitto,
) -> None:
    """The broker is away at the first attempt (the part fails), back for the second."""
    await asyncio.to_thread(mosquitto.stop)
    driver = MqttDriver(MqttSettings(port=mosquitto.port, client_id="gw-late", connect_timeout=0.5))
    with pytest.raises(MqttError, match="could not connect to the broker: connect:"):
        await driver.__aenter__()
    await asyncio.to_thread(mosquitto.start)
    async with driver:
        assert driver.connected


# --- the reader drivers -----------------------------------------------------------------------
async def _tap_after_reentry(driver: ReaderDriver, present: Callable[[], None]) -> list[TapEvent]:
    """Enter, tap, leave; enter again, tap again: one event each time, none left over."""
    taps: list[TapEvent] = []
    for _ in range(2):
        async with driver:
            stream = driver.taps()
            done = asyncio.ensure_future(anext(stream))
            await asyncio.to_thread(present)
            taps.append(await asyncio.wait_for(done, 15))
            await stream.aclose()
    return taps


async def test_pn532_reader_is_entered_again_after_close(serial_pty: SocatPty) -> None:
    the_card = card(meta_read_key=META, file_read_key=FILE)
    with Pn532Simulator(serial_pty.device_path) as sim:
        driver = Pn532Reader(str(serial_pty.host_path), reader_id="dock-restart")

        def present() -> None:
            sim.present(the_card)
            time.sleep(0.5)
            sim.remove()

        taps = await _tap_after_reentry(driver, present)
    assert [t.uid for t in taps] == [the_card.uid] * 2
    assert all(t.error is None for t in taps)
    assert driver.status()[0].taps == 2


async def test_nfcpy_reader_is_entered_again_after_close() -> None:
    the_card = card(meta_read_key=META, file_read_key=FILE)
    with NfcpyUdpTag() as radio:
        driver = NfcpyReader(radio.path, reader_id="dock-restart")

        def present() -> None:
            radio.present(the_card)
            time.sleep(0.5)
            radio.remove()

        taps = await _tap_after_reentry(driver, present)
    assert [t.uid for t in taps] == [the_card.uid] * 2
    assert driver.status()[0].taps == 2


async def test_pcsc_reader_is_entered_again_after_close(pcscd_service: PcscdService) -> None:
    the_card = card(meta_read_key=META, file_read_key=FILE)
    driver = PcscDriver([pcscd_service.readers[0]])

    def present() -> None:
        vpcd = VpcdCard(the_card, port=pcscd_service.port)
        vpcd.insert()
        time.sleep(1.5)
        vpcd.remove()
        time.sleep(1.0)  # pcscd polls vpcd every ~0.44 s: let it see the removal

    taps = await _tap_after_reentry(driver, present)
    assert [t.uid for t in taps] == [the_card.uid] * 2
    assert sum(s.taps for s in driver.status()) == 2


# --- the daemon -------------------------------------------------------------------------------
def _fallen(serial: str) -> tuple[str, bytes]:
    body = {"v": 1, "ts": int(time.time() * 1000), "device_id": serial, "type": "vehicle-fallen"}
    return f"dockgate/1/vehicle/{serial}/event", orjson.dumps(body)


@pytest.fixture
async def daemon(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[DaemonProcess]:
    process = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=[StationConf(1, "ST01", 45.46, 9.20)],
        extra={"mqtt": {"connect_timeout": 0.5}},
        log_level="WARNING",
    )
    try:
        yield process
    finally:
        process.close()


async def test_mqtt_part_failing_at_start_comes_back_and_health_names_the_cause(
    daemon: DaemonProcess, mosquitto: Mosquitto
) -> None:
    """The broker is down when the daemon starts: the MQTT part fails, again and again; the
    broker comes back and so does the part, by itself, and device messages flow. Meanwhile
    ``/health`` is degraded and names the first failure, not only the latest."""
    await asyncio.to_thread(mosquitto.stop)
    daemon.start()

    def failing() -> dict | None:
        health = daemon.health()
        mqtt = next(p for p in health["parts"] if p["name"] == "mqtt")
        return health if mqtt["restarts"] >= 2 else None

    health = await until(failing, 30, "the MQTT part failed twice")
    mqtt = next(p for p in health["parts"] if p["name"] == "mqtt")
    assert health["status"] == "degraded", health
    assert mqtt["cause"].startswith("MqttError: could not connect to the broker: connect:")
    assert "ConnectionRefusedError" in mqtt["cause"]
    assert mqtt["cause_at"] <= mqtt["last_error_at"]
    assert any(p.startswith("part mqtt is") or "broker" in p for p in health["problems"])

    await asyncio.to_thread(mosquitto.start)

    def recovered() -> dict | None:
        h = daemon.health()
        return h if h["status"] == "ok" and h["broker"]["connected"] else None

    began = time.monotonic()
    health = await until(recovered, 40, "the MQTT part back and /health ok")
    print(f"\nMQTT part back {time.monotonic() - began:.1f} s after the broker")
    assert {p["state"] for p in health["parts"]} == {"running"}
    assert health["problems"] == []

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}")
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    try:
        publisher.publish(*_fallen("BACK001"), qos=1).wait_for_publish(5)
    finally:
        publisher.loop_stop()
        publisher.disconnect()

    def alerted() -> bool:
        alerts = daemon.get("/api/v1/events", cursor=0, limit=100)["events"]
        return any(e["kind"] == "alert.raised" for e in alerts)

    await until(alerted, 15, "the device message after the restart stored")
    assert daemon.terminate() == 0
