"""A site on PostgreSQL (issue 14): failover time, ingest beside SQLite, taps through the broker.

Three measurements in one run, each on real processes (``dockgate run``), a real Mosquitto
and a real PostgreSQL (Debian's, started here as the tests start it: ``initdb``/``pg_ctl`` as
the ``postgres`` user when run as root; durable: fsync and synchronous commit on).

1. **Failover** (``--trials``, default 10): a site of two nodes (lease 3 s, renewal 1 s)
   while an independent paced publisher sends countable QoS 1 vehicle messages (80/s,
   tests/support/flood.py). Each trial SIGKILLs the leader, waits for the successor, then
   starts the killed node again as a standby. Window, observed from outside: from
   ``time.time()`` just before the SIGKILL to the first poll (every 10 ms, a read of
   PostgreSQL) that sees a device message committed by the new leader (a row of ``inbox``,
   ``vehicle_clocks`` or ``station_clocks`` whose writer's client port belongs to the new
   leader's process: tests/support/cluster.py ``WriteAudit``). Also reported: the SIGKILL to
   the first ``/health/leader`` 200 of the successor, and the messages lost or applied twice
   over all trials (the event feed, pulled by cursor through the public API), and the
   outbox cursors handed out but never committed (a hole in the feed's cursor sequence).
2. **Ingest** (``--messages`` over ``--vehicles``, ``--rounds`` alternated rounds): the
   process benchmark of bench/ingest.py (its ``daemon_round`` for SQLite, imported), and
   its equivalent here for PostgreSQL (a single node) and for PostgreSQL as a cluster's
   leader (``[cluster] enabled``, every write transaction fenced). Window: from spawning
   ``dockgate run`` to every vehicle's last report committed and visible (``vehicle_clocks``
   polled every 5 ms, read-only). Figures: median rate per store, and the ratio of
   PostgreSQL's to SQLite's (target >= 0.5).
3. **Tap to unlock** (``--taps`` per path): bench/tap_broker.py's run (imported): the broker
   path (reader publish -> ``unlock-spot`` on the broker) beside the direct path (tag read
   done -> the same), on SQLite; then its broker path again with the daemon on PostgreSQL
   as a cluster's leader.

    .venv/bin/python bench/failover.py                # all three, a table
    .venv/bin/python bench/failover.py --json         # one JSON object, the same figures
    .venv/bin/python bench/failover.py --only failover --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import ingest as bench_ingest  # noqa: E402  (bench/ingest.py)
import mqtt as bench_mqtt  # noqa: E402  (bench/mqtt.py)
import psutil  # noqa: E402
import psycopg  # noqa: E402
import system as bench_system  # noqa: E402  (bench/system.py)
import tap_broker as bench_tap  # noqa: E402  (bench/tap_broker.py)

from dockgate.gateway.outbox import Outbox  # noqa: E402
from dockgate.gateway.store import Store, open_database  # noqa: E402
from dockgate.sim.services import free_port  # noqa: E402
from dockgate.sim.services.mosquitto import Mosquitto  # noqa: E402
from dockgate.sim.services.postgres import PostgresServer  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    Cluster,
    FeedPuller,
    SiteApi,
    SiteConf,
    WriteAudit,
    fail_over,
    percentile,
    wait_for,
)
from tests.support.flood import Flood, StreamPublisher  # noqa: E402

SITE = (45.4642, 9.2015)
TARGET_FAILOVER_P99_S = 5.0
TARGET_INGEST_RATIO = 0.5
POLL_S = 0.005


# -- 1. failover -----------------------------------------------------------------------------------
def failover_trials(trials: int, workdir: Path, pg: PostgresServer) -> dict[str, Any]:
    with Mosquitto() as broker:
        conf = SiteConf(lease_seconds=3.0, renew_seconds=1.0, log_level="WARNING")
        (workdir / "failover").mkdir(exist_ok=True)
        cluster = Cluster(workdir / "failover", broker, pg, conf)
        puller = FeedPuller(SiteApi(cluster))
        flood = Flood("BFO", vehicles=60, site=SITE)
        stream = StreamPublisher(broker.port, flood, rate=80, client_id="bench-failover")
        try:
            leader = cluster.start()
            audit = WriteAudit(cluster)
            audit.install()
            puller.start()
            stream.start()
            done = []
            for _ in range(trials):
                trial = fail_over(cluster, audit, leader)
                leader = trial.successor
                done.append(trial)
            published = stream.finish()
            tally = settled_tally(cluster, puller, flood)
            gaps = audit.cursor_gaps()
        finally:
            with contextlib.suppress(AssertionError):
                stream.finish(5)
            cluster.close()
    commit = [t.first_commit_s for t in done]
    lead = [t.lead_s for t in done]
    return {
        "window": "SIGKILL of the leader -> first device message committed by the new leader"
        " (seen by a 10 ms poll of PostgreSQL)",
        "trials": len(done),
        "first_commit_s_p50": statistics.median(commit),
        "first_commit_s_p99": percentile(commit, 0.99),
        "first_commit_s_max": max(commit),
        "lead_s_p50": statistics.median(lead),
        "lead_s_p99": percentile(lead, 0.99),
        "per_trial_first_commit_s": [round(s, 3) for s in commit],
        "tokens": [t.tokens for t in done],
        "published": published,
        "lost": len(tally.lost_events) + len(tally.stale_reports),
        "duplicated": len(tally.duplicated_events),
        "outbox_cursors_never_committed": sum(n for _, n in gaps),
        "meets_target": percentile(commit, 0.99) < TARGET_FAILOVER_P99_S,
    }


def settled_tally(cluster: Cluster, puller: FeedPuller, flood: Flood) -> Any:
    """The flood's traces once complete (or after a minute: then what is missing)."""

    def tally() -> Any:
        serial_of = {
            int(r[0]): r[1] for r in cluster.query("SELECT id, serial_number FROM vehicles")
        }
        clocks = {
            r[0]: int(r[1])
            for r in cluster.query(
                "SELECT v.serial_number, c.report_ts FROM vehicle_clocks c"
                " JOIN vehicles v ON v.id = c.vehicle_id"
            )
        }
        return flood.tally(puller.events, serial_of, clocks)

    with contextlib.suppress(AssertionError):
        wait_for(lambda: tally().complete, 60, "every flood message traced", poll=0.2)
    puller.settle()
    return tally()


