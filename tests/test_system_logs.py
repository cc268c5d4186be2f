"""Logs an operator can ship: with ``format = "json"`` every line the daemon writes is JSON,
uvicorn's included, and a clean shutdown logs no error."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.system_harness import DaemonProcess, StationConf

pytestmark = pytest.mark.timeout(60)


def test_every_log_line_is_json_and_a_clean_stop_logs_no_error(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    daemon = DaemonProcess(
        tmp_path, mosquitto.port, stations=[StationConf(1, "ST01", 45.46, 9.2)], log_level="INFO"
    )
    try:
        daemon.start()
        assert daemon.http.get("/health").status_code == 200
        assert daemon.http.get("/api/v1/no-such-route").status_code == 404
        # not HTTP at all: uvicorn itself logs a warning, which must come out as JSON too
        with socket.create_connection(("127.0.0.1", daemon.api_port), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01 this is not an HTTP request\r\n\r\n")
            raw.recv(1024)
        assert daemon.terminate() == 0
    finally:
        daemon.close()
    lines = [
        line
        for line in daemon.log_path.read_text().splitlines()
        if line.strip() and not line.startswith("--- start")  # the harness's own marker
    ]
    assert lines, "the daemon logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line[:200]}") from None
    levels = {str(r.get("level", "")).upper() for r in records}
    assert not levels & {"ERROR", "CRITICAL"}, [r for r in records if r.get("level") in ("error",)]
    assert not any("Traceback" in json.dumps(r) for r in records)
    assert any(r.get("logger", "").startswith("uvicorn") for r in records), "uvicorn not in JSON"
