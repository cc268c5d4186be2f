"""Ingest benchmark of the real process: ``dockgate run`` drains a QoS 1 backlog, beside two
subscribers that only receive, on the same broker, the same backlog, alternated round by round.

The backlog (default 30,000 telemetry reports from 5,000 vehicles, bench/system.py's
realistic fleet: one in three riding on an open trip, the rest parked with GPS noise, device
``ts`` increasing per vehicle) is published at QoS 1 while the subscriber is away, into the
persistent session it created beforehand (its subscriptions exist; the broker queues for it).
Each subscriber is then started and timed:

- ``daemon``: from the moment ``python -m dockgate.gateway.cli run`` is spawned (interpreter
  start, imports, store open, recovery, connect and all: what a user waits for) until every
  vehicle's last report is committed and visible: a read-only SQLite connection polls
  ``vehicle_clocks`` until each vehicle's ``report_ts`` equals the ``ts`` of its last report.
  CPU per message is the process's user+system CPU time at that moment divided by the
  messages (``cpu_ms_per_msg_incl_startup``), and the same less the CPU the same daemon spent
  starting to ``/health`` with nothing queued (``cpu_ms_per_msg``). Peak RSS is ``VmHWM``.
  ``first_commit_s``: process start -> the first vehicle's report visible (start-up share).
- ``raw_paho``: a paho callback subscriber that only counts (bench/paho_count.py), as its own
  process, from spawn to its exit after the N-th message: the daemon's starting line.
- ``mosquitto_sub``: ``mosquitto_sub -c -i ID -q 1 -C N`` (output to /dev/null), from spawning
  the process to its exit after the N-th message.

Every subscriber's session is ended after its round, so later backlogs are not queued for it.
The figures are the medians of ``--rounds`` alternated rounds (a busy machine slows all
alike); the load average is printed with them.

Then, in the same run, the latency row (bench/ingest_latency.py; ``latency`` in the JSON): one
more ``dockgate run`` with the same fleet and 16 stations whose ``broker`` readers' taps a
paho reader client publishes, and a paho station client that acks every command; 256 taps
(one every 20 ms) with the daemon idle, then 256 more while a flood process keeps 2,048 of the
fleet's QoS 1 reports published and not yet committed, so the daemon ingests at its full rate.

- ``tap_to_unlock_ms``: from the reader client handing a tap's PUBLISH to paho to the
  station client receiving that tap's ``unlock-spot`` (p50, p99, max; target p99 < 50 ms).
- ``command_rtt_daemon``: the daemon's own ``dockgate_command_ack_seconds`` histogram of
  ``unlock-spot`` (``/metrics`` before and after the phase), from ``send_command`` publishing
  the command to the ack handed back to it on the event loop: exact mean, p50 and p99 as the
  bucket bound they fall under (target p99 < 5 ms); ``station_turnaround_ms``, from outside,
  is the station client's share: the command's arrival to its ack handed to paho.
- ``verified_to_unlock_daemon``: the daemon's ``dockgate_tap_to_unlock_seconds``, from the
  tap verified in its batch to the unlock handed to the MQTT driver.
- ``load``: the reports ahead of each tap at its publish, how many unlocks arrived while the
  flood ran (it stops once all did, or ``--load-hold`` s after the last tap), whether the
  daemon was still behind (reports published, not committed) when the last sample came,
  and its ingest rate over the taps' span, by its committed ``vehicle_clocks``.

    .venv/bin/python bench/ingest.py                 # 30,000 msgs, 5,000 vehicles, 3 rounds
    .venv/bin/python bench/ingest.py --json
    .venv/bin/python bench/ingest.py --rounds 1 --keep   # keep the daemon's state and logs
    .venv/bin/python bench/ingest.py --only latency --profile /tmp/load.txt  # py-spy, load phase
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import ingest_latency  # noqa: E402  (bench/ingest_latency.py: the latency row)
import mqtt as bench_mqtt  # noqa: E402  (bench/mqtt.py)
import orjson  # noqa: E402
import psutil  # noqa: E402
import rules as bench_rules  # noqa: E402  (bench/rules.py)
import system as bench_system  # noqa: E402  (bench/system.py)

from dockgate.sim.services import free_port  # noqa: E402
from dockgate.sim.services.mosquitto import Mosquitto  # noqa: E402

TOPICS = "dockgate/+/+/+/telemetry"
POLL_S = 0.005


@dataclass(frozen=True)
class Backlog:
    """The messages, and each vehicle's last report ``ts`` by vehicle id (seed_fleet's ids)."""

    msgs: list[tuple[str, bytes]]
    last_ts: dict[int, int]
    sentinel: int  # the vehicle of the last message published

    @classmethod
    def build(cls, vehicles: int, messages: int) -> Backlog:
        msgs = bench_system.telemetry(vehicles, messages)
        last_ts: dict[int, int] = {}
        vid = 0
        for _, payload in msgs:
            body = orjson.loads(payload)
            vid = int(body["device_id"][3:]) + 1  # serial(v) = SXB{v:05d}, id v + 1
            last_ts[vid] = body["ts"]
        return cls(msgs, last_ts, vid)


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ClockWatch:
    """Read-only view of the daemon's ``vehicle_clocks``: which last reports are committed.

    ``conn`` is a DB-API connection with ``execute`` (sqlite3, or psycopg in autocommit for
    bench/failover.py), ``marker`` its parameter placeholder."""

    def __init__(self, conn: Any, backlog: Backlog, marker: str = "?") -> None:
        self.conn = conn
        self.backlog = backlog
        self.marker = marker

    @classmethod
    def sqlite(cls, db_path: Path, backlog: Backlog) -> ClockWatch:
        return cls(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5), backlog)

    def any_applied(self) -> bool:
        return self.conn.execute("SELECT 1 FROM vehicle_clocks LIMIT 1").fetchone() is not None

    def sentinel_done(self) -> bool:
        want = self.backlog.last_ts[self.backlog.sentinel]
        row = self.conn.execute(
            f"SELECT report_ts FROM vehicle_clocks WHERE vehicle_id = {self.marker}",
            (self.backlog.sentinel,),
        ).fetchone()
        return row is not None and row[0] == want

    def missing(self) -> int:
        """Vehicles whose last report is not (yet) the state committed."""
        got = dict(self.conn.execute("SELECT vehicle_id, report_ts FROM vehicle_clocks"))
        return sum(1 for vid, ts in self.backlog.last_ts.items() if got.get(vid) != ts)

    def close(self) -> None:
        self.conn.close()


class ProfiledDaemon(bench_system.DaemonProcess):
    """The daemon under ``cProfile`` (``profile`` ends in ``.prof``) or watched by py-spy
    (collapsed stacks of whichever thread holds the GIL, so samples are CPU the interpreter
    spent, not threads waiting for it), written to ``profile`` when it stops."""

    profile: Path | None = None
    spy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.profile is None or self.profile.suffix != ".prof":
            super().start()
            if self.profile is not None:  # py-spy (the GIL holder), collapsed stacks
                spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--threads", "--gil"]
                spy += ["--format", "raw", "-r", "250", "-o", str(self.profile)]
                self.spy = subprocess.Popen(
                    [*spy, "--pid", str(self.proc.pid)], stdout=subprocess.DEVNULL
                )
            return
        self.started_at = time.monotonic()
        cmd = ["-m", "cProfile", "-o", str(self.profile), "-m", "dockgate.gateway.cli"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *cmd, "run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=bench_system.ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )


def start_daemon(workdir: Path, port: int, cid: str, bundle: Path | None) -> ProfiledDaemon:
    api = free_port()
    config = bench_system.write_config(workdir, port, api, client_id=cid, bundle=bundle)
    return ProfiledDaemon(config, api, workdir / "daemon.log")


def daemon_round(
    port: int,
    backlog: Backlog,
    vehicles: int,
    workdir: Path,
    cid: str,
    bundle: Path | None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Session first (start to /health, SIGTERM), backlog queued, then the timed drain."""
    workdir.mkdir(parents=True)
    db_path = workdir / "state" / "dockgate.sqlite3"
    bench_system.seed_store(db_path, lambda store: bench_system.seed_fleet(store, vehicles))
    daemon = start_daemon(workdir, port, cid, bundle)
    daemon.start()
    try:
        daemon.wait_health()
        idle_cpu = cpu_s(psutil.Process(daemon.proc.pid))
    finally:
        daemon.stop()
    bench_mqtt.publish_all(port, backlog.msgs)
    n = len(backlog.msgs)
    watch = ClockWatch.sqlite(db_path, backlog)
    daemon.profile = profile
    daemon.start()  # daemon.started_at: the starting line
    proc = psutil.Process(daemon.proc.pid)
    first = done = None
    missing, total_cpu, peak = n, float("nan"), float("nan")
    try:
        deadline = daemon.started_at + 300
        while time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {daemon.log.read_text()[-1500:]}")
            if first is None and watch.any_applied():
                first = time.monotonic()
            if watch.sentinel_done():
                missing = watch.missing()
                if not missing:
                    done = time.monotonic()
                    total_cpu = cpu_s(proc)
                    peak = peak_rss_mb(proc.pid)
                    break
            time.sleep(POLL_S)
        if done is None:
            missing = watch.missing()
    finally:
        watch.close()
        daemon.stop()
        if daemon.spy is not None:
            daemon.spy.wait(30)
        bench_mqtt.end_session(port, cid)
    elapsed = (done or time.monotonic()) - daemon.started_at
    return {
        "rate": n / elapsed if done else 0.0,
        "elapsed_s": elapsed,
        "first_commit_s": (first - daemon.started_at) if first else float("nan"),
        "cpu_ms_per_msg": (total_cpu - idle_cpu) / n * 1e3,
        "cpu_ms_per_msg_incl_startup": total_cpu / n * 1e3,
        "startup_cpu_s": idle_cpu,
        "peak_rss_mb": peak,
        "vehicles_missing": missing,
    }


