"""Nothing the broker handed over is lost, whatever the instant of a crash.

`dockgate run` as its own process on a private Mosquitto; an independent plain-paho publisher
sends thousands of countable QoS 1 events (each vehicle: one ``vehicle-fallen``, which raises
one alert, and one ``vehicle-low-battery``, which becomes one ``vehicle.event``) at about
1,000 messages a second, and counts the broker's PUBACKs. Meanwhile the daemon is SIGKILLed
at random moments and restarted, and a backend pulls and acknowledges the event feed by cursor
as it goes (so a redelivered message cannot hide behind a still-pending outbox row). At the end
every broker-acknowledged message has left exactly one trace in the feed: 0 lost, 0 duplicated.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.publisher import PacedPublisher
from tests.support.system_harness import Backend, DaemonProcess, StationConf, until

pytestmark = pytest.mark.timeout(240)

SEED = int(os.environ.get("DOCKGATE_ACK_SEED", "20261206"))
VEHICLES = 2500  # two messages each
RATE = 1000.0  # messages per second
KILLS = 5


def serial(i: int) -> str:
    return f"ACK{i:05d}"


def event(i: int, kind: str, ts: int) -> tuple[str, bytes]:
    device = serial(i)
    body = {"v": 1, "ts": ts, "device_id": device, "type": kind, "battery": 9}
    return f"dockgate/1/vehicle/{device}/event", orjson.dumps(body)


def backlog() -> list[tuple[str, bytes]]:
    """Each vehicle's ``vehicle-fallen`` and ``vehicle-low-battery``, device times increasing."""
    base = int(time.time() * 1000)
    kinds = ("vehicle-fallen", "vehicle-low-battery")
    return [
        event(i, kind, base + 2 * i + k) for i in range(VEHICLES) for k, kind in enumerate(kinds)
    ]


async def test_sigkill_at_random_moments_loses_and_duplicates_nothing_acknowledged(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    rng = random.Random(SEED)
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=[StationConf(1, "ST01", 45.46, 9.20)],
        log_level="WARNING",
    )
    backend = Backend(daemon)
    daemon.start()
    publisher = PacedPublisher(mosquitto.port, backlog(), rate=RATE, client_id="outside-publisher")
    try:
        publisher.start()
        duration = 2 * VEHICLES / RATE
        kill_at = sorted(rng.uniform(0.1, 0.9) * duration for _ in range(KILLS))
        began = time.monotonic()
        for moment in kill_at:
            while time.monotonic() - began < moment:
                backend.pull()
                await asyncio.sleep(0.05)
            daemon.restart()
        await asyncio.to_thread(publisher.join, 120)
        assert publisher.error is None, publisher.error
        assert publisher.acked == 2 * VEHICLES

        def complete() -> bool:
            backend.pull()
            return _traces(backend) == (VEHICLES, VEHICLES)

        try:
            await until(complete, timeout=60, what="every acknowledged event traced")
        except AssertionError:
            lost = (VEHICLES - _traces(backend)[0], VEHICLES - _traces(backend)[1])
            raise AssertionError(f"lost (alerts, low-battery events): {lost}") from None
        backend.drain()
        assert daemon.kills == KILLS
        assert backend.duplicates() == {}
        alerts = Counter(
            p["vehicle_id"] for p in backend.of_kind("alert.raised")
            if p["alert_type"] == "vehicle-fallen"
        )  # fmt: skip
        assert len(alerts) == VEHICLES and set(alerts.values()) == {1}
        low = Counter(
            p["vehicle_id"] for p in backend.of_kind("vehicle.event")
            if p["type"] == "vehicle-low-battery"
        )  # fmt: skip
        assert len(low) == VEHICLES and set(low.values()) == {1}
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def _traces(backend: Backend) -> tuple[int, int]:
    alerts = {
        p["vehicle_id"]
        for p in backend.of_kind("alert.raised")
        if p["alert_type"] == "vehicle-fallen"
    }
    low = {
        p["vehicle_id"]
        for p in backend.of_kind("vehicle.event")
        if p["type"] == "vehicle-low-battery"
    }
    return len(alerts), len(low)