# -- 2. ingest on PostgreSQL beside SQLite ---------------------------------------------------------
def seed_postgres(url: str, data_dir: Path, vehicles: int) -> None:
    """bench/system.py's fleet in a fresh PostgreSQL database (the daemon's migrations first)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(url, data_dir=data_dir)
    try:
        store = Store(db)
        Outbox(db)
        with store.transaction():
            bench_system.seed_fleet(store, vehicles)
    finally:
        db.close()


def store_tables(url: str, node_id: str | None) -> list[str]:
    """TOML lines that put a daemon on ``url`` (and make it a cluster's only node)."""
    lines = ["[store]", f'url = "{url}"']
    if node_id is not None:
        lines += ["[cluster]", "enabled = true", f'node_id = "{node_id}"']
        lines += ["lease_seconds = 3.0", "renew_seconds = 1.0"]
    return lines


def postgres_round(
    port: int, backlog: bench_ingest.Backlog, workdir: Path, url: str, cluster: bool
) -> dict[str, Any]:
    """bench/ingest.py's ``daemon_round`` with the store on PostgreSQL."""
    cid = f"ingest-{workdir.name}"
    seed_postgres(url, workdir / "state", len(backlog.last_ts))
    api = free_port()
    config = bench_system.write_config(workdir, port, api, client_id=cid)
    extra = store_tables(url, workdir.name if cluster else None)
    config.write_text(config.read_text() + "\n".join(extra) + "\n")
    daemon = bench_system.DaemonProcess(config, api, workdir / "daemon.log")
    daemon.start()
    try:
        daemon.wait_health()
        if cluster:
            wait_for(lambda: leads(daemon), 15, "the node leading")
        idle_cpu = bench_ingest.cpu_s(psutil.Process(daemon.proc.pid))
    finally:
        daemon.stop()
    bench_mqtt.publish_all(port, backlog.msgs)
    watch = bench_ingest.ClockWatch(psycopg.connect(url, autocommit=True), backlog, "%s")
    daemon.start()
    try:
        drained = drain(daemon, watch, backlog)
    finally:
        watch.close()
        daemon.stop()
        bench_mqtt.end_session(port, cid)
    n = len(backlog.msgs)
    return {**drained, "cpu_ms_per_msg": (drained.pop("cpu_s") - idle_cpu) / n * 1e3}


def leads(daemon: bench_system.DaemonProcess) -> bool:
    body = daemon.get("/health/leader")  # 503 (raised) on a standby
    return bool(body.get("data", body).get("leader"))


def drain(
    daemon: bench_system.DaemonProcess,
    watch: bench_ingest.ClockWatch,
    backlog: bench_ingest.Backlog,
) -> dict[str, Any]:
    """Poll until every vehicle's last report is committed; the figures of the drain."""
    proc = psutil.Process(daemon.proc.pid)
    first = done = None
    cpu = peak = float("nan")
    deadline = daemon.started_at + 300
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"daemon exited: {daemon.log.read_text()[-1500:]}")
        if first is None and watch.any_applied():
            first = time.monotonic()
        if watch.sentinel_done() and not watch.missing():
            done = time.monotonic()
            cpu, peak = bench_ingest.cpu_s(proc), bench_ingest.peak_rss_mb(proc.pid)
            break
        time.sleep(POLL_S)
    elapsed = (done or time.monotonic()) - daemon.started_at
    return {
        "rate": len(backlog.msgs) / elapsed if done else 0.0,
        "elapsed_s": elapsed,
        "first_commit_s": (first - daemon.started_at) if first else float("nan"),
        "cpu_s": cpu,
        "peak_rss_mb": peak,
        "vehicles_missing": watch.missing(),
    }


