"""System-test harness: `dockgate run` as a real process, and a backend that syncs by cursor.

- :class:`DaemonProcess` writes a daemon configuration, starts ``dockgate run`` on it, kills it
  (SIGKILL: a crash), restarts it on the same data directory, stops it with SIGTERM, and talks
  to its API (seeding riders and cards the way the fleet backend does). Its store is on the
  test's engine (``tests.support.stores``): with ``--store=postgresql`` the configuration
  names a fresh PostgreSQL database in ``[store] url``.
- :class:`Backend` pulls ``GET /api/v1/events`` by cursor and acknowledges, checking as it goes
  that every event arrives once and in cursor order.
- :class:`WireLog` listens on the broker to every command the gateway publishes, per ``cmd_id``
  (what was on the wire), next to the simulators' own per-``cmd_id`` execution counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from dockgate.gateway.store._postgres import pyformat, row_factory
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services import free_port
from dockgate.sim.station import StationSim
from tests.support import stores

TOKEN = "system-test-token-0123456789abcdef"
META = "00112233445566778899AABBCCDDEEFF"
FILE = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
REPO = Path(__file__).resolve().parents[2]  # tests/support/ -> the repository


@dataclass
class StationConf:
    id: int
    device_id: str
    lat: float
    lon: float
    spots: int = 4


@dataclass
class ReaderConf:
    id: str
    station_id: int
    driver: str = "pcsc"
    pcsc_readers: list[str] = field(default_factory=list)
    path: str | None = None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class DaemonProcess:
    """``dockgate run --config FILE`` as a child process, restartable on the same data dir."""

    def __init__(
        self,
        workdir: Path,
        broker_port: int,
        *,
        stations: Iterable[StationConf],
        readers: Iterable[ReaderConf] = (),
        client_id: str = "dockgate-system",
        extra: dict[str, dict[str, Any]] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.workdir = workdir
        self.broker_port = broker_port
        self.stations = list(stations)
        self.readers = list(readers)
        self.client_id = client_id
        self.extra = extra or {}
        self.log_level = log_level
        self.api_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.config = self.write_config()
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10.0,
        )

    # -- configuration -----------------------------------------------------------------------
    def write_config(self) -> Path:
        tables: dict[str, dict[str, Any]] = {
            "site": {"name": "System test site", "network_id": 1, "data_dir": "state"},
            "mqtt": {
                "port": self.broker_port,
                "client_id": self.client_id,
                "command_timeout": 5.0,
                "outcome_timeout": 10.0,
                "reconnect_max": 1.0,
            },
            "api": {"port": self.api_port},
            "logging": {"format": "json", "level": self.log_level},
        }
        if stores.engine() == "postgresql":
            tables["store"] = {"url": self.store_target}
        for name, values in self.extra.items():
            tables.setdefault(name, {}).update(values)
        lines: list[str] = []
        for name, values in tables.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        api_at = lines.index("[api]")
        token_line = f'tokens = [{{ name = "backend", token = "{TOKEN}", scopes = ["sync"] }}]'
        lines.insert(api_at + 1, token_line)
        lines += [
            "[sun.key_sets.default]",
            f'meta_read_key = "{META}"',
            f'file_read_key = "{FILE}"',
        ]
        for st in self.stations:
            lines += [
                "[[stations]]",
                f"id = {st.id}",
                f'device_id = "{st.device_id}"',
                f"lat = {st.lat}",
                f"lon = {st.lon}",
                f"spots = {st.spots}",
            ]
        for r in self.readers:
            lines += ["[[readers]]", f'id = "{r.id}"', f'driver = "{r.driver}"']
            lines.append(f"station_id = {r.station_id}")
            if r.pcsc_readers:
                lines.append(f"pcsc_readers = {_toml_value(r.pcsc_readers)}")
            if r.path:
                lines.append(f'path = "{r.path}"')
        path = self.workdir / "dockgate.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def db_path(self) -> Path:
        return self.workdir / "state" / "dockgate.sqlite3"

    @property
    def store_target(self) -> str:
        """What opens the daemon's store: ``db_path``, or the PostgreSQL database for it."""
        return stores.database_target(self.db_path)

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    # -- life cycle --------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait until ``/health`` answers; returns the seconds it took."""
        assert not self.alive, "already running"
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        deadline = began + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/health").status_code == 200:
                    return time.monotonic() - began
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon not healthy in {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the crash the journal and the outbox must survive."""
        assert self.proc is not None and self.alive, "not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def restart(self) -> float:
        self.kill()
        return self.start()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"daemon ignored SIGTERM for {timeout}s") from None
        return int(self.proc.returncode)

    def close(self) -> None:
        """Kill the process if it still runs (test teardown), close the HTTP client."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        self.http.close()

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    # -- API ---------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params or None)
        response.raise_for_status()
        body = response.json()
        return body["data"] if isinstance(body, dict) and "data" in body else body

    def send(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code < 300, (path, response.status_code, response.text[:300])
        return response.json()["data"]

    def health(self) -> dict[str, Any]:
        return self.get("/health")

    def seed_rider(self, rider_id: int, uid_hex: str, *, credit: int = 100_000) -> int:
        """A rider with credit and a card (a product with one aes-128 record), through the API
        as the backend does it. Returns the product id."""
        self.send(
            "PUT", f"/api/v1/users/{rider_id}", {"credit": credit, "first_purchase_done": True}
        )
        product = self.send("POST", "/api/v1/products", {"name": f"card {rider_id}"})
        pid = int(product["id"])
        self.send(
            "POST",
            f"/api/v1/products/{pid}/records",
            {"uid": uid_hex, "token_encryption": "aes-128"},
        )
        self.send("POST", f"/api/v1/products/{pid}/pair", {"user_id": rider_id})
        return pid

    # -- the data directory, read-only (the daemon may be running or dead) ---------------------
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of ``sql`` (``?`` placeholders), by index or column name, on either engine."""
        if stores.engine() == "postgresql":  # read only: no schema table made by the reader
            with psycopg.connect(self.store_target, row_factory=row_factory) as conn:
                return conn.execute(pyformat(sql), args).fetchall()
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def scalar(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None


class Backend:
    """The fleet backend: pulls events by cursor, acks them, and checks exactly-once order."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.cursor = 0
        self.events: list[dict[str, Any]] = []
        self.keys: Counter[str] = Counter()
        self.pulls = 0
        self.errors = 0

    def pull(self, limit: int = 2000, *, ack: bool = True) -> int:
        """One page after the cursor; returns how many events came. Unreachable: 0."""
        try:
            data = self.daemon.get("/api/v1/events", cursor=self.cursor, limit=limit)
        except httpx.HTTPError:
            self.errors += 1
            return 0
        self.pulls += 1
        page = data["events"]
        for event in page:
            assert event["cursor"] > self.cursor, ("out of order", event["cursor"], self.cursor)
            self.cursor = event["cursor"]
            self.keys[event["idempotency_key"]] += 1
            self.events.append(event)
        if page:
            assert data["next_cursor"] == self.cursor
            if ack:
                with contextlib.suppress(httpx.HTTPError):
                    self.daemon.send("POST", "/api/v1/events/ack", {"cursor": self.cursor})
        return len(page)

    def drain(self, limit: int = 5000, *, ack: bool = True) -> int:
        total = 0
        while n := self.pull(limit, ack=ack):
            total += n
        return total

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e["payload"] for e in self.events if e["kind"] == kind]

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in self.keys.items() if n > 1}

    def check_gaps(self, stats: dict[str, Any]) -> dict[str, int]:
        """Every cursor up to the last was delivered, or compacted, or dropped and counted."""
        last = int(stats["last_cursor"])
        got = {e["cursor"] for e in self.events}
        assert len(got) == len(self.events), "a cursor came twice"
        missing = last - len(got)
        classes = stats["classes"]
        explained = sum(c["compacted"] + c["dropped"] for c in classes.values())
        assert 0 <= missing <= explained, (missing, explained, classes)
        return {"last_cursor": last, "delivered": len(got), "missing": missing,
                "compacted_or_dropped": explained}  # fmt: skip


