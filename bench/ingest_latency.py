"""bench/ingest.py's latency row: tap -> unlock and the command round trip while ``dockgate
run`` ingests at its full rate, beside the same taps with the daemon idle, one daemon, one run.

Set-up: a private Mosquitto; one ``dockgate run`` process whose database is seeded with
bench/ingest.py's fleet (``--vehicles``, a third riding on open trips) and 16 stations (``LS01``
.. ``LS16``, 32 spots each, a docked vehicle, a rider and a paired card per spot), each with a
``broker`` reader (``R01`` .. ``R16``) whose taps arrive on ``dockgate/1/reader/Rxx/tap``.
Stations 1-8 serve the idle phase, 9-16 the load phase, so a spot is opened once in the run.

- The readers: one paho client (MQTT v5, QoS 1) in this process publishes each tap as a
  reader does (docs/mqtt-protocol.md "Reader taps", JSON written here, not by the gateway's
  encoder): the SUN URL of a simulated NTAG 424 DNA card (its own UID), ``seq``, ``ts``.
  Taps go out every ``--tap-interval-ms`` (20), round robin over the phase's 8 readers, open
  loop (a tap does not wait for the one before it).
- The stations: one paho client in its own process (as a station is its own device),
  subscribed to ``dockgate/1/station/+/cmd``, stamps each command's arrival, then answers
  as a station does: an ``ack`` (accepted) at once on the command's Response Topic with
  its Correlation Data, and for a command that moves something (``unlock-spot``,
  ``lock-spot``) its ``outcome`` (done) right after.
- The load: a flood process (started with the daemon, its backlog generated meanwhile) with
  a raw MQTT 3.1.1 socket publishes bench/system.py's realistic telemetry of the same fleet
  at QoS 1, keeping ``--load-depth`` messages (2,048: two of the daemon's 1,024-message
  batches) published and not yet committed: it polls the daemon's ``vehicle_clocks``
  (read-only SQLite, every 10 ms) for the newest report committed (reports are in time order,
  so that names how many are). So the daemon never waits for work: it ingests at its full
  rate. Taps begin once every vehicle of the fleet has been heard (the first reports' rule
  commands are journaled). The flood stops once every tap's unlock arrived, or ``hold_s``
  (3 s) after the last tap, whichever is first; unlocks that come later came only once the
  daemon caught up, and are counted apart (``unlocked_under_load``). The row says how far
  behind the daemon was when the last sample came (published, not yet committed: only if
  it came before the flood stopped) and its ingest rate over the taps' span, beside the
  drain rate of bench/ingest.py's rounds.

Figures, per phase (``idle``: no flood; ``load``), each over the phase's taps:

- ``tap_to_unlock_ms``: from the reader client's publish of a tap (``time.monotonic()`` just
  before the PUBLISH is handed to paho) to the arrival of that tap's ``unlock-spot`` at the
  station client (stamped first thing in its message callback): p50, p99, max. A tap at
  station S opens spot k for the k-th tap there (spots are chosen by battery, then number;
  all are equal), so each unlock is matched to its tap. Target p99 < 50 ms.
- ``command_rtt``: the daemon's own view, from its ``dockgate_command_ack_seconds`` histogram
  of ``unlock-spot`` in ``/metrics`` (read before and after the phase): from the command's
  first publish (``send_command`` called) to the ack read off the socket by the daemon's
  MQTT network thread. Exact mean (sum / count); p50 and p99 as the upper bound of the
  bucket they fall in (1, 2, 3, 4, 5, 7.5, 10, 25 ms, ...). Target p99 < 5 ms. Beside it, from
  outside, the station's share: its receipt of ``unlock-spot`` to its ack handed to paho.
- ``command_rtt_raw``: the round trip's baseline with no gateway in the path, same run: a
  paho client in its own process sends a ``station-feedback`` to station ``RAW`` every
  ``--tap-interval-ms`` while the phase's taps go out; the station process answers it on
  the client's Response Topic; from the client's publish (``time.perf_counter()`` just
  before) to the ack read in its callback: p50, p99, max. What the broker, the station and
  the machine's scheduling cost under the same load.
- ``verified_to_unlock``: the daemon's ``dockgate_tap_to_unlock_seconds`` (a tap verified ->
  its unlock handed to the MQTT driver), the same way: the part of the tap's time that is
  not the wait before the tap's batch.

All stamps in this process are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every
process of the machine).
"""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
import system as bench_system  # noqa: E402  (bench/system.py)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from dockgate.sim.ntag424 import card  # noqa: E402
from dockgate.sim.services import free_port  # noqa: E402
from dockgate.sim.services.mosquitto import Mosquitto  # noqa: E402

