"""The simulated fleet against `dockgate run`: an upstream outage and its catch-up.

The backend pulls ``/api/v1/events`` by cursor; every event must arrive once, in cursor order,
and every cursor it never saw must be accounted for by compaction or a counted drop in the
lowest classes. Alerts and trips in the store must each have their event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dockgate.sim.device_base import Broker
from dockgate.sim.faults import FaultPlan
from dockgate.sim.fleet import DayPlan, FleetSim
from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.system_harness import Backend, DaemonProcess, StationConf

pytestmark = pytest.mark.timeout(150)


def fleet_daemon(tmp_path: Path, port: int, fleet: FleetSim, **extra: Any) -> DaemonProcess:
    stations = [
        StationConf(i + 1, sid, round(st.site[0], 6), round(st.site[1], 6), spots=10)
        for i, (sid, st) in enumerate(fleet.stations.items())
    ]
    return DaemonProcess(tmp_path, port, stations=stations, extra=extra, log_level="WARNING")


def make_fleet(port: int, *, faults: FaultPlan | None = None, vehicles: int = 60) -> FleetSim:
    return FleetSim(
        Broker("127.0.0.1", port),
        stations=3,
        vehicles=vehicles,
        spots=10,
        time_scale=60.0,
        faults=faults,
        day=DayPlan(mean_idle_s=300.0, power_cuts_per_station_hour=2.0, power_cut_s=120.0),
        seed=11,
    )


def check_store_against_feed(daemon: DaemonProcess, backend: Backend) -> dict[str, int]:
    """Every alert and trip in the store has its events in the feed, exactly once."""
    alerts = [dict(r) for r in daemon.query("SELECT id, resolved_at FROM fleet_alerts")]
    trips = [dict(r) for r in daemon.query("SELECT id, status FROM trips")]
    raised = Counter(e.get("alert_id", e.get("id")) for e in backend.of_kind("alert.raised"))
    assert sum(raised.values()) == len(alerts), (len(raised), len(alerts))
    started = Counter(e["trip_id"] for e in backend.of_kind("trip.started"))
    ended = Counter(e["trip_id"] for e in backend.of_kind("trip.ended"))
    assert started == Counter(t["id"] for t in trips)
    assert ended == Counter(t["id"] for t in trips if t["status"] == "finished")
    return {"alerts": len(alerts), "trips": len(trips)}


async def test_upstream_outage_then_catch_up_delivers_every_event_once_in_order(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    fleet = make_fleet(mosquitto.port)
    # Small bounds, so a long outage reaches them: drops must hit only the lowest classes.
    daemon = fleet_daemon(tmp_path, mosquitto.port, fleet, outbox={"state": 40, "telemetry": 100})
    backend = Backend(daemon)
    try:
        daemon.start()
        await fleet.start()
        runner = asyncio.create_task(fleet.run(40.0))
        for _ in range(20):  # 4 s of live sync
            backend.pull()
            await asyncio.sleep(0.2)
        before_outage = backend.cursor
        started = time.monotonic()
        await asyncio.sleep(16.0)  # the upstream is away
        stats = daemon.get("/api/v1/events/stats")
        backlog = stats["last_cursor"] - before_outage
        caught = backend.drain(limit=1000)
        catch_up_s = time.monotonic() - started - 16.0
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await fleet.stop()
        await asyncio.sleep(1.0)
        backend.drain()
        stats = daemon.get("/api/v1/events/stats")
        totals = check_store_against_feed(daemon, backend)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()
        daemon.close()

    assert backlog >= 1000, f"only {backlog} events during the outage"
    assert backend.duplicates() == {}
    gaps = backend.check_gaps(stats)
    classes = stats["classes"]
    assert classes["critical"]["dropped"] == 0 and classes["outcome"]["dropped"] == 0
    assert classes["state"]["dropped"] > 0, "the bound (40 < 60 vehicles) was hit and counted"
    assert stats["acked_cursor"] == backend.cursor == stats["last_cursor"]
    print(
        f"\noutage: backlog={backlog} caught_up={caught} in {catch_up_s:.2f}s {gaps} {totals}"
        f" classes={classes} fleet_sent={dict(fleet.counters.sent)}"
    )