class RecordingStation(StationSim):
    """A station simulator that also counts what it executed per ``cmd_id``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executed: Counter[str] = Counter()
        self.executed_cmds: dict[str, str] = {}
        self.undocks: list[tuple[int, str]] = []

    def execute(self, cmd: Any) -> Any:
        self.executed[cmd.cmd_id] += 1
        self.executed_cmds[cmd.cmd_id] = cmd.cmd
        return super().execute(cmd)

    def undock(self, spot: int) -> str | None:
        vehicle = super().undock(spot)
        if vehicle:
            self.undocks.append((spot, vehicle))
        return vehicle


class RecordingScooter(ScooterSim):
    """A scooter simulator that also counts what it executed per ``cmd_id``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executed: Counter[str] = Counter()
        self.executed_cmds: dict[str, str] = {}

    def execute(self, cmd: Any) -> Any:
        self.executed[cmd.cmd_id] += 1
        self.executed_cmds[cmd.cmd_id] = cmd.cmd
        return super().execute(cmd)


class WireLog:
    """Every command the gateway published, per ``cmd_id`` (a paho listener on ``+/cmd``)."""

    def __init__(self, port: int, topic: str = "dockgate/+/+/+/cmd") -> None:
        import json

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.deliveries: Counter[str] = Counter()
        self.commands: dict[str, str] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                body = json.loads(msg.payload)
                with self._lock:
                    self.deliveries[body["cmd_id"]] += 1
                    self.commands[body["cmd_id"]] = body["cmd"]

        def on_connect(client: Any, *a: Any) -> None:
            client.subscribe(topic, qos=1)

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"wirelog-{os.getpid()}-{port}",
            protocol=paho.MQTTv5,
        )
        self.client.on_message = on_message
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("wire log: no SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``pred`` (sync) until truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(sqlite3.OperationalError, psycopg.Error):
            value = pred()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.03)