def raw_paho_round(port: int, backlog: Backlog, cid: str) -> dict[str, Any]:
    """bench/paho_count.py from spawn to its exit after the N-th message."""
    bench_mqtt.end_session(port, cid)
    bench_mqtt.open_session(port, cid)
    bench_mqtt.publish_all(port, backlog.msgs)
    n = len(backlog.msgs)
    counter = [sys.executable, str(BENCH / "paho_count.py"), "--port", str(port), "--cid", cid]
    t0 = time.monotonic()
    result = subprocess.run([*counter, "--count", str(n)], check=False, timeout=330)
    elapsed = time.monotonic() - t0
    bench_mqtt.end_session(port, cid)
    ok = result.returncode == 0
    return {"rate": n / elapsed if ok else 0.0, "lost": 0 if ok else n, "exit": result.returncode}


def mosquitto_sub_round(port: int, backlog: Backlog, cid: str) -> dict[str, Any]:
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", cid, "-q", "1"]
    subprocess.run([*base, "-c", "-t", TOPICS, "-E"], check=True, timeout=30)
    bench_mqtt.publish_all(port, backlog.msgs)
    n = len(backlog.msgs)
    t0 = time.monotonic()
    with open(os.devnull, "wb") as sink:
        result = subprocess.run(
            [*base, "-c", "-t", TOPICS, "-C", str(n), "-W", "300"], stdout=sink, check=False
        )
    elapsed = time.monotonic() - t0
    bench_mqtt.end_session(port, cid)
    return {"rate": n / elapsed if result.returncode == 0 else 0.0, "exit": result.returncode}


