"""API benchmark: the event feed served over real HTTP (uvicorn on loopback), paged by cursor.

Prints events per second through ``GET /api/v1/events`` beside a same-run baseline: the same
pages read straight from the outbox without HTTP. ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import Store
from dockgate.sim.services.process import free_port, wait_for_port

TOKEN = "bench-token-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockgate-bench-") as tmp:
        store = Store.open(Path(tmp) / "api.db")
        outbox = Outbox(store.db)
        with store.transaction():
            for i in range(args.events):
                outbox.append(
                    "vehicle.state",
                    {"vehicle_id": i % 500, "battery": i % 100, "lat": 48.58, "lon": 7.73},
                    idempotency_key=f"k{i}",
                    priority=Priority(i % len(Priority)),
                )
        app = create_app(store, outbox, tokens={TOKEN: ["sync"]})
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for_port("127.0.0.1", port)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as client:
                cursor, got = 0, 0
                t0 = time.perf_counter()
                while True:
                    r = client.get("/api/v1/events", params={"cursor": cursor, "limit": args.page})
                    r.raise_for_status()
                    data = r.json()["data"]
                    if not data["events"]:
                        break
                    got += len(data["events"])
                    cursor = data["next_cursor"]
                http_rate = got / (time.perf_counter() - t0)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        assert got == args.events, (got, args.events)
        cursor, base_got = 0, 0
        t0 = time.perf_counter()
        while page := outbox.read(cursor, args.page):
            base_got += len(page)
            cursor = page[-1].cursor
        base_rate = base_got / (time.perf_counter() - t0)
    figures = {
        "events": got,
        "page": args.page,
        "http_events_per_s": round(http_rate),
        "baseline_outbox_read_events_per_s": round(base_rate),
        "target_events_per_s": 5000,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"event feed over HTTP  {http_rate:>10,.0f} events/s  (pages of {args.page}; "
        f"target >= 5,000)"
    )
    print(f"baseline outbox.read  {base_rate:>10,.0f} events/s  (same pages, no HTTP)")


if __name__ == "__main__":
    main()