def ingest(
    vehicles: int, messages: int, rounds: int, workdir: Path, pg: PostgresServer
) -> dict[str, Any]:
    backlog = bench_ingest.Backlog.build(vehicles, messages)
    rows: dict[str, list[dict[str, Any]]] = {
        "sqlite": [],
        "postgresql": [],
        "postgresql_leader": [],
    }
    queued = max(200_000, 2 * messages)
    with Mosquitto(persistence=True, max_queued_messages=queued) as broker:
        for i in range(rounds):  # alternated: a busy machine slows each store alike
            rows["sqlite"].append(
                bench_ingest.daemon_round(
                    broker.port, backlog, vehicles, workdir / f"sqlite{i}", f"ingest-s{i}", None
                )
            )
            for name, cluster in (("postgresql", False), ("postgresql_leader", True)):
                url = pg.url(pg.create_database(f"ingest_{name}"))
                rows[name].append(
                    postgres_round(broker.port, backlog, workdir / f"{name}{i}", url, cluster)
                )
    figures: dict[str, Any] = {"vehicles": vehicles, "messages": messages, "rounds": rounds}
    for name, per_round in rows.items():
        figures[name] = {
            "rate": statistics.median(r["rate"] for r in per_round),
            "elapsed_s": statistics.median(r["elapsed_s"] for r in per_round),
            "first_commit_s": statistics.median(r["first_commit_s"] for r in per_round),
            "cpu_ms_per_msg": statistics.median(r["cpu_ms_per_msg"] for r in per_round),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in per_round),
            "lost": max(r["vehicles_missing"] for r in per_round),
        }
    sqlite_rate = figures["sqlite"]["rate"]
    for name in ("postgresql", "postgresql_leader"):
        figures[name]["ratio_to_sqlite"] = figures[name]["rate"] / sqlite_rate if sqlite_rate else 0
    figures["meets_target"] = figures["postgresql"]["ratio_to_sqlite"] >= TARGET_INGEST_RATIO
    figures["load_average"] = os.getloadavg()
    return figures