NET = bench_system.NET
STATIONS_PER_PHASE = 8
SPOTS = 32  # per station: one tap each
TAP_TARGET_P99_MS = 50.0
RTT_TARGET_P99_MS = 5.0
PHYSICAL = frozenset({"unlock-spot", "lock-spot"})
FLOOD_TICK_S = 0.01
ASSUMED_MAX_RATE = 20_000  # msg/s, to size the flood's backlog (the daemon drains ~15k)


@dataclass(frozen=True)
class Plan:
    """What the latency row runs: taps per phase, their pacing, the load's depth."""

    vehicles: int = 5000
    taps: int = STATIONS_PER_PHASE * SPOTS
    tap_interval_s: float = 0.02
    load_depth: int = 2048
    hold_s: float = 3.0  # how long the load holds after the last tap, at most
    profile: Path | None = None  # py-spy of the daemon during the load phase

    def stations(self, phase: str) -> list[int]:
        first = 1 if phase == "idle" else STATIONS_PER_PHASE + 1
        return list(range(first, first + STATIONS_PER_PHASE))

    def flood_supply(self) -> int:
        """Enough reports for the load phase at the fastest rate the daemon could reach."""
        seconds = 2.0 + self.taps * self.tap_interval_s + self.hold_s + 3.0
        return int(ASSUMED_MAX_RATE * seconds)


def device_of(sid: int) -> str:
    return f"LS{sid:02d}"


def reader_of(sid: int) -> str:
    return f"R{sid:02d}"


def uid_of(sid: int, spot: int) -> bytes:
    return bytes([0x04, 0x1A, 0x7E, sid, 0, spot >> 8, spot & 0xFF])


def tap_vehicle(sid: int, spot: int) -> int:
    return 100_000 + sid * 100 + spot


# -- the site ---------------------------------------------------------------------------------
def seed(db_path: Path, vehicles: int) -> None:
    """The fleet the flood reports for, and per station its spots, vehicles, riders, cards."""

    def build(store: Any) -> None:
        bench_system.seed_fleet(store, vehicles)
        store.topology.upsert_cluster(NET, NET, "latency bench", *bench_system.SITE)
        for sid in range(1, 2 * STATIONS_PER_PHASE + 1):
            store.topology.upsert_station(
                sid, NET, device_of(sid), *bench_system.SITE, badge_reader=True
            )
            for n in range(1, SPOTS + 1):
                vid = tap_vehicle(sid, n)
                store.topology.upsert_spot(sid * 1000 + n, sid, n)
                store.vehicles.upsert(vid, NET, f"TAP{vid:06d}", battery=90)
                store.vehicles.dock(vid, sid * 1000 + n)
                store.riders.upsert(vid, credit=1_000_000, first_purchase_done=True)
                product = store.products.create(f"card {vid}")
                store.records.create(product, uid=uid_of(sid, n).hex(), token_encryption="aes-128")
                store.products.pair(product, vid)

    bench_system.seed_store(db_path, build)


def write_config(workdir: Path, broker_port: int, api_port: int) -> Path:
    sids = range(1, 2 * STATIONS_PER_PHASE + 1)
    path = bench_system.write_config(
        workdir,
        broker_port,
        api_port,
        client_id="ingest-latency",
        stations=[(sid, device_of(sid), SPOTS) for sid in sids],
    )
    lines = []
    for sid in sids:
        lines += ["[[readers]]", f'id = "{reader_of(sid)}"', 'driver = "broker"']
        lines += [f"station_id = {sid}"]
    with path.open("a") as config:
        config.write("\n".join(lines) + "\n")
    return path


def sun_urls(stations: list[int]) -> dict[tuple[int, int], str]:
    """Each card's first SUN URL (the reader's NDEF read happens before the window)."""
    keys = {"meta_read_key": bench_system.META, "file_read_key": bench_system.FILE}
    return {
        (sid, n): card(uid_of(sid, n), **keys).source.next_url()
        for sid in stations
        for n in range(1, SPOTS + 1)
    }


