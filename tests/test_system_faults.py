"""A soak of the simulated fleet against `dockgate run`, with faults: a broker restart, a device
flood of valid and malformed payloads, chaos (malformed, oversized and spoofed payloads,
dropped connections), a PN532 reader unplugged and plugged back, and a SIGKILL and restart.

Counts of everything sent and received are checked and printed; no alert, trip or event is
lost: every alert and trip in the store has its events in the backend's cursor feed, exactly
once, and no class of the outbox dropped anything.

Every wait is bounded and named (:func:`bounded`), so a part that hangs fails the test with
the step it hung in instead of stalling the run: the previous version hung in the fleet's
stop, where a simulator's aiomqtt client waits without limit for a disconnect that a dropped
or restarted connection never completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dockgate.gateway.protocol import Channel
from dockgate.sim.device_base import Broker
from dockgate.sim.faults import FaultPlan
from dockgate.sim.fleet import DayPlan, FleetSim
from dockgate.sim.ntag424 import card
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.transports.pn532_serial import Pn532Simulator
from tests.support.system_harness import (
    FILE,
    META,
    Backend,
    DaemonProcess,
    ReaderConf,
    StationConf,
    until,
)

pytestmark = pytest.mark.timeout(150)

T = TypeVar("T")
READER = "pn532-dock"
SITE = (45.4642, 9.2015)
FLOOD = 1000  # valid and as many malformed telemetry messages from one scooter


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def bounded(what: str, aw: Awaitable[T], timeout: float) -> T:
    """Await with a limit; an AssertionError naming the step if it does not finish."""
    began = time.monotonic()
    try:
        result = await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise AssertionError(f"{what}: still not done after {timeout}s") from None
    log(f"{what}: {time.monotonic() - began:.2f}s")
    return result


async def stop_fleet(fleet: FleetSim, timeout: float = 10.0) -> None:
    """Stop the fleet within ``timeout``; if it hangs, log what every simulator task is
    waiting on, then cancel the stop and the devices' connection tasks."""
    began = time.monotonic()
    stop = asyncio.ensure_future(fleet.stop())
    done, _ = await asyncio.wait({stop}, timeout=timeout)
    if done:
        stop.result()
        log(f"fleet stop: {time.monotonic() - began:.2f}s")
        return
    log(f"fleet stop: still not done after {timeout}s; waiting:")
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            buf = io.StringIO()
            task.print_stack(file=buf)
            lines = [ln for ln in buf.getvalue().splitlines() if "File" in ln][-3:]
            log(f"  {task.get_name()}: {' | '.join(ln.strip() for ln in lines)}")
    stop.cancel()
    for dev in fleet.devices:
        if dev._runner is not None:
            dev._runner.cancel()
            dev._runner = None
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(stop, 5)


def reader_state(daemon: DaemonProcess) -> str | None:
    for r in daemon.health()["readers"]:
        if r.get("id") == READER:
            return str(r.get("state"))
    return None


def broker(daemon: DaemonProcess) -> dict[str, Any]:
    return daemon.health()["broker"]


