"""System benchmark: the whole gateway, printed as one table beside same-run baselines.

1. Tap to unlock acknowledged: a simulated NTAG 424 DNA card (``VpcdCard``) presented at the
   shared pcscd's virtual reader, read by the ``dockgate run`` daemon (a real process), the
   unlock-spot sent over a real Mosquitto to a real ``StationSim``, which acks. A paho
   observer in this process stamps the command and the ack as the broker delivers them; the
   card stamps every APDU it answers. All stamps are ``time.monotonic()`` (CLOCK_MONOTONIC,
   one clock for every process on the machine). Headline: last APDU answered (the tag data is
   read) -> ack delivered; the reader stack (pcscd's detection, the APDU exchange) apart.
   Baseline: the bare command round trip through the driver (``bench/mqtt.py``).
2. Telemetry ingest with rules on, 10k vehicles, 1,000 zones: in ONE process with the daemon's
   own parts (``MqttDriver.get_batch`` -> ``RideFlow.on_device_messages``: validation, store
   update, outbox event, rules evaluation, journaled commands), timed from the driver's connect
   to the last batch handled. Beside ``bench/mqtt.py``'s raw paho subscriber that only counts,
   timed from its connect; same broker, same publisher, same backlog-drain method.
   Then the real ``dockgate run`` process draining a backlog (``bench/ingest.py``: timed from
   the process start to the last report committed, beside raw paho and ``mosquitto_sub``).
3. Memory (RSS) of the daemon process with 10k vehicles (one telemetry message each processed)
   and a 1,000-zone bundle, beside an idle daemon (empty store, default bundle).
4. Start-up with a million pending outbox events (process start -> ``/health`` answers 200),
   beside the start-up with an empty outbox.

    .venv/bin/python bench/system.py            # full run (a few minutes)
    .venv/bin/python bench/system.py --quick    # small sizes, about a minute
    .venv/bin/python bench/system.py --json     # one JSON object with the same figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import mqtt as bench_mqtt  # noqa: E402  (bench/mqtt.py)
import orjson  # noqa: E402
import outbox as bench_outbox  # noqa: E402  (bench/outbox.py)
import paho.mqtt.client as paho  # noqa: E402
import psutil  # noqa: E402
import rules as bench_rules  # noqa: E402  (bench/rules.py)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from dockgate.drivers.mqtt import MqttDriver, MqttSettings  # noqa: E402
from dockgate.gateway.flow import RideFlow  # noqa: E402
from dockgate.gateway.outbox import Outbox  # noqa: E402
from dockgate.gateway.protocol import Channel, DeviceRef, Telemetry, encode, now_ms  # noqa: E402
from dockgate.gateway.rules import RulesEngine, load_bundle  # noqa: E402
from dockgate.gateway.store import Database, Store  # noqa: E402
from dockgate.sim.device_base import Broker  # noqa: E402
from dockgate.sim.ntag424 import card  # noqa: E402
from dockgate.sim.services import free_port  # noqa: E402
from dockgate.sim.services.mosquitto import Mosquitto  # noqa: E402
from dockgate.sim.station import StationSim  # noqa: E402

META = bytes.fromhex("00112233445566778899AABBCCDDEEFF")  # bench/tap.py's keys
FILE = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
SITE = (45.4642, 9.2015)  # inside demo-milano.json's border, as in bench/flow.py
TOKEN = "system-bench-token-0123456789abcdef"
NET = 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the daemon as a process ----------------------------------------------------------------
def write_config(
    workdir: Path,
    broker_port: int,
    api_port: int,
    *,
    client_id: str,
    stations: list[tuple[int, str, int]] = (),
    reader: str | None = None,
    bundle: Path | None = None,
) -> Path:
    """A ``dockgate run`` configuration: state in ``workdir/state``, quiet logs."""
    lines = [
        "[site]",
        'name = "system bench"',
        f"network_id = {NET}",
        f'data_dir = "{workdir / "state"}"',
        "[mqtt]",
        f"port = {broker_port}",
        f'client_id = "{client_id}"',
        "[api]",
        f"port = {api_port}",
        f'tokens = [{{ name = "bench", token = "{TOKEN}", scopes = ["sync", "read"] }}]',
        "[logging]",
        'level = "WARNING"',
        "[sun]",
        'default_key_set = "default"',
        "[sun.key_sets.default]",
        f'meta_read_key = "{META.hex()}"',
        f'file_read_key = "{FILE.hex()}"',
    ]
    if bundle is not None:
        lines += ["[rules]", f'bundle = "{bundle}"']
    for sid, device, spots in stations:
        lines += [
            "[[stations]]",
            f"id = {sid}",
            f'device_id = "{device}"',
            f"lat = {SITE[0]}",
            f"lon = {SITE[1]}",
            f"spots = {spots}",
        ]
    if reader is not None:
        lines += [
            "[[readers]]",
            'id = "bench-reader"',
            'driver = "pcsc"',
            "station_id = 1",
            f"pcsc_readers = [{json.dumps(reader)}]",
        ]
    path = workdir / "dockgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProcess:
    """``python -m dockgate.gateway.cli run --config FILE``; started, timed to /health, stopped."""

    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.config, self.api_port, self.log = config, api_port, log
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_health(self, timeout: float = 60.0) -> float:
        """Seconds from process start to the first 200 from ``/health`` (polled every 5 ms)."""
        url = f"http://127.0.0.1:{self.api_port}/health"
        deadline = self.started_at + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    tail = self.log.read_text()[-1500:]
                    raise RuntimeError(f"daemon exited {self.proc.returncode}: {tail}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url).status_code == 200:
                        return time.monotonic() - self.started_at
                time.sleep(0.005)
        raise RuntimeError(f"daemon did not answer /health in {timeout} s; see {self.log}")

    def get(self, path: str) -> Any:
        response = httpx.get(
            f"http://127.0.0.1:{self.api_port}{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return -9


def seed_store(path: Path, build: Any) -> None:
    """Write state into a daemon's database before it starts (the backend's sync would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    try:
        store = Store(db)
        Outbox(db)  # the daemon's migrations, in the daemon's order
        with store.transaction():
            build(store)
    finally:
        db.close()