def measure(
    vehicles: int, messages: int, rounds: int, workdir: Path, bundle: Path | None
) -> dict[str, Any]:
    backlog = Backlog.build(vehicles, messages)
    daemon: list[dict[str, Any]] = []
    paho: list[dict[str, Any]] = []
    sub: list[dict[str, Any]] = []
    with Mosquitto(persistence=True, max_queued_messages=max(200_000, 2 * messages)) as broker:
        for i in range(rounds):  # alternated: a busy machine slows every subscriber alike
            daemon.append(
                daemon_round(
                    broker.port, backlog, vehicles, workdir / f"d{i}", f"ingest-d{i}", bundle
                )
            )
            paho.append(raw_paho_round(broker.port, backlog, f"ingest-p{i}"))
            sub.append(mosquitto_sub_round(broker.port, backlog, f"ingest-s{i}"))

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    rate, raw, cli = med(daemon, "rate"), med(paho, "rate"), med(sub, "rate")
    return {
        "vehicles": vehicles,
        "messages": messages,
        "rounds": rounds,
        "bundle": str(bundle) if bundle else "default",
        "daemon_rate": rate,
        "raw_paho_rate": raw,
        "mosquitto_sub_rate": cli,
        "ratio_to_raw_paho": rate / raw,
        "ratio_to_mosquitto_sub": rate / cli,
        "daemon_elapsed_s": med(daemon, "elapsed_s"),
        "daemon_first_commit_s": med(daemon, "first_commit_s"),
        "cpu_ms_per_msg": med(daemon, "cpu_ms_per_msg"),
        "cpu_ms_per_msg_incl_startup": med(daemon, "cpu_ms_per_msg_incl_startup"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in daemon),
        "lost": max(r["vehicles_missing"] for r in daemon),
        "raw_paho_lost": max(r["lost"] for r in paho),
        "load_average": os.getloadavg(),
        "per_round": {"daemon": daemon, "raw_paho": paho, "mosquitto_sub": sub},
    }