async def test_soak_with_faults_loses_no_alert_trip_or_event(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    faults = FaultPlan.parse("all,malformed=60,oversized=20,spoofed=20,disconnect=5", seed=3)
    fleet = FleetSim(
        Broker("127.0.0.1", mosquitto.port),
        stations=3,
        vehicles=40,
        spots=10,
        time_scale=60.0,
        faults=faults,
        day=DayPlan(mean_idle_s=300.0, power_cuts_per_station_hour=2.0, power_cut_s=120.0),
        seed=11,
    )
    socat = SocatPty(tmp_path / "socat", name="socat-faults").start()
    pn532 = Pn532Simulator(socat.device_path).start()
    stations = [
        StationConf(i + 1, sid, round(st.site[0], 6), round(st.site[1], 6), spots=10)
        for i, (sid, st) in enumerate(fleet.stations.items())
    ]
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=stations,
        readers=[ReaderConf(READER, 1, driver="pn532", path=str(socat.host_path))],
        log_level="WARNING",
    )
    backend = Backend(daemon)
    tag = card(meta_read_key=bytes.fromhex(META), file_read_key=bytes.fromhex(FILE))
    seen: dict[str, Any] = {}
    runner: asyncio.Task[None] | None = None
    flooder: list[ScooterSim] = []
    try:
        daemon.start()
        daemon.seed_rider(7, tag.uid.hex())
        await bounded("fleet start", fleet.start(), 30)
        runner = asyncio.create_task(fleet.run(120.0))
        await until(lambda: reader_state(daemon) == "up", 10, "reader up")

        async def sync(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                backend.pull()
                await asyncio.sleep(0.25)

        await sync(4.0)

        # -- the broker restarts: devices and the daemon reconnect, the daemon resumes ------
        connects = broker(daemon)["connects"]
        await bounded("broker restart", asyncio.to_thread(mosquitto.restart, 1.0), 20)
        await until(
            lambda: broker(daemon)["connects"] > connects and broker(daemon)["connected"],
            15,
            "daemon reconnected to the broker",
        )
        await until(lambda: sum(d.online for d in fleet.devices) >= 40, 20, "fleet back online")
        await sync(2.0)

        # -- one scooter floods: valid and malformed telemetry, QoS 1 so the broker keeps all.
        # Not a fleet scooter: chaos drops those, and a publish on a dropped connection waits
        # aiomqtt's 10 s timeout (2,000 of them: the hang of the previous version).
        sc = ScooterSim("SXFLOOD1", Broker("127.0.0.1", mosquitto.port), start=SITE)
        flooder.append(sc)
        await bounded("flooder online", sc.start(), 10)
        before = broker(daemon)

        async def flood() -> None:
            for _ in range(FLOOD):
                await sc.publish_raw(Channel.TELEMETRY, sc.sample_payload(), qos=1)
                await sc.publish_raw(Channel.TELEMETRY, b"{not json", qos=1)

        await bounded("device flood", flood(), 30)
        await until(
            lambda: (
                broker(daemon)["rejected"].get("bad-json", 0)
                - before["rejected"].get("bad-json", 0)
                >= FLOOD
            ),
            20,
            "flood received",
        )
        after = broker(daemon)
        seen["flood"] = {
            "sent": 2 * FLOOD,
            "received": after["received"] - before["received"],
            "rejected": after["rejected_total"] - before["rejected_total"],
        }
        assert seen["flood"]["rejected"] >= FLOOD, seen["flood"]  # every malformed refused
        await sync(1.0)

        # -- the reader's cable is pulled and plugged back -----------------------------------
        await bounded("socat stop", asyncio.to_thread(socat.stop), 10)
        await until(lambda: reader_state(daemon) == "down", 10, "/health: reader down")
        seen["reader_down"] = reader_state(daemon)
        await sync(1.0)
        await bounded("socat start", asyncio.to_thread(socat.start), 10)
        await until(lambda: reader_state(daemon) == "up", 15, "/health: reader up again")
        # a card at the replugged reader is read, verified and handled by the flow
        pn532.present(tag)

        def tap_events() -> list[dict[str, Any]]:
            backend.pull()
            return [e for e in backend.events if e["kind"].startswith("tap.")]

        tapped = await until(tap_events, 10, "the card's tap handled")
        pn532.remove()
        seen["tap"] = [(e["kind"], e["payload"].get("reason")) for e in tapped]
        await sync(2.0)

        # -- the gateway crashes and comes back on its data -------------------------------
        startup = await bounded("SIGKILL and restart", asyncio.to_thread(daemon.restart), 30)
        seen["restart_s"] = round(startup, 2)
        await until(lambda: broker(daemon)["connected"], 15, "daemon connected after restart")
        await until(lambda: reader_state(daemon) == "up", 15, "reader up after restart")
        await sync(6.0)

        # -- wind down: stop the fleet, let the daemon settle, the backend catches up --------
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bounded("fleet run cancelled", runner, 10)
        await stop_fleet(fleet)
        await until(
            lambda: (
                daemon.scalar(
                    "SELECT count(*) FROM command_journal WHERE state IN ('journaled','sent')"
                )
                == 0
            ),
            20,
            "journal settled",
        )
        await asyncio.sleep(1.0)
        backend.drain()
        stats = daemon.get("/api/v1/events/stats")
        final_health = daemon.health()
        alerts = [dict(r) for r in daemon.query("SELECT id FROM fleet_alerts")]
        trips = [dict(r) for r in daemon.query("SELECT id, status FROM trips")]
        commands = daemon.scalar("SELECT count(*) FROM command_journal")
        assert daemon.terminate() == 0, daemon.log_tail()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nseen={seen}\ndaemon log:\n{daemon.log_tail(4000)}") from exc
    finally:
        if runner is not None:
            runner.cancel()
        with contextlib.suppress(Exception):
            await stop_fleet(fleet, 5.0)
        for dev in flooder:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dev.stop(), 5)
        pn532.stop()
        socat.stop()
        daemon.close()

    # -- what was sent and received ---------------------------------------------------------
    summary = fleet.summary()
    assert summary["faults"].get("malformed", 0) > 0, summary
    assert daemon.kills == 1 and daemon.starts == 2

    # -- no event lost or repeated, no alert or trip without its events ----------------------
    assert backend.duplicates() == {}
    gaps = backend.check_gaps(stats)
    classes = stats["classes"]
    assert all(c["dropped"] == 0 for c in classes.values()), classes
    raised = [e["alert_id"] for e in backend.of_kind("alert.raised")]
    assert sorted(raised) == sorted(a["id"] for a in alerts), (raised, alerts)
    started = sorted(e["trip_id"] for e in backend.of_kind("trip.started"))
    assert started == sorted(t["id"] for t in trips)
    ended = sorted(e["trip_id"] for e in backend.of_kind("trip.ended"))
    assert ended == sorted(t["id"] for t in trips if t["status"] == "finished")
    assert seen["reader_down"] == "down"
    assert any(e["kind"].startswith("tap.") for e in backend.events), "the replugged reader's tap"

    # -- the daemon is whole again --------------------------------------------------------
    assert final_health["status"] == "ok", final_health
    parts = {p["name"]: p["state"] for p in final_health["parts"]}
    assert set(parts.values()) == {"running"}, parts
    print(
        f"\nfaults soak: {gaps} alerts={len(alerts)} trips={len(trips)} commands={commands}"
        f" tap={seen['tap']}"
        f" flood={seen['flood']} restart_s={seen['restart_s']} classes={classes}"
        f" fleet={summary} broker={final_health['broker']}"
    )