def riding(v: int) -> bool:
    """One vehicle in three is on a trip (moving, unlocked); the rest are parked, locked."""
    return v % 3 == 1


def seed_fleet(store: Store, vehicles: int) -> None:
    """The fleet, and an open trip (its own rider, with credit) for every riding vehicle."""
    store.topology.upsert_network(NET, "system bench")
    for v in range(vehicles):
        store.vehicles.upsert(v + 1, NET, serial(v), battery=80)
        if riding(v):
            store.riders.upsert(v + 1, credit=5000, first_purchase_done=True)
            store.trips.start(v + 1, v + 1)


def serial(v: int) -> str:
    return f"SXB{v:05d}"


# -- 1. tap to unlock acknowledged ------------------------------------------------------------
class StampedTag:
    """Wraps an APDU tag for ``VpcdCard``: stamps the first vpcd contact and every APDU."""

    def __init__(self, tag: Any) -> None:
        self.tag = tag
        self.first_contact: float | None = None
        self.first_apdu: float | None = None
        self.last_apdu: float | None = None
        self.apdus = 0

    @property
    def atr(self) -> bytes:
        if self.first_contact is None:
            self.first_contact = time.monotonic()
        return self.tag.atr

    def reset(self) -> None:
        self.tag.reset()

    def transceive(self, apdu: bytes) -> bytes:
        now = time.monotonic()
        if self.first_contact is None:
            self.first_contact = now
        if self.first_apdu is None:
            self.first_apdu = now
        reply = self.tag.transceive(apdu)
        self.last_apdu = time.monotonic()
        self.apdus += 1
        return reply


