"""`dockgate run` as a real process: it serves, learns the fleet from MQTT, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockgate.sim.device_base import Broker
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services import free_port, wait_for_port
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.station import StationSim

TOKEN = "daemon-test-token-0123456789"


def write_config(tmp_path: Path, broker_port: int, api_port: int) -> Path:
    path = tmp_path / "dockgate.toml"
    path.write_text(
        f"""
[site]
name = "Test site"
network_id = 1
data_dir = "state"

[mqtt]
port = {broker_port}
client_id = "dockgate-test"

[api]
port = {api_port}
tokens = [{{ name = "backend", token = "{TOKEN}", scopes = ["sync"] }}]

[[stations]]
id = 1
device_id = "ST001"
name = "Central"
lat = 45.4642
lon = 9.19
spots = 4

[logging]
format = "json"
"""
    )
    return path


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[subprocess.Popen, int]]:
    api_port = free_port()
    config = write_config(tmp_path, mosquitto.port, api_port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port("127.0.0.1", api_port, timeout=20)
        yield proc, api_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def get(api_port: int, path: str) -> dict:
    response = httpx.get(
        f"http://127.0.0.1:{api_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response.raise_for_status()
    return response.json()


async def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_daemon_learns_the_fleet_reports_health_and_stops_on_sigterm(
    daemon: tuple[subprocess.Popen, int], mosquitto: Mosquitto
) -> None:
    proc, api_port = daemon
    broker = Broker("127.0.0.1", mosquitto.port)
    async with (
        StationSim("ST001", broker, spots=4) as station,
        ScooterSim("SXB00001", broker, start=(45.4642, 9.19), battery=87) as scooter,
    ):
        scooter.report_now()
        station.dock(2, "SXB00001")

        def docked() -> dict | None:
            vehicles = get(api_port, "/api/v1/vehicles")["data"]
            return next((v for v in vehicles if v.get("spot_id") == 1002), None)

        vehicle = await wait_until(docked)
        assert vehicle["battery"] == 87

        health = get(api_port, "/health")["data"]
        parts = {p["name"]: p["state"] for p in health["parts"]}
        assert parts == {"mqtt": "running", "api": "running", "housekeeping": "running"}
        assert health["status"] == "ok"

        snapshot = get(api_port, "/status/snapshot")
        assert [v["id"] for v in snapshot["vehicles"]] == ["SXB00001"]
        assert snapshot["map"]["stations"][0]["spots_free"] == 3
        assert snapshot["map"]["speed_zones"], "the default bundle's zones are drawn"

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, output.decode()[-2000:]
    assert time.monotonic() - started < 5
    assert TOKEN not in output.decode()


def test_a_bad_configuration_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nport = 0\n[api]\ntokens = [{ name = "x", token = "short" }]\n')
    result = subprocess.run(
        [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr
    assert "api.tokens.0.token" in result.stderr
    assert "short" not in result.stderr
