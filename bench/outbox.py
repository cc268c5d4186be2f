"""Outbox benchmark: append rate and start-up time with a million pending events.

Prints each figure beside a same-run baseline (plain SQLite doing the bare minimum of the same
work); ``--json`` prints one JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import Database


def append_rate(path: Path, n: int) -> tuple[float, float]:
    """Outbox.append (one transaction each) vs a bare INSERT + COMMIT per row."""
    box = Outbox(Database(path / "rate.db"))
    t0 = time.perf_counter()
    for i in range(n):
        box.append(
            "vehicle.state",
            {"vehicle_id": i % 500, "battery": i % 100},
            idempotency_key=f"k{i}",
            priority=Priority(i % len(Priority)),
        )
    ours = n / (time.perf_counter() - t0)
    conn = sqlite3.connect(path / "base.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, payload BLOB)")
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO t(k, payload) VALUES (?, ?)",
            (f"k{i}", orjson.dumps({"vehicle_id": i % 500, "battery": i % 100})),
        )
        conn.execute("COMMIT")
    base = n / (time.perf_counter() - t0)
    return ours, base


def fill(path: Path, n: int) -> None:
    """Put ``n`` pending events in an outbox file (bulk, with counters that match)."""
    box = Outbox(Database(path), max_pending=None)
    conn = box.db.conn
    payload = orjson.dumps({"vehicle_id": 1, "battery": 80, "lat": 48.58, "lon": 7.73})
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox_events(priority, kind, idempotency_key, created_at, payload)"
        " VALUES (?,?,?,?,?)",
        ((i % len(Priority), "vehicle.state", f"bulk-{i}", now, payload) for i in range(n)),
    )
    for p in Priority:
        count = len(range(int(p), n, len(Priority)))
        conn.execute(
            "UPDATE outbox_stats SET pending=?, appended=? WHERE priority=?", (count, count, int(p))
        )
    conn.execute("COMMIT")
    box.db.close()


def startup(path: Path) -> tuple[float, float, int]:
    """Open + migrate check + counters + first page, vs a naive ``count(*)`` of the queue."""
    t0 = time.perf_counter()
    box = Outbox(Database(path), max_pending=None)
    pending = sum(box.pending().values())
    first = box.read(0, 500)
    _ = box.oldest_pending(), box.last_cursor
    ours = time.perf_counter() - t0
    assert len(first) == 500
    box.db.close()
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    conn.execute("SELECT count(*) FROM outbox_events").fetchone()
    base = time.perf_counter() - t0
    conn.close()
    return ours, base, pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockgate-bench-") as tmp:
        path = Path(tmp)
        rate, base_rate = append_rate(path, args.appends)
        fill(path / "million.db", args.events)
        start, base_count, pending = startup(path / "million.db")
    figures = {
        "append_per_s": round(rate),
        "baseline_bare_insert_per_s": round(base_rate),
        "pending_events": pending,
        "startup_s": round(start, 4),
        "baseline_count_star_s": round(base_count, 4),
        "startup_target_s": 3.0,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"append (one txn each)   {rate:>10,.0f} /s   baseline bare INSERT {base_rate:,.0f} /s")
    print(
        f"start-up, {pending:,} pending  {start * 1000:>8.1f} ms   baseline count(*) "
        f"{base_count * 1000:.1f} ms   (target < 3000 ms)"
    )


if __name__ == "__main__":
    main()