def profile_drain(args: argparse.Namespace, workdir: Path, bundle: Path | None) -> dict[str, Any]:
    """One daemon drain under cProfile (slower than unprofiled: for where, not how fast)."""
    backlog = Backlog.build(args.vehicles, args.messages)
    with Mosquitto(persistence=True, max_queued_messages=max(200_000, 2 * args.messages)) as b:
        return daemon_round(
            b.port, backlog, args.vehicles, workdir / "p", "ingest-prof", bundle, args.profile
        )


def render(f: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"backlog: {f['messages']:,} QoS 1 telemetry msgs, {f['vehicles']:,} vehicles, "
            f"median of {f['rounds']} alternated round(s), bundle {f['bundle']}",
            f"dockgate run (process start -> last committed): {f['daemon_rate']:,.0f} msg/s "
            f"({f['daemon_elapsed_s']:.2f} s; first commit at {f['daemon_first_commit_s']:.2f} s)",
            f"raw paho callback (spawn -> exit after N):      {f['raw_paho_rate']:,.0f} msg/s",
            f"mosquitto_sub (spawn -> exit after N):          {f['mosquitto_sub_rate']:,.0f} msg/s",
            f"ratio to raw paho {f['ratio_to_raw_paho']:.2f}, "
            f"to mosquitto_sub {f['ratio_to_mosquitto_sub']:.2f}",
            f"daemon CPU {f['cpu_ms_per_msg']:.3f} ms/msg "
            f"({f['cpu_ms_per_msg_incl_startup']:.3f} with start-up), "
            f"peak RSS {f['peak_rss_mb']:.0f} MB, lost {f['lost']}",
            "load average {:.2f} {:.2f} {:.2f}".format(*f["load_average"]),
        ]
    )


def drain_rate_after_first_commit(figures: dict[str, Any]) -> float:
    """The rounds' median drain rate once the daemon had started: the latency row's yardstick."""
    rounds = figures["per_round"]["daemon"]
    n = figures["messages"]
    return statistics.median(n / (r["elapsed_s"] - r["first_commit_s"]) for r in rounds)


def latency_row(args: argparse.Namespace, workdir: Path, profile: Path | None) -> dict[str, Any]:
    plan = ingest_latency.Plan(
        vehicles=args.vehicles,
        taps=args.taps,
        tap_interval_s=args.tap_interval_ms / 1e3,
        load_depth=args.load_depth,
        hold_s=args.load_hold,
        profile=profile,
    )
    try:
        return ingest_latency.measure(plan, workdir / "latency")
    except Exception as exc:  # the drain rounds still print
        return {"error": f"{type(exc).__name__}: {exc}"}


def render_all(figures: dict[str, Any]) -> str:
    lines = [render(figures)] if "daemon_rate" in figures else []
    lat = figures.get("latency")
    if lat is not None and "error" in lat:
        lines.append(f"latency row: ERROR {lat['error']}")
    elif lat is not None:
        drain = drain_rate_after_first_commit(figures) if "per_round" in figures else None
        lines += ingest_latency.render(lat, drain)
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zones", type=int, default=0, help="bench/rules.py bundle; 0: default")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", type=Path, help="one daemon drain under cProfile, to FILE")
    parser.add_argument("--only", default="drain,latency", help="drain, latency or both")
    most = ingest_latency.STATIONS_PER_PHASE * ingest_latency.SPOTS
    parser.add_argument("--taps", type=int, default=most, help=f"per phase, <= {most}")
    parser.add_argument("--tap-interval-ms", type=float, default=20.0)
    parser.add_argument("--load-depth", type=int, default=2048, help="reports kept ahead")
    parser.add_argument("--load-hold", type=float, default=3.0, help="s after the last tap")
    args = parser.parse_args()
    if not 0 < args.taps <= most:
        parser.error(f"--taps must be in 1..{most} (one spot per tap)")
    args.only = set(args.only.split(","))
    if not args.only <= {"drain", "latency"}:
        parser.error("--only takes drain, latency or drain,latency")
    return args


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dockgate-ingest-"))
    bundle = None
    if args.zones:
        bundle = workdir / f"bundle-{args.zones}.json"
        bundle.write_text(json.dumps(bench_rules.make_bundle(args.zones)))
    figures: dict[str, Any] = {}
    try:
        if args.profile is not None and "drain" in args.only:
            print(json.dumps(profile_drain(args, workdir, bundle), default=float))
            return
        if "drain" in args.only:
            figures = measure(args.vehicles, args.messages, args.rounds, workdir, bundle)
        if "latency" in args.only:  # py-spy of the load phase with --only latency --profile
            figures["latency"] = latency_row(args, workdir, args.profile)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        figures["workdir"] = str(workdir)
    print(json.dumps(figures, default=float) if args.json else render_all(figures))


if __name__ == "__main__":
    main()
