"""Tap to unlock through the broker beside the direct path, in one run of one `dockgate run`.

The daemon (a real process) serves two stations on a private Mosquitto: ``ST01`` with a
reader attached to it (the ``nfcpy`` driver on nfcpy's ``udp:`` radio link, the simulated
NTAG 424 DNA card in this process) and ``ST02`` with a ``broker`` reader ``R01`` whose taps
arrive on ``dockgate/1/reader/R01/tap`` from the reader-side publisher of ``dockgate reader
publish`` (``TapPublisher``, in this process, as on a standby machine or a station
controller). Both stations are ``StationSim``s that ack their commands. Each tap is a new
rider's card, a docked vehicle and a free spot (the database is seeded before the start).

Timing window, the same end for both paths: the ``unlock-spot`` command to the tap's station
as the broker delivers it to a paho observer in this process. Start:

- broker path: the reader's publish, i.e. the moment the read tap is handed to the reader's
  publisher (``TapPublisher.submit``), just before its QoS 1 PUBLISH goes out;
- direct path: the tag read done, i.e. the simulated card answering its last APDU to the
  daemon's nfcpy driver (detection by the radio stack is before the window).

All stamps are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the
machine). Target: p99 < 50 ms on the broker path.

    .venv/bin/python bench/tap_broker.py               # table
    .venv/bin/python bench/tap_broker.py --json        # one JSON object with the same figures
    .venv/bin/python bench/tap_broker.py --taps 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from dockgate.drivers.readers.broker_tap import PublisherSettings, TapPublisher  # noqa: E402
from dockgate.gateway.outbox import Outbox  # noqa: E402
from dockgate.gateway.readers import TapEvent  # noqa: E402
from dockgate.gateway.store import Database, Store  # noqa: E402
from dockgate.sim.device_base import Broker  # noqa: E402
from dockgate.sim.ntag424 import card  # noqa: E402
from dockgate.sim.services import free_port  # noqa: E402
from dockgate.sim.services.mosquitto import Mosquitto  # noqa: E402
from dockgate.sim.station import StationSim  # noqa: E402
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag  # noqa: E402

META = bytes.fromhex("00112233445566778899AABBCCDDEEFF")  # bench/tap.py's keys
FILE = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
SITE = (45.4642, 9.2015)  # inside demo-milano.json's border
NET = 1
TOKEN = "tap-broker-bench-token-0123456789abcdef"
TARGET_P99_MS = 50.0
PATHS = {"direct": (1, "ST01"), "broker": (2, "ST02")}  # path -> (station id, device id)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def uid_of(path: str, n: int) -> bytes:
    return bytes([0x04, 0x7A, 0xB0, 1 if path == "direct" else 2, 0, n >> 8, n & 0xFF])


def serial_of(path: str, n: int) -> str:
    return f"{'DIR' if path == 'direct' else 'BRK'}{n:05d}"


# -- the site ---------------------------------------------------------------------------------
def seed(db_path: Path, taps: int) -> None:
    """Per path: a station with a spot, a docked vehicle and a paired rider card per tap."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(db_path)
    try:
        store = Store(db)
        Outbox(db)  # the daemon's migrations, in the daemon's order
        with store.transaction():
            store.topology.upsert_network(NET, "tap broker bench")
            store.topology.upsert_cluster(NET, NET, "tap broker bench", *SITE)
            rider = 0
            for path, (sid, device) in PATHS.items():
                store.topology.upsert_station(sid, NET, device, *SITE, badge_reader=True)
                for n in range(1, taps + 1):
                    rider += 1
                    spot_id, vehicle = sid * 1000 + n, sid * 1000 + n
                    store.topology.upsert_spot(spot_id, sid, n)
                    store.vehicles.upsert(vehicle, NET, serial_of(path, n), battery=90)
                    store.vehicles.dock(vehicle, spot_id)
                    store.riders.upsert(rider, credit=1_000_000, first_purchase_done=True)
                    product = store.products.create(f"card {rider}")
                    store.records.create(
                        product, uid=uid_of(path, n).hex(), token_encryption="aes-128"
                    )
                    store.products.pair(product, rider)
    finally:
        db.close()


