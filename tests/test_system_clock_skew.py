"""Stations whose clocks are 10 minutes off still dock vehicles and end trips.

`dockgate run` as its own process on a private Mosquitto, with a PN532 reader (simulated
behind a socat pty) at station ST01 and its telemetry written to a private VictoriaMetrics.
The devices are plain paho clients of this test: station ST01 whose clock runs 10 minutes
fast (beyond the 5 minutes a device may run ahead: before, every message it sent was refused
``future-timestamp``), station ST02 whose clock runs 10 minutes slow, and vehicle SKEW0001
with a good clock; each answers the commands it gets. Two rides are played (tap at ST01,
undock there, dock at ST02 or back at ST01) and checked through the backend's cursor feed
and the API's state; then a telemetry report a minute old, sent after a fresh one, reaches
the time-series history without moving the vehicle back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.gateway.protocol import Channel, DeviceRef, now_ms
from dockgate.sim.ntag424 import card
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.services.victoria import VictoriaMetrics
from dockgate.sim.transports.pn532_serial import Pn532Simulator
from tests.support.mqtt import wait_subscribed
from tests.support.system_harness import (
    FILE,
    META,
    Backend,
    DaemonProcess,
    ReaderConf,
    StationConf,
    until,
)

pytestmark = pytest.mark.timeout(120)

SITE = (45.4642, 9.2015)  # inside the demo bundle's border, outside its speed zones
MINUTE = 60_000  # ms
SERIAL = "SKEW0001"
READER = "pn532-skew"
PHYSICAL = {"unlock-spot", "lock-spot", "unlock-vehicle", "lock-vehicle"}


class ClockedDevice:
    """A device of this test (plain paho, MQTT v5) whose clock runs ``skew_ms`` off.

    Everything it publishes is stamped with its own clock; it answers every command (an
    ``accepted`` ack, then a ``done`` outcome for those that move something) and keeps them.
    """

    def __init__(self, port: int, device: DeviceRef, skew_ms: int = 0) -> None:
        self.device = device
        self.skew_ms = skew_ms
        self.commands: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"skew-test-{device.device_id}",
            protocol=paho.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_subscribed(self.client, device.topic(Channel.CMD))

    def clock(self) -> int:
        """The device's own clock (ms since the epoch)."""
        return now_ms() + self.skew_ms

    def publish(self, channel: Channel, **fields: Any) -> None:
        body = {"v": 1, "ts": self.clock(), "device_id": self.device.device_id, **fields}
        self.send(channel, body)

    def send(self, channel: Channel, body: dict[str, Any]) -> None:
        info = self.client.publish(self.device.topic(channel), orjson.dumps(body), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def received(self, cmd: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.commands if c["cmd"] == cmd]

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        command = orjson.loads(msg.payload)
        with self._lock:
            self.commands.append(command)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        reply = {"v": 1, "device_id": self.device.device_id, "cmd_id": command["cmd_id"]}
        phases = [("ack", "accepted")]
        if command["cmd"] in PHYSICAL:
            phases.append(("outcome", "done"))
        for phase, status in phases:
            body = {**reply, "ts": self.clock(), "phase": phase, "status": status}
            client.publish(msg.properties.ResponseTopic, orjson.dumps(body), 1, properties=props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def reader_pty(tmp_path: Path) -> Iterator[tuple[SocatPty, Pn532Simulator]]:
    pty = SocatPty(tmp_path / "socat", name="socat-skew").start()
    pn532 = Pn532Simulator(pty.device_path).start()
    try:
        yield pty, pn532
    finally:
        pn532.stop()
        pty.stop()


def report(battery: int) -> dict[str, Any]:
    """The fields of a parked vehicle's telemetry at the site."""
    return {
        "lat": SITE[0],
        "lng": SITE[1],
        "gps_accuracy": 3.0,
        "speed": 0.0,
        "battery": battery,
        "lock": "locked",
        "speed_mode": 2,
        "max_speed": 25,
        "odometer": 0,
    }


async def test_stations_ten_minutes_off_still_dock_vehicles_and_end_trips(
    tmp_path: Path,
    mosquitto: Mosquitto,
    victoria: VictoriaMetrics,
    reader_pty: tuple[SocatPty, Pn532Simulator],
) -> None:
    pty, pn532 = reader_pty
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=[StationConf(1, "ST01", *SITE), StationConf(2, "ST02", SITE[0] + 0.001, SITE[1])],
        readers=[ReaderConf(READER, 1, driver="pn532", path=str(pty.host_path))],
        extra={"telemetry": {"enabled": True, "url": victoria.url}},
        log_level="WARNING",
    )
    backend = Backend(daemon)
    tag = card(meta_read_key=bytes.fromhex(META), file_read_key=bytes.fromhex(FILE))
    devices: list[ClockedDevice] = []
    try:
        daemon.start()
        daemon.seed_rider(7, tag.uid.hex())
        fast = ClockedDevice(mosquitto.port, DeviceRef.station(1, "ST01"), 10 * MINUTE)
        slow = ClockedDevice(mosquitto.port, DeviceRef.station(1, "ST02"), -10 * MINUTE)
        scooter = ClockedDevice(mosquitto.port, DeviceRef.vehicle(1, SERIAL))
        devices += [fast, slow, scooter]

        def vehicle() -> dict[str, Any] | None:
            found = [v for v in daemon.get("/api/v1/vehicles") if v["serial_number"] == SERIAL]
            return found[0] if found else None

        def feed(kind: str) -> list[dict[str, Any]]:
            backend.pull()
            return backend.of_kind(kind)

        await until(
            lambda: any(r.get("state") == "up" for r in daemon.health()["readers"]),
            15,
            "the PN532 reader up",
        )

        # -- the vehicle joins; the fast station docks it --------------------------------------
        scooter.publish(Channel.TELEMETRY, **report(90))
        await until(vehicle, 10, "the vehicle enrolled")
        fast.publish(Channel.SPOT, type="spot-docked", spot=1, vehicle_id=SERIAL)
        await until(lambda: (v := vehicle()) and v["spot_id"] == 1001, 10, "docked at ST01/1")

        async def ride(dock: ClockedDevice, dock_spot: int, rides: int) -> dict[str, Any]:
            """Tap at ST01, undock there (the fast clock), dock at ``dock``; the ended trip."""
            unlocks = len(fast.received("unlock-spot"))
            await asyncio.sleep(2.5)  # a card read within 2 s of the last is the same tap
            pn532.present(tag)
            await until(lambda: len(fast.received("unlock-spot")) > unlocks, 15, "unlock-spot")
            pn532.remove()
            spot = fast.received("unlock-spot")[-1]["spot"]
            await asyncio.sleep(0.3)  # the ack and outcome are back: the rental is open
            fast.publish(Channel.SPOT, type="spot-undocked", spot=spot, vehicle_id=SERIAL)
            await until(lambda: len(feed("trip.started")) == rides, 15, "trip started")
            dock.publish(Channel.SPOT, type="spot-docked", spot=dock_spot, vehicle_id=SERIAL)
            ended = await until(lambda: len(e := feed("trip.ended")) == rides and e, 15, "ended")
            return dict(ended[-1])

        # -- ride 1: undocked at the fast station, docked at the slow one ----------------------
        first = await ride(slow, 2, 1)
        assert (first["station_id"], first["spot_id"]) == (2, 2002)
        assert first["reason"] == "docked"
        assert (v := vehicle()) is not None and (v["spot_id"], v["trip_id"]) == (2002, None)

        # -- the slow station lets it go without a rental; the fast one docks it again ----------
        slow.publish(Channel.SPOT, type="spot-undocked", spot=2, vehicle_id=SERIAL)
        freed = await until(lambda: feed("spot.undocked"), 10, "spot.undocked at ST02")
        assert freed[0]["station_id"] == 2 and freed[0]["vehicle_id"] == v["id"]
        fast.publish(Channel.SPOT, type="spot-docked", spot=3, vehicle_id=SERIAL)
        await until(lambda: (w := vehicle()) and w["spot_id"] == 1003, 10, "docked at ST01/3")

        # -- ride 2: undocked and docked at the fast station -----------------------------------
        second = await ride(fast, 4, 2)
        assert (second["station_id"], second["spot_id"]) == (1, 1004)
        assert second["trip_id"] != first["trip_id"]
        started = feed("trip.started")
        assert [s["trip_id"] for s in started] == [first["trip_id"], second["trip_id"]]

        # -- a report a minute old after a fresh one: history has it, the vehicle stays --------
        scooter.publish(Channel.TELEMETRY, **report(88))
        await until(lambda: (w := vehicle()) and w["battery"] == 88, 10, "the fresh report")
        old = {"v": 1, "ts": now_ms() - MINUTE, "device_id": SERIAL, **report(33)}
        scooter.send(Channel.TELEMETRY, old)

        def history() -> list[float]:
            series = victoria.export(f'vehicle_battery{{vehicle="{SERIAL}"}}', wait=1)
            return series[0]["values"] if series else []

        await until(lambda: 33 in history(), 20, "the old report in the time-series history")
        time.sleep(0.5)
        assert (w := vehicle()) is not None and w["battery"] == 88  # never moved back

        backend.drain()
        assert backend.duplicates() == {}
        assert daemon.health()["broker"]["rejected_total"] == 0  # nothing refused
        assert daemon.terminate() == 0
    finally:
        for device in devices:
            device.close()
        daemon.close()