class WireObserver:
    """A paho client that stamps the station's commands and replies as the broker delivers
    them (what the station and the daemon receive): cmd_id -> (cmd, at), (phase, cmd_id) -> at.
    """

    def __init__(self, port: int, station: DeviceRef) -> None:
        self.commands: dict[str, tuple[str, float]] = {}
        self.replies: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="system-bench-observer", protocol=paho.MQTTv5
        )
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(6, 1, 1)  # NODELAY
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(station.topic(Channel.CMD), 1), (station.topic(Channel.REPLY), 1)])
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("observer could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        at = time.monotonic()
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        with self.cond:
            if msg.topic.endswith("/cmd"):
                self.commands.setdefault(body.get("cmd_id"), (body.get("cmd"), at))
            else:
                self.replies.setdefault((body.get("phase"), body.get("cmd_id")), at)
            self.cond.notify_all()

    def wait_unlock(self, after: float, timeout: float) -> tuple[str, float, float] | None:
        """The first unlock-spot published after ``after`` and the arrival of its ack."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for cmd_id, (cmd, at) in self.commands.items():
                    if cmd == "unlock-spot" and at >= after:
                        ack = self.replies.get(("ack", cmd_id))
                        if ack is not None:
                            return cmd_id, at, ack
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def measure_tap(port: int, taps: int, baseline_cmds: int, workdir: Path) -> dict[str, Any]:
    """Cards at pcscd's reader -> daemon (process) -> unlock-spot -> StationSim -> ack."""
    from dockgate.sim.services.pcscd import ensure_pcscd
    from dockgate.sim.transports import VpcdCard

    spots = max(1, min(taps, 64))  # one card, rider, vehicle and spot per tap
    uids = [bytes([0x04, 0x5A, 0x7E, 0, 0, 0x10, n]) for n in range(1, spots + 1)]

    def build(store: Store) -> None:
        store.topology.upsert_network(NET, "system bench")
        store.topology.upsert_cluster(NET, NET, "system bench", *SITE)
        store.topology.upsert_station(1, NET, "ST01", *SITE, badge_reader=True)
        for n in range(1, spots + 1):
            store.topology.upsert_spot(1000 + n, 1, n)
            store.vehicles.upsert(n, NET, serial(n), battery=90)
            store.vehicles.dock(n, 1000 + n)
            store.riders.upsert(n, credit=1_000_000, first_purchase_done=True)
            product = store.products.create(f"card {n}")
            store.records.create(product, uid=uids[n - 1].hex(), token_encryption="aes-128")
            store.products.pair(product, n)

    service = ensure_pcscd()
    daemon = None
    observer = None
    try:
        reader = service.readers[0]
        vpcd_port = service.port_of(reader)
        seed_store(workdir / "state" / "dockgate.sqlite3", build)
        api_port = free_port()
        config = write_config(
            workdir,
            port,
            api_port,
            client_id="system-bench-tap",
            stations=[(1, "ST01", spots)],
            reader=reader,
        )
        observer = WireObserver(port, DeviceRef.station(NET, "ST01"))
        daemon = DaemonProcess(config, api_port, workdir / "daemon.log")
        daemon.start()
        await asyncio.to_thread(daemon.wait_health)
        station = StationSim("ST01", Broker("127.0.0.1", port), spots=spots, auto_release=False)
        for n in range(1, spots + 1):
            station.dock(n, serial(n))
        rows: list[dict[str, float]] = []
        failed = 0
        failures: dict[str, int] = {}
        async with station:
            await asyncio.sleep(1.0)  # the station's status reaches the daemon
            for i in range(taps):
                tag = StampedTag(card(uids[i % spots], meta_read_key=META, file_read_key=FILE))
                vpcd = VpcdCard(tag, port=vpcd_port)
                presented = time.monotonic()
                vpcd.insert()
                got = await asyncio.to_thread(observer.wait_unlock, presented, 10.0)
                vpcd.remove()
                if got is None or tag.last_apdu is None:
                    failed += 1
                    why = "no_read" if tag.last_apdu is None else "no_unlock_ack"
                    failures[why] = failures.get(why, 0) + 1
                else:
                    _, cmd_at, ack_at = got
                    rows.append(
                        {
                            "detect": (tag.first_contact - presented) * 1e3,
                            "apdus": (tag.last_apdu - tag.first_apdu) * 1e3,
                            "n_apdus": tag.apdus,
                            "read_to_cmd": (cmd_at - tag.last_apdu) * 1e3,
                            "cmd_to_ack": (ack_at - cmd_at) * 1e3,
                            "read_to_ack": (ack_at - tag.last_apdu) * 1e3,
                            "presented_to_ack": (ack_at - presented) * 1e3,
                        }
                    )
                await asyncio.sleep(0.6)  # pcscd's poll sees the removal before the next card
        verified = daemon_tap_stamps(daemon, len(rows))
        alive = daemon.proc.poll() is None
        exit_code = daemon.stop()
        daemon = None
        await asyncio.to_thread(clear_retained, port, DeviceRef.station(NET, "ST01"))
        bare = await bench_mqtt.command_rtt(port, baseline_cmds)
    finally:
        if daemon is not None:
            daemon.stop()
        if observer is not None:
            observer.close()
        service.stop()  # only if this process started it

    def col(key: str) -> list[float]:
        return [r[key] for r in rows]

    return {
        "taps": taps,
        "unlocked": len(rows),
        "failed": failed,
        "failures": failures,
        "daemon_alive": alive,
        "daemon_exit_code": exit_code,
        "read_to_ack_ms_p50": pct(col("read_to_ack"), 0.5),
        "read_to_ack_ms_p99": pct(col("read_to_ack"), 0.99),
        "read_to_cmd_ms_p50": pct(col("read_to_cmd"), 0.5),
        "read_to_cmd_ms_p99": pct(col("read_to_cmd"), 0.99),
        "cmd_to_ack_ms_p50": pct(col("cmd_to_ack"), 0.5),
        "cmd_to_ack_ms_p99": pct(col("cmd_to_ack"), 0.99),
        "stack_detect_ms_p50": pct(col("detect"), 0.5),
        "stack_detect_ms_p99": pct(col("detect"), 0.99),
        "stack_apdus_ms_p50": pct(col("apdus"), 0.5),
        "stack_apdus_ms_p99": pct(col("apdus"), 0.99),
        "apdus_per_tap": statistics.mean(col("n_apdus")) if rows else 0,
        "presented_to_ack_ms_p50": pct(col("presented_to_ack"), 0.5),
        "presented_to_ack_ms_p99": pct(col("presented_to_ack"), 0.99),
        "daemon_taps_seen": verified,
        "baseline_commands": len(bare),
        "baseline_rtt_ms_p50": pct(bare, 0.5),
        "baseline_rtt_ms_p99": pct(bare, 0.99),
    }


def clear_retained(port: int, device: DeviceRef) -> None:
    """Drop the station's retained status and presence, so later phases do not receive them."""
    c = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="system-bench-clear", protocol=paho.MQTTv5
    )
    c.connect("127.0.0.1", port)
    c.loop_start()
    for channel in (Channel.STATUS, Channel.ONLINE):
        c.publish(device.topic(channel), b"", qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def daemon_tap_stamps(daemon: DaemonProcess, n: int) -> int:
    """How many accepted taps the daemon's status page lists (a cross-check)."""
    with contextlib.suppress(Exception):
        taps = daemon.get("/status/snapshot").get("taps", [])
        return sum(1 for t in taps if t.get("valid"))
    return -1


# -- 2. telemetry ingest with rules on ------------------------------------------------------------
REPORT_S = 10.0  # a vehicle reports every 10 s


def telemetry(vehicles: int, n: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """``n`` reports of ``vehicles`` vehicles, one every ``REPORT_S`` seconds each, in time order.

    Realistic, not a stress pattern: the vehicles are spread over bench/rules.py's city, 98 %
    of them well inside its border (radius <= 6.3 km; the wiggly border is 6.35-7.65 km out)
    and 2 % in the band around it (some outside, some crossing). A riding vehicle (one in
    three, on an open trip in the store) moves along a continuous path at 12-25 km/h,
    turning a little between reports (33-70 m apart); a parked one is locked at speed 0 with a
    few metres of GPS noise. Reports of one round are staggered over the 10 s. Every
    vehicle's first report still makes the rules set its speed limit (a command each), and
    riders entering or leaving a speed zone, or the border, get their commands as usual.
    """
    rng = random.Random(seed)
    fleet = []
    for v in range(vehicles):
        r = 6300 * math.sqrt(rng.random()) if v % 50 else rng.uniform(6300, 7700)
        a = rng.uniform(0, 2 * math.pi)
        ride = riding(v)
        fleet.append(
            {
                "x": r * math.cos(a),
                "y": r * math.sin(a),
                "heading": rng.uniform(0, 2 * math.pi),
                "speed": rng.uniform(12, 25) if ride else 0.0,
                "battery": rng.randint(25, 100),
                "ride": ride,
            }
        )
    rounds = -(-n // vehicles)
    base = now_ms() - int((rounds + 1) * REPORT_S * 1000)  # the backlog lies in the past
    out = []
    for i in range(n):
        k, v = divmod(i, vehicles)
        f = fleet[v]
        if f["ride"]:
            if k:
                f["heading"] += rng.uniform(-0.4, 0.4)
                step = f["speed"] / 3.6 * REPORT_S
                f["x"] += step * math.cos(f["heading"])
                f["y"] += step * math.sin(f["heading"])
            x, y, speed = f["x"], f["y"], max(0.0, f["speed"] + rng.uniform(-2, 2))
            if k and rng.random() < 0.1:
                f["battery"] = max(1, f["battery"] - 1)
        else:
            x, y, speed = f["x"] + rng.uniform(-3, 3), f["y"] + rng.uniform(-3, 3), 0.0
        lon, lat = bench_rules._ll(x, y)
        t = Telemetry(
            ts=base + int((k * REPORT_S + REPORT_S * v / vehicles) * 1000),
            device_id=serial(v),
            lat=lat,
            lng=lon,
            gps_accuracy=round(rng.uniform(3, 12), 1),
            speed=round(speed, 1),
            battery=f["battery"],
            lock="unlocked" if f["ride"] else "locked",
            speed_mode=2,
            max_speed=25,
            odometer=k,
        )
        out.append((DeviceRef.vehicle(NET, serial(v)).topic(Channel.TELEMETRY), encode(t)))
    return out


async def flow_rate(
    port: int, msgs: list[tuple[str, bytes]], cid: str, workdir: Path, bundle: Path, fleet: int
) -> dict[str, Any]:
    """The daemon's parts in this process: MqttDriver.get_batch -> RideFlow.on_device_messages,
    timed from the driver's connect (as the raw paho subscriber) to the last batch handled."""
    db_path = workdir / f"{cid}.sqlite3"
    seed_store(db_path, lambda store: seed_fleet(store, fleet))
    db = Database(db_path)
    store, outbox = Store(db), Outbox(db)
    engine = RulesEngine(load_bundle(bundle))
    settings = MqttSettings(port=port, client_id=cid, session_expiry=600, queue_size=200_000)
    n = len(msgs)
    async with MqttDriver(settings):
        pass  # the persistent session exists; the backlog is queued for it
    await asyncio.to_thread(bench_mqtt.publish_all, port, msgs)
    done = 0
    try:
        t0 = time.perf_counter()  # from connect, as the raw paho baseline is timed
        async with MqttDriver(settings) as driver:
            flow = RideFlow(store, outbox, engine, driver.send_command, network_id=NET, readers={})
            await flow.recover()
            while done < n:
                try:
                    batch = await asyncio.wait_for(driver.get_batch(4096), 10)
                except TimeoutError:
                    break
                await flow.on_device_messages(batch)  # the daemon's loop does the same
                driver.acknowledge_delivered()
                done += len(batch)
            elapsed = time.perf_counter() - t0
            rejected = driver.status()["rejected_total"]
            await flow.aclose()
        journaled = db.conn.execute("SELECT count(*) FROM command_journal").fetchone()[0]
        located = db.conn.execute("SELECT count(*) FROM vehicles WHERE lat IS NOT NULL").fetchone()
    finally:
        db.close()
    await asyncio.to_thread(bench_mqtt.end_session, port, cid)
    return {
        "rate": done / elapsed,
        "lost": n - done,
        "rejected": rejected,
        "commands_journaled": journaled,
        "vehicles_located": located[0],
    }


async def measure_ingest(
    port: int, vehicles: int, messages: int, rounds: int, workdir: Path, bundle: Path
) -> dict[str, Any]:
    msgs = telemetry(vehicles, messages)
    raw, ours, last = [], [], {}
    raw_lost = 0
    for i in range(rounds):  # alternate, so a busy machine slows both alike
        r, rl = await asyncio.to_thread(bench_mqtt.raw_paho_rate, port, msgs, f"system-raw-{i}")
        raw.append(r)
        raw_lost += rl
        last = await flow_rate(port, msgs, f"system-flow-{i}", workdir, bundle, vehicles)
        ours.append(last["rate"])
    return {
        "vehicles": vehicles,
        "messages": messages,
        "rounds": rounds,
        "ingest_rate": statistics.median(ours),
        "raw_paho_rate": statistics.median(raw),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "lost": last.get("lost"),
        "raw_lost": raw_lost,
        "rejected": last.get("rejected"),
        "commands_journaled": last.get("commands_journaled"),
        "vehicles_located": last.get("vehicles_located"),
    }


# -- 3. memory ------------------------------------------------------------------------------
def located(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM vehicles WHERE lat IS NOT NULL").fetchone()[0]
    finally:
        conn.close()


def measure_memory(port: int, vehicles: int, workdir: Path, bundle: Path) -> dict[str, Any]:
    """RSS of an idle daemon, then of one that knows the fleet and runs the big bundle."""
    idle_dir = workdir / "idle"
    idle_dir.mkdir()
    api = free_port()
    idle = DaemonProcess(
        write_config(idle_dir, port, api, client_id="system-bench-idle"), api, idle_dir / "log"
    )
    idle.start()
    try:
        idle.wait_health()
        time.sleep(1.0)
        idle_rss = idle.rss_mb()
    finally:
        idle.stop()

    full_dir = workdir / "fleet"
    full_dir.mkdir()
    db_path = full_dir / "state" / "dockgate.sqlite3"
    seed_store(db_path, lambda store: seed_fleet(store, vehicles))
    api = free_port()
    config = write_config(full_dir, port, api, client_id="system-bench-fleet", bundle=bundle)
    daemon = DaemonProcess(config, api, full_dir / "log")
    daemon.start()
    peak = 0.0
    try:
        daemon.wait_health()
        started_rss = daemon.rss_mb()
        msgs = telemetry(vehicles, vehicles)  # one report per vehicle: every one placed
        t0 = time.monotonic()
        pub = threading.Thread(target=bench_mqtt.publish_all, args=(port, msgs))
        pub.start()
        seen = 0
        while time.monotonic() - t0 < 300:
            peak = max(peak, daemon.rss_mb())
            seen = located(db_path)
            if seen >= vehicles:
                break
            time.sleep(0.25)
        pub.join()
        processed_s = time.monotonic() - t0
        known_rss = daemon.rss_mb()
        time.sleep(8.0)  # rule commands to the absent vehicles time out and settle
        settled_rss = daemon.rss_mb()
        peak = max(peak, known_rss, settled_rss)
        alive = daemon.proc.poll() is None
    finally:
        daemon.stop()
    return {
        "vehicles": vehicles,
        "zones": int(json.loads(bundle.read_text())["version"].split("-")[1]),
        "vehicles_processed": seen,
        "processed_s": processed_s,
        "idle_rss_mb": idle_rss,
        "started_rss_mb": started_rss,
        "fleet_rss_mb": known_rss,
        "settled_rss_mb": settled_rss,
        "peak_rss_mb": peak,
        "daemon_alive": alive,
    }


# -- 4. start-up with a full outbox ------------------------------------------------------------
def measure_startup(port: int, events: int, rounds: int, workdir: Path) -> dict[str, Any]:
    empty_dir, full_dir = workdir / "empty", workdir / "full"
    for d in (empty_dir, full_dir):
        (d / "state").mkdir(parents=True)
    t0 = time.monotonic()
    bench_outbox.fill(full_dir / "state" / "dockgate.sqlite3", events)
    fill_s = time.monotonic() - t0
    empty, full, pending = [], [], None
    for i in range(-1, rounds):  # round -1 warms the page cache and is not counted; alternate
        for d, out in ((empty_dir, empty), (full_dir, full)):
            api = free_port()
            config = write_config(d, port, api, client_id=f"system-bench-start-{d.name}-{i}")
            daemon = DaemonProcess(config, api, d / "log")
            daemon.start()
            try:
                took = daemon.wait_health()
                if i >= 0:
                    out.append(took)
                if d is full_dir:
                    body = daemon.get("/health")["data"]["outbox_pending"]
                    pending = sum(body.values())
            finally:
                daemon.stop()
    return {
        "events": events,
        "pending_seen": pending,
        "fill_s": fill_s,
        "rounds": rounds,
        "startup_s": statistics.median(full),
        "startup_s_max": max(full),
        "empty_startup_s": statistics.median(empty),
    }


# -- the table --------------------------------------------------------------------------------
@dataclass
class Table:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, what: str, ours: str, baseline: str, target: str) -> None:
        self.rows.append((what, ours, baseline, target))

    def render(self) -> str:
        head = ("measure", "dockgate", "same-run baseline", "target")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(head)), line]
        out += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in self.rows]
        return "\n".join(out)