def write_config(workdir: Path, broker_port: int, api_port: int, radio: str, taps: int) -> Path:
    lines = [
        "[site]",
        'name = "tap broker bench"',
        f"network_id = {NET}",
        f'data_dir = "{workdir / "state"}"',
        "[mqtt]",
        f"port = {broker_port}",
        'client_id = "tap-broker-bench"',
        "[api]",
        f"port = {api_port}",
        f'tokens = [{{ name = "bench", token = "{TOKEN}", scopes = ["sync", "read"] }}]',
        "[logging]",
        'level = "WARNING"',
        "[sun.key_sets.default]",
        f'meta_read_key = "{META.hex()}"',
        f'file_read_key = "{FILE.hex()}"',
    ]
    for sid, device in PATHS.values():
        lines += ["[[stations]]", f"id = {sid}", f'device_id = "{device}"']
        lines += [f"lat = {SITE[0]}", f"lon = {SITE[1]}", f"spots = {taps}"]
    lines += ["[[readers]]", 'id = "direct"', 'driver = "nfcpy"', "station_id = 1"]
    lines += [f'path = "{radio}"']
    lines += ["[[readers]]", 'id = "R01"', 'driver = "broker"', "station_id = 2"]
    path = workdir / "dockgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    """``dockgate run`` as a process: started, waited for, stopped with SIGTERM."""

    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.api = f"http://127.0.0.1:{api_port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=out,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def health(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.api}/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body.get("data", body)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/health`` answers and the direct reader is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-1500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if any(r.get("state") == "up" for r in self.health()["readers"]):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout} s; see {self.log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


class Observer:
    """A paho client stamping each ``unlock-spot`` as the broker delivers it: (station, at)."""

    def __init__(self, port: int) -> None:
        self.unlocks: list[tuple[str, float]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="tap-broker-observer", protocol=paho.MQTTv5
        )
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(6, 1, 1)  # NODELAY
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"dockgate/{NET}/station/+/cmd", qos=1)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("observer could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        at = time.monotonic()
        with contextlib.suppress(orjson.JSONDecodeError):
            if orjson.loads(msg.payload).get("cmd") == "unlock-spot":
                with self.cond:
                    self.unlocks.append((msg.topic.split("/")[3], at))
                    self.cond.notify_all()

    def wait_unlock(self, station: str, after: float, timeout: float = 10.0) -> float | None:
        """When the first unlock of ``station`` stamped after ``after`` arrived (None: none)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for device, at in self.unlocks:
                    if device == station and at >= after:
                        return at
                left = deadline - time.monotonic()
                if left <= 0 or not self.cond.wait(left):
                    return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class StampedTag:
    """The simulated card on the radio link, stamping the moment it answers its last APDU."""

    def __init__(self, tag: Any) -> None:
        self.tag = tag
        self.uid, self.atqa, self.sak, self.ats = tag.uid, tag.atqa, tag.sak, tag.ats
        self.last_apdu: float | None = None

    def reset(self) -> None:
        self.tag.reset()

    def transceive(self, apdu: bytes) -> bytes:
        reply: bytes = self.tag.transceive(apdu)
        self.last_apdu = time.monotonic()
        return reply


# -- the two paths ------------------------------------------------------------------------------
async def direct_taps(radio: NfcpyUdpTag, observer: Observer, taps: int) -> dict[str, Any]:
    """Cards at the daemon's own reader: tag read done -> unlock-spot on the broker."""
    samples: list[float] = []
    failures = 0
    for n in range(1, taps + 1):
        tag = StampedTag(card(uid_of("direct", n), meta_read_key=META, file_read_key=FILE))
        presented = time.monotonic()
        radio.present(tag)
        at = await asyncio.to_thread(observer.wait_unlock, "ST01", presented)
        radio.remove()
        if at is None or tag.last_apdu is None:
            failures += 1
        else:
            samples.append((at - tag.last_apdu) * 1e3)
        await asyncio.sleep(0.4)  # the driver sees the card leave before the next one
    return figures("direct (nfcpy reader at the gateway)", taps, samples, failures)