# -- the MQTT clients in this process -----------------------------------------------------------
def _client(client_id: str, port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_socket_open = lambda c, u, sock: sock.setsockopt(6, 1, 1)  # TCP_NODELAY
    client.max_inflight_messages_set(1000)
    return client


@dataclass
class Received:
    """A command as the station client got it, and when its ack was handed to paho."""

    device: str
    cmd: str
    body: dict[str, Any]
    at: float
    acked_at: float = 0.0


class Stations:
    """The stations: one paho client in its own process (a station is its own device, and
    this process's reader client and waits would otherwise share its interpreter lock),
    answering every station's commands as the protocol says. Each command comes back up a
    pipe with its arrival stamp (``unlocks``: (device, spot) -> first unlock-spot)."""

    def __init__(self, port: int) -> None:
        self.unlocks: dict[tuple[str, int], Received] = {}
        self.commands: list[Received] = []
        self.cond = threading.Condition()
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=False)
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=stations_main, args=(child, port, self.stop), daemon=True)
        self.proc.start()
        if not self.conn.poll(30) or self.conn.recv() != "subscribed":
            raise RuntimeError("the station client could not subscribe")
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                got = Received(*self.conn.recv())
                with self.cond:
                    self.commands.append(got)
                    if got.cmd == "unlock-spot":
                        self.unlocks.setdefault((got.device, int(got.body["spot"])), got)
                    self.cond.notify_all()

    def wait_unlocks(self, keys: list[tuple[str, int]], timeout: float) -> dict[Any, Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.unlocks for k in keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return {k: self.unlocks[k] for k in keys if k in self.unlocks}

    def refusals(self, devices: set[str]) -> int:
        """``station-feedback`` refusals the daemon sent these stations (a tap refused)."""
        with self.cond:
            return sum(
                1
                for c in self.commands
                if c.device in devices
                and c.cmd == "station-feedback"
                and c.body.get("result") == "refused"
            )

    def close(self) -> None:
        self.stop.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def stations_main(conn: Connection, port: int, stop: Any) -> None:
    """The station process: answer each command, then send it up ``conn`` (after the
    replies are handed to paho, so the pipe never delays them)."""
    client = _client("latency-bench-stations", port)

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        at = time.monotonic()
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        device, cmd = msg.topic.split("/")[3], str(body.get("cmd"))
        acked_at = _answer(client, msg, device, cmd, body)
        conn.send((device, cmd, body, at, acked_at))

    client.on_message = on_message
    client.on_subscribe = lambda *a: conn.send("subscribed")
    client.connect("127.0.0.1", port)
    client.subscribe(f"dockgate/{NET}/station/+/cmd", qos=1)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


def _answer(
    client: paho.Client, msg: paho.MQTTMessage, device: str, cmd: str, body: dict[str, Any]
) -> float:
    """An ack at once; the outcome of a command that moves something right after. Returns
    the moment the ack was handed to paho."""
    props = Properties(PacketTypes.PUBLISH)
    correlation = getattr(msg.properties, "CorrelationData", None)
    if correlation is not None:
        props.CorrelationData = correlation
    topic = getattr(msg.properties, "ResponseTopic", None) or msg.topic[:-3] + "reply"
    base = {"v": 1, "device_id": device, "cmd_id": body.get("cmd_id")}
    ack = {**base, "ts": time.time_ns() // 1_000_000, "phase": "ack", "status": "accepted"}
    client.publish(topic, orjson.dumps(ack), qos=1, properties=props)
    acked_at = time.monotonic()
    if cmd in PHYSICAL:
        done = {**base, "ts": time.time_ns() // 1_000_000, "phase": "outcome"}
        done["status"] = "done"
        client.publish(topic, orjson.dumps(done), qos=1, properties=props)
    return acked_at


class RawPair:
    """The command round trip's same-run baseline, with no gateway in the path: a paho
    client in its own process sends a ``station-feedback`` to station ``RAW`` (the same
    station process answers it, on this client's Response Topic) every ``interval_s`` while
    the phase runs, and times each from its publish to the ack read in its callback."""

    def __init__(self, port: int, interval_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=False)
        self.go, self.stop_sending = ctx.Event(), ctx.Event()
        args = (child, port, interval_s, self.go, self.stop_sending)
        self.proc = ctx.Process(target=raw_pair_main, args=args, daemon=True)
        self.proc.start()
        if not self.conn.poll(30) or self.conn.recv() != "subscribed":
            raise RuntimeError("the raw round-trip client could not subscribe")

    def start(self) -> None:
        self.stop_sending.clear()
        self.go.set()

    def stop(self) -> list[float]:
        """Stop sending; the round trips (ms) since ``start``."""
        self.go.clear()
        self.stop_sending.set()
        samples: list[float] = self.conn.recv() if self.conn.poll(10) else []
        return samples

    def close(self) -> None:
        self.proc.kill()
        self.proc.join(5)


def raw_pair_main(conn: Connection, port: int, interval_s: float, go: Any, stop: Any) -> None:
    """The raw round-trip process: rounds of commands, each round's round trips sent up
    ``conn`` when ``stop`` is set."""
    client = _client("latency-bench-raw", port)
    sent: dict[bytes, float] = {}
    rtts: list[float] = []

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        at = time.perf_counter()
        started = sent.pop(getattr(msg.properties, "CorrelationData", b""), None)
        if started is not None:
            rtts.append((at - started) * 1e3)

    client.on_message = on_message
    client.on_subscribe = lambda *a: conn.send("subscribed")
    client.connect("127.0.0.1", port)
    client.subscribe("latency-bench/raw/reply", qos=1)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "latency-bench/raw/reply"
    n = 0
    while True:
        go.wait()
        rtts.clear()
        while not stop.wait(interval_s):
            n += 1
            cmd_id = f"raw-{n}"
            props.CorrelationData = cmd_id.encode()
            body = {"v": 1, "cmd": "station-feedback", "cmd_id": cmd_id, "result": "accepted"}
            sent[props.CorrelationData] = time.perf_counter()
            client.publish(
                f"dockgate/{NET}/station/RAW/cmd", orjson.dumps(body), qos=1, properties=props
            )
        time.sleep(0.05)  # the last replies
        conn.send(list(rtts))
        sent.clear()
        while go.is_set():
            time.sleep(0.01)


class Readers:
    """One paho client publishing every reader's taps (the reader side holds no key)."""

    def __init__(self, port: int) -> None:
        self.client = _client("latency-bench-readers", port)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("the reader client could not connect")
        self.seq: dict[str, int] = {}

    def tap(self, reader: str, url: str, uid: bytes) -> float:
        """Publish one tap; returns the moment it was handed to paho."""
        seq = self.seq[reader] = self.seq.get(reader, 0) + 1
        body = {
            "v": 1,
            "ts": time.time_ns() // 1_000_000,
            "device_id": reader,
            "seq": seq,
            "url": url,
            "uid": uid.hex(),
            "read_ms": 25,
        }
        payload = orjson.dumps(body)
        at = time.monotonic()
        self.client.publish(f"dockgate/{NET}/reader/{reader}/tap", payload, qos=1)
        return at

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the flood (its own process) ----------------------------------------------------------------
def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def mqtt_connect(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keep-alive 600 s."""
    body = _string(b"MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big")
    body += _string(client_id.encode())
    return b"\x10" + _varlen(len(body)) + body


def mqtt_publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    """MQTT 3.1.1 PUBLISH at QoS 1."""
    body = _string(topic.encode()) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varlen(len(body)) + body


@dataclass
class FloodSignals:
    ready: Any  # the backlog is generated
    go: Any  # start publishing
    loaded: Any  # every vehicle heard once: the steady load
    stop: Any


def flood_main(
    conn: Connection, port: int, db_path: str, vehicles: int, supply: int, depth: int, sig: Any
) -> None:
    """Keep ``depth`` reports published and not yet committed until told to stop; send back
    the series ``(monotonic, published, committed)``, one row per tick."""
    msgs = bench_system.telemetry(vehicles, supply)
    stamps = [orjson.loads(payload)["ts"] for _, payload in msgs]
    packets = [mqtt_publish(t, p, i % 65535 + 1) for i, (t, p) in enumerate(msgs)]
    del msgs
    sig.ready.set()
    sig.go.wait()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt_connect("ingest-latency-flood"))
    if sock.recv(4)[:1] != b"\x20":
        raise RuntimeError("the flood's CONNECT was refused")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    series: list[tuple[float, int, int]] = []
    published = 0
    while not sig.stop.is_set():
        newest = db.execute("SELECT max(report_ts) FROM vehicle_clocks").fetchone()[0]
        committed = bisect.bisect_right(stamps, newest) if newest is not None else 0
        upto = min(supply, committed + depth)
        if upto > published:
            sock.sendall(b"".join(packets[published:upto]))
            published = upto
        _drain(sock)
        series.append((time.monotonic(), published, committed))
        if committed >= vehicles:
            sig.loaded.set()
        if committed >= supply:
            break  # ran dry: the row reports the daemon as caught up
        sig.stop.wait(FLOOD_TICK_S)
    sock.sendall(b"\xe0\x00")
    sock.close()
    db.close()
    conn.send(series)
    conn.close()


def _drain(sock: socket.socket) -> None:
    """Read the PUBACKs that came in (nothing else is done with them)."""
    with contextlib.suppress(BlockingIOError):
        while sock.recv(1 << 16, socket.MSG_DONTWAIT):
            pass


class Flood:
    """The flood process: its backlog is generated while the daemon starts."""

    def __init__(self, port: int, db_path: Path, plan: Plan) -> None:
        ctx = mp.get_context("spawn")
        self.sig = FloodSignals(ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event())
        self.conn, child = ctx.Pipe(duplex=False)
        self.supply = plan.flood_supply()
        args = (child, port, str(db_path), plan.vehicles, self.supply, plan.load_depth, self.sig)
        self.proc = ctx.Process(target=flood_main, args=args, daemon=True)
        self.proc.start()

    def start(self, timeout: float = 60.0) -> None:
        """Begin the load; returns once every vehicle was heard (the steady state)."""
        if not self.sig.ready.wait(timeout):
            raise RuntimeError("the flood's backlog was not ready")
        self.sig.go.set()
        if not self.sig.loaded.wait(timeout):
            raise RuntimeError("the daemon did not take the flood's first reports")

    def stop(self) -> list[tuple[float, int, int]]:
        self.sig.stop.set()
        series: list[tuple[float, int, int]] = self.conn.recv() if self.conn.poll(30) else []
        self.proc.join(10)
        return series

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# -- the daemon's view ----------------------------------------------------------------------------
@dataclass
class Histogram:
    """Cumulative bucket counts (upper bound -> count), sum and count of one series."""

    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def minus(self, before: Histogram) -> Histogram:
        return Histogram(
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.total - before.total,
            self.count - before.count,
        )

    def bound_ms(self, q: float) -> float:
        """The upper bound (ms) of the bucket the ``q`` quantile falls in."""
        want = q * self.count
        for le, n in sorted(self.buckets.items()):
            if n >= want and n > 0:
                return le * 1e3
        return float("nan")

    def figures(self) -> dict[str, float]:
        finite = [le for le in self.buckets if le != float("inf")]
        return {
            "n": self.count,
            "ms_top_bound": max(finite, default=0.0) * 1e3,
            "ms_mean": self.total / self.count * 1e3 if self.count else float("nan"),
            "ms_p50_le": self.bound_ms(0.5),
            "ms_p99_le": self.bound_ms(0.99),
        }


def daemon_histograms(api_port: int) -> dict[str, Histogram]:
    """``unlock-spot``'s ack latency and the tap -> unlock histogram from ``/metrics``."""
    response = httpx.get(
        f"http://127.0.0.1:{api_port}/metrics",
        headers={"Authorization": f"Bearer {bench_system.TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    out = {"ack": Histogram(), "tap": Histogram()}
    for family in text_string_to_metric_families(response.text):
        if family.name == "dockgate_command_ack_seconds":
            key = "ack"
        elif family.name == "dockgate_tap_to_unlock_seconds":
            key = "tap"
        else:
            continue
        for sample in family.samples:
            if key == "ack" and sample.labels.get("cmd") != "unlock-spot":
                continue
            _add_sample(out[key], sample.name, sample.labels, sample.value)
    return out


def _add_sample(h: Histogram, name: str, labels: dict[str, str], value: float) -> None:
    if name.endswith("_bucket"):
        h.buckets[float(labels["le"])] = value
    elif name.endswith("_sum"):
        h.total = value
    elif name.endswith("_count"):
        h.count = value


def wait_histograms(api_port: int, before: dict[str, Histogram], n: int) -> dict[str, Histogram]:
    """The phase's share of the histograms once its ``n`` commands are counted (a command is
    counted when it settles: after its outcome)."""
    deadline = time.monotonic() + 15
    while True:
        now = daemon_histograms(api_port)
        delta = {k: now[k].minus(before[k]) for k in now}
        if delta["ack"].count >= n or time.monotonic() > deadline:
            return delta
        time.sleep(0.1)


# -- one phase ------------------------------------------------------------------------------------
Row = tuple[float, int, int]  # the flood's (monotonic, published, committed)


def pct(values: list[float], q: float) -> float:
    return bench_system.pct(values, q)


def _at(series: list[Row], t: float) -> Row | None:
    """The flood's last row at or before ``t``."""
    i = bisect.bisect_right(series, (t, sys.maxsize, sys.maxsize)) - 1
    return series[i] if i >= 0 else None


def _after(series: list[Row], t: float) -> Row | None:
    """The flood's first row at or after ``t``."""
    i = bisect.bisect_left(series, (t, -1, -1))
    return series[i] if i < len(series) else None


@dataclass
class LoadWindow:
    """What the flood did while the load phase's taps were out."""

    series: list[Row]
    stopped_at: float
    supply: int
    depth: int

    def ended_at(self) -> float:
        """When the load ended: the flood stopped, or the daemon took its last report."""
        dry = next((r[0] for r in self.series if r[2] >= self.supply), self.stopped_at)
        return min(dry, self.stopped_at)


def load_figures(w: LoadWindow, sent: list[float], arrivals: list[float]) -> dict[str, Any]:
    """How far behind the daemon was: at each tap's publish, and when the last sample came.

    ``ahead``: reports published and not yet committed at the flood's last tick before the
    tap; ``behind_at_last_sample``: the same at its first tick after the last unlock."""
    ahead = [float(r[1] - r[2]) for r in (_at(w.series, t) for t in sent) if r is not None]
    ended = w.ended_at()
    last = max(arrivals, default=ended)
    under_load = last < ended
    after = _after(w.series, last) if under_load else None
    behind = after[1] - after[2] if after is not None else 0
    first, end = _at(w.series, sent[0]), _at(w.series, min(last, ended))
    span = (end[0] - first[0]) if first and end else 0.0
    return {
        "depth_target": w.depth,
        "ahead_of_tap_p50": pct(ahead, 0.5),
        "ahead_of_tap_max": max(ahead, default=0.0),
        "flood_stopped_after_last_tap_s": ended - sent[-1],
        "unlocked_under_load": sum(1 for a in arrivals if a < ended),
        "last_sample_under_load": under_load,
        "behind_at_last_sample": behind,
        "still_behind_at_last_sample": under_load and behind > 0,
        "ingest_rate_during_taps": (end[2] - first[2]) / span if first and end and span else 0.0,
        "flood_published": w.series[-1][1] if w.series else 0,
        "flood_supply": w.supply,
    }


@dataclass
class Session:
    """The parts a phase uses."""

    plan: Plan
    api_port: int
    daemon_pid: int
    stations: Stations
    readers: Readers
    raw: RawPair
    urls: dict[tuple[int, int], str]


def run_taps(s: Session, phase: str) -> tuple[list[tuple[str, int]], list[float]]:
    """Publish the phase's taps, paced, round robin over its readers."""
    sids = s.plan.stations(phase)
    keys: list[tuple[str, int]] = []
    sent: list[float] = []
    t0 = time.monotonic()
    for i in range(s.plan.taps):
        sid, spot = sids[i % len(sids)], i // len(sids) + 1
        delay = t0 + i * s.plan.tap_interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent.append(s.readers.tap(reader_of(sid), s.urls[sid, spot], uid_of(sid, spot)))
        keys.append((device_of(sid), spot))
    return keys, sent


def tap_figures(
    s: Session, keys: list[tuple[str, int]], sent: list[float], got: dict[Any, Received]
) -> dict[str, Any]:
    samples = [(got[k].at - t) * 1e3 for k, t in zip(keys, sent, strict=True) if k in got]
    turnaround = [(g.acked_at - g.at) * 1e3 for g in got.values()]
    return {
        "taps": len(keys),
        "unlocked": len(got),
        "refused": s.stations.refusals({k[0] for k in keys}),
        "tap_to_unlock_ms_p50": pct(samples, 0.5),
        "tap_to_unlock_ms_p99": pct(samples, 0.99),
        "tap_to_unlock_ms_max": max(samples, default=float("nan")),
        "tap_to_unlock_ms_mean": statistics.mean(samples) if samples else float("nan"),
        "station_turnaround_ms_p50": pct(turnaround, 0.5),
        "station_turnaround_ms_p99": pct(turnaround, 0.99),
    }


def idle_phase(s: Session) -> dict[str, Any]:
    """The taps with nothing else to do for the daemon."""
    before = daemon_histograms(s.api_port)
    s.raw.start()
    keys, sent = run_taps(s, "idle")
    got = s.stations.wait_unlocks(keys, timeout=30)
    raw = s.raw.stop()
    delta = wait_histograms(s.api_port, before, len(got))
    return {
        **tap_figures(s, keys, sent, got),
        "command_rtt_daemon": delta["ack"].figures(),
        "command_rtt_raw": raw_figures(raw),
        "verified_to_unlock_daemon": delta["tap"].figures(),
        "load_average": os.getloadavg(),
    }


def load_phase(s: Session, flood: Flood) -> dict[str, Any]:
    """The taps while the flood holds the daemon behind; the flood stops once every unlock
    came, or ``hold_s`` after the last tap (then the rest come once the daemon caught up)."""
    before = daemon_histograms(s.api_port)
    flood.start()
    spy = start_spy(s.plan.profile, s.daemon_pid)
    s.raw.start()
    keys, sent = run_taps(s, "load")
    s.stations.wait_unlocks(keys, timeout=max(0.0, sent[-1] + s.plan.hold_s - time.monotonic()))
    raw = s.raw.stop()
    time.sleep(3 * FLOOD_TICK_S)  # a row of the flood's after the last sample
    stopped_at = time.monotonic()
    window = LoadWindow(flood.stop(), stopped_at, flood.supply, s.plan.load_depth)
    stop_spy(spy)
    got = s.stations.wait_unlocks(keys, timeout=30)
    delta = wait_histograms(s.api_port, before, len(got))
    return {
        **tap_figures(s, keys, sent, got),
        "command_rtt_daemon": delta["ack"].figures(),
        "command_rtt_raw": raw_figures(raw),
        "verified_to_unlock_daemon": delta["tap"].figures(),
        "load": load_figures(window, sent, [g.at for g in got.values()]),
        "load_average": os.getloadavg(),
    }


def raw_figures(rtts: list[float]) -> dict[str, float]:
    """The raw pair's round trips (ms): how many, p50, p99, max."""
    if not rtts:
        return {"n": 0}
    return {
        "n": len(rtts),
        "ms_p50": pct(rtts, 0.5),
        "ms_p99": pct(rtts, 0.99),
        "ms_max": max(rtts),
    }


def start_spy(profile: Path | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy (every thread, only samples holding the GIL) of the daemon during the load;
    ``--nonblocking``: a paused daemon would let its queue run dry and the unlocks out."""
    if profile is None:
        return None
    spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--threads", "--gil"]
    spy += ["--nonblocking", "--format", "raw", "-r", "250", "-o", str(profile)]
    return subprocess.Popen([*spy, "--pid", str(pid)], stdout=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        spy.wait(60)


# -- the row --------------------------------------------------------------------------------------
@contextlib.contextmanager
def daemon_at(workdir: Path, port: int) -> Iterator[bench_system.DaemonProcess]:
    api = free_port()
    daemon = bench_system.DaemonProcess(write_config(workdir, port, api), api, workdir / "log")
    daemon.start()
    try:
        daemon.wait_health()
        deadline = time.monotonic() + 20
        while not daemon.get("/health")["data"]["broker"]["connected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not connect to the broker")
            time.sleep(0.05)
        yield daemon
    finally:
        daemon.stop()


def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    """The idle phase, then the load phase, on one daemon."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "state" / "dockgate.sqlite3"
    with Mosquitto(persistence=False) as broker:
        flood = Flood(broker.port, db_path, plan)
        try:
            seed(db_path, plan.vehicles)
            urls = sun_urls(plan.stations("idle") + plan.stations("load"))
            with daemon_at(workdir, broker.port) as daemon:
                stations, readers = Stations(broker.port), Readers(broker.port)
                raw = RawPair(broker.port, plan.tap_interval_s)
                assert daemon.proc is not None
                s = Session(plan, daemon.api_port, daemon.proc.pid, stations, readers, raw, urls)
                try:
                    flood.sig.ready.wait(120)
                    idle = idle_phase(s)
                    load = load_phase(s, flood)
                finally:
                    raw.close()
                    readers.close()
                    stations.close()
                alive = daemon.proc.poll() is None
        finally:
            flood.kill()
    return {
        "taps_per_phase": plan.taps,
        "tap_interval_ms": plan.tap_interval_s * 1e3,
        "vehicles": plan.vehicles,
        "idle": idle,
        "load": load,
        "daemon_alive": alive,
        **verdicts(plan, load),
    }


def verdicts(plan: Plan, load: dict[str, Any]) -> dict[str, Any]:
    """A target is met only by samples taken while the daemon was behind (at full rate)."""
    window = load["load"]
    held = window["unlocked_under_load"] == plan.taps and window["still_behind_at_last_sample"]
    rtt = load["command_rtt_daemon"]
    return {
        "tap_target_p99_ms": TAP_TARGET_P99_MS,
        "rtt_target_p99_ms": RTT_TARGET_P99_MS,
        "tap_meets_target": held and load["tap_to_unlock_ms_p99"] < TAP_TARGET_P99_MS,
        "rtt_meets_target": held and rtt["ms_p99_le"] <= RTT_TARGET_P99_MS,
    }


# -- the text -------------------------------------------------------------------------------------
def _ms3(d: dict[str, Any], key: str) -> str:
    return f"p50 {d[key + '_p50']:.1f} / p99 {d[key + '_p99']:.1f} / max {d[key + '_max']:.1f} ms"


def _le(h: dict[str, float], key: str) -> str:
    bound = h[key]
    return f"> {h['ms_top_bound']:g}" if bound == float("inf") else f"<= {bound:g}"


def _hist(h: dict[str, float]) -> str:
    return f"mean {h['ms_mean']:.1f}, p50 {_le(h, 'ms_p50_le')}, p99 {_le(h, 'ms_p99_le')} ms"


def _behind(w: dict[str, Any]) -> str:
    if w["still_behind_at_last_sample"]:
        return f"yes: {w['behind_at_last_sample']:,} reports published and not yet committed"
    if not w["last_sample_under_load"]:
        return "NO: the last unlock came after the flood had stopped"
    return "NO: the daemon had caught up (the flood ran dry)"


def _raw(r: dict[str, float]) -> str:
    if not r["n"]:
        return "no samples"
    return f"p50 {r['ms_p50']:.1f} / p99 {r['ms_p99']:.1f} / max {r['ms_max']:.1f} ms"


def _raw_p99(r: dict[str, float]) -> str:
    return f"{r['ms_p99']:.1f} ms" if r["n"] else "no samples"


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _p2(d: dict[str, Any], key: str) -> str:
    return f"p50 {d[key + '_p50']:.2f} / p99 {d[key + '_p99']:.2f} ms"


def render(f: dict[str, Any], drain_rate: float | None = None) -> list[str]:
    """The row as text lines: idle beside full ingest, then how the load held."""
    idle, load, w = f["idle"], f["load"], f["load"]["load"]
    rows = [
        (
            "tap -> unlock-spot at the station",
            _ms3(idle, "tap_to_unlock_ms"),
            _ms3(load, "tap_to_unlock_ms"),
        ),
        (
            "command RTT (daemon's histogram)",
            _hist(idle["command_rtt_daemon"]),
            _hist(load["command_rtt_daemon"]),
        ),
        (
            "  raw paho pair (no gateway)",
            _raw(idle["command_rtt_raw"]),
            _raw(load["command_rtt_raw"]),
        ),
        (
            "  station: unlock-spot -> its ack",
            _p2(idle, "station_turnaround_ms"),
            _p2(load, "station_turnaround_ms"),
        ),
        (
            "  verified -> unlock to the driver",
            _hist(idle["verified_to_unlock_daemon"]),
            _hist(load["verified_to_unlock_daemon"]),
        ),
    ]
    width = max(len(r[1]) for r in rows)
    out = [
        f"latency, {f['taps_per_phase']} taps per phase (one every {f['tap_interval_ms']:.0f} ms), "
        f"idle vs. full ingest ({w['depth_target']:,} reports kept ahead of the daemon, "
        f"{f['vehicles']:,} vehicles):",
        f"  {'':36}{'idle'.ljust(width)}  full ingest",
    ]
    out += [f"  {a:36}{b.ljust(width)}  {c}" for a, b, c in rows]
    rate = f"{w['ingest_rate_during_taps']:,.0f} msg/s"
    loads = "load average {:.2f} idle, {:.2f} loaded".format(
        idle["load_average"][0], load["load_average"][0]
    )
    if drain_rate:
        rate += f" (the rounds' drain after the first commit: {drain_rate:,.0f} msg/s)"
    out += [
        f"  unlocked while the load held: {w['unlocked_under_load']}/{load['taps']} (flood stopped "
        f"{w['flood_stopped_after_last_tap_s']:.1f} s after the last tap); refused "
        f"{idle['refused']} idle, {load['refused']} loaded",
        f"  daemon behind when the last sample was taken: {_behind(w)}",
        f"  daemon ingest while the taps went out: {rate}; {loads}",
        f"  tap p99 < {f['tap_target_p99_ms']:.0f} ms under load: "
        f"{_verdict(f['tap_meets_target'])}; command RTT p99 < {f['rtt_target_p99_ms']:.0f} ms "
        "under load: "
        f"{_verdict(f['rtt_meets_target'])} (the raw pair's p99 under the same load: "
        f"{_raw_p99(load['command_rtt_raw'])})",
    ]
    return out