# -- 3. tap to unlock, broker path beside direct path ----------------------------------------------
@contextlib.contextmanager
def tap_bench_on_postgres(url: str) -> Iterator[None]:
    """bench/tap_broker.py with its daemon on ``url`` as a cluster's only node: its seeding
    opens that database instead of the SQLite file, its configuration gains the tables."""
    original_db, original_config = bench_tap.Database, bench_tap.write_config

    def database(path: Path) -> Any:
        return open_database(url, data_dir=Path(path).parent)

    def write_config(workdir: Path, *args: Any) -> Path:
        config: Path = original_config(workdir, *args)
        config.write_text(config.read_text() + "\n".join(store_tables(url, "tap-node")) + "\n")
        return config

    bench_tap.Database, bench_tap.write_config = database, write_config
    try:
        yield
    finally:
        bench_tap.Database, bench_tap.write_config = original_db, original_config


def taps(count: int, workdir: Path, pg: PostgresServer) -> dict[str, Any]:
    on_sqlite = asyncio.run(bench_tap.run(count, workdir / "tap-sqlite"))
    with tap_bench_on_postgres(pg.url(pg.create_database("tap"))):
        on_postgres = asyncio.run(bench_tap.run(count, workdir / "tap-postgresql"))
    return {
        "window": on_sqlite["window"],
        "sqlite": {"broker": on_sqlite["broker"], "direct": on_sqlite["direct"]},
        "postgresql_leader": {"broker": on_postgres["broker"], "direct": on_postgres["direct"]},
        "target_p99_ms": bench_tap.TARGET_P99_MS,
        "meets_target": on_sqlite["broker_meets_target"] and on_postgres["broker_meets_target"],
    }


# -- the run ---------------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    if "failover" in result:
        f = result["failover"]
        out += [
            f"failover ({f['window']}), {f['trials']} trials:",
            f"  first commit by the new leader: p50 {f['first_commit_s_p50']:.2f} s, "
            f"p99 {f['first_commit_s_p99']:.2f} s (target < {TARGET_FAILOVER_P99_S:.0f} s); "
            f"new leader seen: p50 {f['lead_s_p50']:.2f} s, p99 {f['lead_s_p99']:.2f} s",
            f"  {f['published']} messages published: lost {f['lost']}, "
            f"duplicated {f['duplicated']}; outbox cursors never committed "
            f"{f['outbox_cursors_never_committed']}",
        ]
    if "ingest" in result:
        g = result["ingest"]
        out.append(
            f"ingest ({g['messages']:,} msgs, {g['vehicles']:,} vehicles, median of "
            f"{g['rounds']} alternated rounds; process start -> last report committed):"
        )
        for name in ("sqlite", "postgresql", "postgresql_leader"):
            row = g[name]
            ratio = f", {row['ratio_to_sqlite']:.2f} of SQLite" if "ratio_to_sqlite" in row else ""
            out.append(
                f"  {name:18} {row['rate']:8,.0f} msg/s ({row['elapsed_s']:.2f} s, "
                f"{row['cpu_ms_per_msg']:.3f} ms CPU/msg, lost {row['lost']}){ratio}"
            )
    if "tap" in result:
        t = result["tap"]
        out.append(f"tap -> unlock-spot on the broker ({t['window']}):")
        for store in ("sqlite", "postgresql_leader"):
            for path in ("broker", "direct"):
                row = t[store][path]
                out.append(
                    f"  {store:18} {path:7} p50 {row['ms_p50']:6.2f} ms, p99 {row['ms_p99']:6.2f}"
                    f" ms ({row['unlocked']}/{row['taps']})"
                )
    out.append("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return "\n".join(out)


PARTS: dict[str, Callable[[argparse.Namespace, Path, PostgresServer], dict[str, Any]]] = {
    "failover": lambda a, w, pg: failover_trials(a.trials, w, pg),
    "ingest": lambda a, w, pg: ingest(a.vehicles, a.messages, a.rounds, w, pg),
    "tap": lambda a, w, pg: taps(a.taps, w, pg),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="failovers")
    parser.add_argument("--vehicles", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--taps", type=int, default=64, help="taps per path")
    parser.add_argument("--only", choices=sorted(PARTS), action="append", help="repeatable")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dockgate-failover-"))
    result: dict[str, Any] = {}
    try:
        with PostgresServer(durable=True) as pg:  # its own directory, for its own user
            for name in args.only or list(PARTS):
                result[name] = PARTS[name](args, workdir, pg)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, default=float) if args.json else render(result))


if __name__ == "__main__":
    main()