def p5099(d: dict[str, Any], key: str, fmt: str) -> str:
    return f"p50 {d[key + '_p50']:{fmt}} / p99 {d[key + '_p99']:{fmt}} ms"


def table(f: dict[str, Any]) -> str:
    t = Table()
    tap = f.get("tap")
    if tap and "error" not in tap:
        base = f"bare cmd RTT {p5099(tap, 'baseline_rtt_ms', '.2f')}"
        t.add(
            f"tap read -> unlock ack, {tap['unlocked']}/{tap['taps']} taps",
            p5099(tap, "read_to_ack_ms", ".1f"),
            base,
            "p99 < 50 ms",
        )
        t.add(
            "  of which read -> unlock-spot on wire",
            p5099(tap, "read_to_cmd_ms", ".1f"),
            "",
            "",
        )
        t.add(
            "  of which unlock-spot -> ack (station)",
            p5099(tap, "cmd_to_ack_ms", ".1f"),
            base,
            "",
        )
        t.add(
            "  reader stack: pcscd detection",
            p5099(tap, "stack_detect_ms", ".0f"),
            "",
            "(apart)",
        )
        t.add(
            f"  reader stack: {tap['apdus_per_tap']:.0f} APDUs",
            p5099(tap, "stack_apdus_ms", ".1f"),
            "",
            "(apart)",
        )
        t.add(
            "  card presented -> unlock ack (all)",
            p5099(tap, "presented_to_ack_ms", ".0f"),
            "",
            "",
        )
    elif tap:
        t.add("tap -> unlock ack", f"ERROR {tap['error']}", "", "p99 < 50 ms")
    ing = f.get("ingest")
    if ing:
        t.add(
            f"ingest + rules, {ing['vehicles']:,} vehicles, {ing['messages']:,} msgs",
            f"{ing['ingest_rate']:,.0f} msg/s ({ing['ratio']:.0%})",
            f"raw paho {ing['raw_paho_rate']:,.0f} msg/s",
            ">= 50% of raw",
        )
    proc = f.get("process")
    if proc:
        t.add(
            f"dockgate run drains {proc['messages']:,} msgs, {proc['vehicles']:,} vehicles",
            f"{proc['daemon_rate']:,.0f} msg/s ({proc['ratio_to_raw_paho']:.0%}), "
            f"{proc['cpu_ms_per_msg']:.3f} ms CPU/msg",
            f"raw paho {proc['raw_paho_rate']:,.0f}, mosquitto_sub "
            f"{proc['mosquitto_sub_rate']:,.0f} msg/s",
            ">= 60% of raw paho",
        )
    mem = f.get("memory")
    if mem:
        t.add(
            f"daemon RSS, {mem['vehicles']:,} vehicles + {mem['zones']:,} zones",
            f"{mem['fleet_rss_mb']:.0f} MB (peak {mem['peak_rss_mb']:.0f})",
            f"idle daemon {mem['idle_rss_mb']:.0f} MB",
            "< 300 MB",
        )
    st = f.get("startup")
    if st:
        t.add(
            f"start-up -> /health, {st['events']:,} pending",
            f"{st['startup_s']:.2f} s (max {st['startup_s_max']:.2f})",
            f"empty outbox {st['empty_startup_s']:.2f} s",
            "< 3 s",
        )
    return t.render()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--taps", type=int, help="cards presented (<= 64; full 64, quick 12)")
    parser.add_argument("--vehicles", type=int, help="simulated vehicles (10000; quick 2000)")
    parser.add_argument("--zones", type=int, default=1000)
    parser.add_argument("--messages", type=int, help="ingest backlog (30000; quick 10000)")
    parser.add_argument("--events", type=int, help="pending outbox events (1e6; quick 200000)")
    parser.add_argument("--rounds", type=int, help="ingest and start-up rounds (3; quick 1)")
    parser.add_argument("--only", default="tap,ingest,process,memory,startup")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    q = args.quick
    taps = args.taps or (12 if q else 64)
    vehicles = args.vehicles or (2000 if q else 10_000)
    messages = args.messages or (10_000 if q else 30_000)
    events = args.events or (200_000 if q else 1_000_000)
    rounds = args.rounds or (1 if q else 3)
    if not 0 < taps <= 64:
        parser.error("--taps must be in 1..64 (one spot per tap on one station)")
    only = set(args.only.split(","))
    figures: dict[str, Any] = {"quick": q}
    workdir = Path(tempfile.mkdtemp(prefix="dockgate-system-"))
    bundle = workdir / f"bundle-{args.zones}.json"
    bundle.write_text(json.dumps(bench_rules.make_bundle(args.zones)))
    progress = (lambda *a: None) if args.json else (lambda m: print(m, file=sys.stderr))
    with Mosquitto(persistence=False) as broker:
        if "tap" in only:
            progress(f"tap: {taps} cards at pcscd -> daemon -> station ...")
            try:
                (workdir / "tap").mkdir()
                figures["tap"] = asyncio.run(
                    measure_tap(broker.port, taps, 100 if q else 500, workdir / "tap")
                )
            except Exception as exc:
                figures["tap"] = {"error": f"{type(exc).__name__}: {exc}"}
        if "ingest" in only:
            progress(f"ingest: {messages} msgs over {vehicles} vehicles, {rounds} round(s) ...")
            figures["ingest"] = asyncio.run(
                measure_ingest(broker.port, vehicles, messages, rounds, workdir, bundle)
            )
        if "process" in only:
            progress(f"process: dockgate run drains {messages} msgs, {rounds} round(s) ...")
            pdir = workdir / "process"
            pdir.mkdir()
            fleet = min(vehicles, 5000)
            import ingest as bench_ingest  # here: bench/ingest.py imports this module

            figures["process"] = bench_ingest.measure(fleet, messages, rounds, pdir, None)
        if "memory" in only:
            progress(f"memory: daemon with {vehicles} vehicles, {args.zones} zones ...")
            figures["memory"] = measure_memory(broker.port, vehicles, workdir, bundle)
        if "startup" in only:
            progress(f"start-up: {events} pending events, {rounds} round(s) ...")
            figures["startup"] = measure_startup(broker.port, events, rounds, workdir)
    if args.keep:
        figures["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, default=float))
        return
    print(table(figures))
    if args.keep:
        print(f"(logs and state kept in {workdir})")


if __name__ == "__main__":
    main()