async def broker_taps(port: int, observer: Observer, taps: int) -> dict[str, Any]:
    """Reads published by the reader-side publisher: publish -> unlock-spot on the broker."""
    samples: list[float] = []
    failures = 0
    settings = PublisherSettings(reader_id="R01", network=NET, port=port)
    async with TapPublisher(settings) as publisher:
        if not await asyncio.to_thread(publisher.wait_connected, 10):
            raise RuntimeError(f"reader publisher: {publisher.stats.last_error}")
        for n in range(1, taps + 1):
            sdm = card(uid_of("broker", n), meta_read_key=META, file_read_key=FILE).source
            url = sdm.next_url()  # the reader's NDEF read, before the window
            now = time.monotonic()
            event = TapEvent("R01", sdm.uid, url, now - 0.03, now, time.time() - 0.03)
            published = time.monotonic()
            publisher.submit(event)
            at = await asyncio.to_thread(observer.wait_unlock, "ST02", published)
            if at is None:
                failures += 1
            else:
                samples.append((at - published) * 1e3)
            await asyncio.sleep(0.05)
        status = publisher.status()
    result = figures("broker (reader publishes, gateway verifies)", taps, samples, failures)
    result["publisher"] = {k: status[k] for k in ("published", "acked", "resent", "expired")}
    return result


def figures(name: str, taps: int, samples: list[float], failures: int) -> dict[str, Any]:
    return {
        "path": name,
        "taps": taps,
        "unlocked": len(samples),
        "failed": failures,
        "ms_p50": pct(samples, 0.5),
        "ms_p99": pct(samples, 0.99),
        "ms_max": max(samples) if samples else float("nan"),
        "ms_mean": statistics.mean(samples) if samples else float("nan"),
    }


async def run(taps: int, workdir: Path) -> dict[str, Any]:
    with Mosquitto() as broker, NfcpyUdpTag() as radio:
        seed(workdir / "state" / "dockgate.sqlite3", taps)
        api_port = free_port()
        config = write_config(workdir, broker.port, api_port, radio.path, taps)
        observer = Observer(broker.port)
        daemon = Daemon(config, api_port, workdir / "daemon.log")
        stations = [
            StationSim(device, Broker("127.0.0.1", broker.port), spots=taps, auto_release=False)
            for _, device in PATHS.values()
        ]
        try:
            await asyncio.to_thread(daemon.wait_ready)
            for path, station in zip(PATHS, stations, strict=True):
                for n in range(1, taps + 1):
                    station.dock(n, serial_of(path, n))
                await station.start()
            await asyncio.sleep(1.0)  # the stations' status reaches the daemon
            broker_path = await broker_taps(broker.port, observer, taps)
            direct_path = await direct_taps(radio, observer, taps)
        finally:
            for station in stations:
                await station.stop()
            exit_code = daemon.stop()
            observer.close()
    return {
        "window": "reader publish (broker) / tag read done (direct) -> unlock-spot on the broker",
        "broker": broker_path,
        "direct": direct_path,
        "target_p99_ms": TARGET_P99_MS,
        "broker_meets_target": broker_path["ms_p99"] < TARGET_P99_MS and broker_path["failed"] == 0,
        "daemon_exit_code": exit_code,
    }


def show(result: dict[str, Any]) -> None:
    print(f"tap -> unlock-spot on the broker ({result['window']})")
    print(f"{'path':46} {'taps':>5} {'ok':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for key in ("broker", "direct"):
        row = result[key]
        print(
            f"{row['path']:46} {row['taps']:>5} {row['unlocked']:>5} {row['ms_p50']:>8.2f} "
            f"{row['ms_p99']:>8.2f} {row['ms_max']:>8.2f}"
        )
    verdict = "meets" if result["broker_meets_target"] else "MISSES"
    print(f"broker path {verdict} the target p99 < {result['target_p99_ms']:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=64, help="taps per path (a spot each)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dockgate-tap-broker-"))
    try:
        result = asyncio.run(run(max(1, args.taps), workdir))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)
    if args.keep:
        print(f"work directory: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
