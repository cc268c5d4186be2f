"""`dockgate run` killed with SIGKILL at random points of the flow and restarted on its data.

A real daemon process, a private Mosquitto, a station and scooter simulators, and a simulated
NTAG 424 DNA card presented at the pcscd reader (VpcdCard). Rides are played one after another;
in each, the daemon is killed at a point the seeded RNG picks (after the tap, after the unlock
is journaled, after the ack, after the undock, during the ride, at docking) and restarted on
the same data directory. At the end: no event lost or repeated (the backend's cursor feed),
no trip lost (every undock became a trip, every dock ended one), no command executed twice
by a device (per ``cmd_id``, counted in the simulators and on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from dockgate.gateway.flow._commands import command_id_for
from dockgate.sim.device_base import Broker
from dockgate.sim.ntag424 import card
from dockgate.sim.routes import random_route
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.simclock import ScaledClock
from dockgate.sim.transports import VpcdCard
from tests.support.system_harness import (
    FILE,
    META,
    Backend,
    DaemonProcess,
    ReaderConf,
    RecordingScooter,
    RecordingStation,
    StationConf,
    WireLog,
    until,
)

pytestmark = pytest.mark.timeout(150)

SEED = int(os.environ.get("DOCKGATE_CRASH_SEED", "20240607"))  # the kill order and times
SITE = (45.4642, 9.2015)
SERIALS = ("SXB0001", "SXB0002", "SXB0003")
PHASES = ("tap", "journaled", "acked", "undocked", "riding", "docking")
PHYSICAL = {"unlock-spot", "lock-spot", "unlock-vehicle", "lock-vehicle"}


def reader_up(daemon: DaemonProcess) -> bool:
    return any(r.get("state") == "up" for r in daemon.health()["readers"])


async def test_sigkill_at_random_points_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, mosquitto: Mosquitto, pcscd_service: PcscdService
) -> None:
    rng = random.Random(SEED)
    reader = pcscd_service.readers[1]  # the second vpcd slot: the flow tests use the first
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=[StationConf(1, "ST001", *SITE, spots=4)],
        readers=[ReaderConf("gate-reader", 1, pcsc_readers=[reader])],
    )
    wire = WireLog(mosquitto.port)
    clock = ScaledClock(10.0)
    broker = Broker("127.0.0.1", mosquitto.port)
    tag = card(meta_read_key=bytes.fromhex(META), file_read_key=bytes.fromhex(FILE))
    vpcd = VpcdCard(tag, port=pcscd_service.port_of(reader))
    backend = Backend(daemon)
    station = RecordingStation("ST001", broker, spots=4, clock=clock, seed=1)
    scooters = {
        s: RecordingScooter(s, broker, clock=clock, start=SITE, battery=90 - 5 * i)
        for i, s in enumerate(SERIALS)
    }
    kills: list[tuple[str, str]] = []  # (phase, what the journal held when it died)
    docks: list[str] = []
    startup: list[float] = []
    last_read = [0.0]

    def crash(phase: str) -> None:
        vpcd.remove()  # the rider walks away: a card left on the reader is a new tap at start
        last_read[0] = time.monotonic()
        rows = daemon.query("SELECT command, state FROM command_journal ORDER BY id DESC LIMIT 1")
        kills.append((phase, f"{rows[0][0]}:{rows[0][1]}" if rows else "-"))
        daemon.kill()
        startup.append(daemon.start())
        last_read[0] = time.monotonic()  # a card still on the reader is read again at start

    def unlocks() -> list[dict]:
        rows = daemon.query(
            "SELECT id, state FROM command_journal WHERE command='unlock-spot' ORDER BY id"
        )
        return [dict(r) for r in rows]

    def journaled_after(before: int) -> bool:
        return len(unlocks()) > before

    def acked_after(before: int) -> bool:
        rows = unlocks()
        return len(rows) > before and rows[-1]["state"] not in ("journaled", "sent")

    def open_trip() -> dict | None:
        rows = daemon.query(
            "SELECT t.id, v.serial_number FROM trips t JOIN vehicles v ON v.id=t.vehicle_id"
            " WHERE t.status IN ('running', 'on-hold')"
        )
        return dict(rows[0]) if rows else None

    def trip_ended(trip_id: int) -> bool:
        return daemon.scalar("SELECT status FROM trips WHERE id=?", (trip_id,)) == "finished"

    async def lock_is(sc: RecordingScooter, state: str, what: str) -> None:
        await until(lambda: sc.core.lock.value == state, 10, what)

    async def tap(phase: str, killing: bool) -> None:
        """Present the card; kill the daemon at this phase's point of the tap, if asked."""
        before = len(unlocks())
        undocks_before = len(station.undocks)
        # The gateway folds taps of one card within 2 s (a card held at the reader).
        await asyncio.sleep(max(0.0, last_read[0] + 2.3 - time.monotonic()))
        vpcd.insert()
        try:
            if killing and phase == "tap":
                await asyncio.sleep(rng.uniform(0.0, 0.8))
                crash(phase)
            elif killing and phase in ("journaled", "acked"):
                done = journaled_after if phase == "journaled" else acked_after
                with contextlib.suppress(AssertionError):  # a misread: tap again
                    await until(lambda: done(before), 4, f"unlock {phase}")
                    crash(phase)
            else:
                with contextlib.suppress(AssertionError):
                    await until(lambda: journaled_after(before), 4, "unlock journaled")
        finally:
            vpcd.remove()
            last_read[0] = time.monotonic()
        if killing and phase == "undocked":
            with contextlib.suppress(AssertionError):
                await until(lambda: len(station.undocks) > undocks_before, 8, "undock")
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                crash(phase)

    async def play(phase: str) -> None:
        """One ride, with one kill at ``phase``."""
        await until(lambda: reader_up(daemon), what="reader up")
        backend.drain()
        trip = None
        killed_before = len(kills)
        for attempt in range(4):
            await tap(phase, killing=len(kills) == killed_before)
            with contextlib.suppress(AssertionError):
                trip = await until(open_trip, 8, "trip started")
            print(
                f"[{phase}] attempt={attempt} undocks={len(station.undocks)} trip={trip}"
                f" unlocks={unlocks()[-2:]}"
            )
            if trip is not None:
                break
            await until(lambda: reader_up(daemon), what="reader up")
        assert trip is not None, f"no trip after 4 taps ({phase}): {daemon.log_tail()}"
        serial = trip["serial_number"]
        sc = scooters[serial]
        await lock_is(sc, "unlocked", "vehicle unlocked")
        sc.ride(random_route(rng, SITE, legs=2, leg_m=(40.0, 80.0), radius_m=300.0))
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        if phase == "riding":
            crash(phase)
            await asyncio.sleep(0.3)
        sc.park()
        sc.core.lat, sc.core.lon = SITE
        free = station.free_spots()
        assert free, station.docked()
        station.dock(free[0], serial)
        docks.append(serial)
        if phase == "docking":
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            crash(phase)
        trip_id = trip["id"]
        await until(lambda: trip_ended(trip_id), 10, f"trip {trip_id} ended")
        await lock_is(sc, "locked", "vehicle locked")

    try:
        startup.append(daemon.start())
        daemon.seed_rider(7, tag.uid.hex())
        for sc in scooters.values():
            await sc.start()
        await until(lambda: len(daemon.get("/api/v1/vehicles")) == 3, what="vehicles learned")
        await station.start()
        for spot, serial in enumerate(SERIALS, start=1):
            station.dock(spot, serial)
        await until(
            lambda: sum(v.get("spot_id") is not None for v in daemon.get("/api/v1/vehicles")) == 3,
            what="vehicles docked",
        )
        order = list(PHASES)
        rng.shuffle(order)
        for phase in order:
            try:
                await play(phase)
            except AssertionError as exc:
                snap = daemon.get("/status/snapshot")
                backend.drain()
                seen = [
                    (e["kind"], e["payload"].get("reason"), e["payload"].get("at"))
                    for e in backend.events
                    if e["kind"].startswith(("tap", "rental", "trip"))
                ]
                raise AssertionError(
                    f"{phase} kills={kills}: {exc}; taps={snap.get('taps')} "
                    f"readers={daemon.health()['readers']} events={seen} apdus={vpcd.apdus}"
                ) from exc

        # Settle: every journaled command reached its end, then the backend catches up.
        await until(
            lambda: (
                daemon.scalar(
                    "SELECT count(*) FROM command_journal WHERE state IN ('journaled','sent')"
                )
                == 0
            ),
            15,
            "journal settled",
        )
        await asyncio.sleep(0.5)
        backend.drain()
        stats = daemon.get("/api/v1/events/stats")
        trips = [dict(r) for r in daemon.query("SELECT * FROM trips ORDER BY id")]
        journal = [dict(r) for r in daemon.query("SELECT * FROM command_journal ORDER BY id")]
        alerts = [dict(r) for r in daemon.query("SELECT * FROM fleet_alerts")]
        serial_of = dict(daemon.query("SELECT id, serial_number FROM vehicles"))
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        with contextlib.suppress(Exception):
            vpcd.remove()
        for dev in (station, *scooters.values()):
            with contextlib.suppress(Exception):
                await dev.stop()
        wire.close()
        daemon.close()

    # -- kill points: each phase once, in seeded order ------------------------------------------
    assert sorted(p for p, _ in kills) == sorted(PHASES), kills

    # -- no trip lost: every undock a trip, every dock an ended trip ----------------------------
    undocked = [v for _, v in station.undocks]
    assert len(trips) == len(undocked) == len(PHASES), (
        [(t["id"], serial_of.get(t["vehicle_id"]), t["start_spot_id"]) for t in trips],
        station.undocks,
        kills,
        [(j["id"], j["command"], j["state"], j["target_id"]) for j in journal],
    )
    assert all(t["status"] == "finished" for t in trips), trips
    assert Counter(serial_of.get(t["vehicle_id"]) for t in trips) == Counter(undocked)
    assert len(docks) == len(trips)

    # -- no event lost or repeated: the cursor feed across every restart ------------------------
    assert backend.duplicates() == {}
    gaps = backend.check_gaps(stats)
    for kind in ("trip.started", "trip.ended"):
        ids = Counter(e["trip_id"] for e in backend.of_kind(kind))
        assert ids == Counter(t["id"] for t in trips), (kind, ids)
    settled = [j for j in journal if j["state"] not in ("journaled", "sent")]
    outcomes = Counter(e["command_id"] for e in backend.of_kind("command.outcome"))
    assert outcomes == Counter(j["id"] for j in settled), (outcomes, settled)
    accepted = backend.of_kind("tap.accepted")
    assert len(accepted) == sum(j["command"] == "unlock-spot" for j in journal)
    raised = backend.of_kind("alert.raised")
    assert len(raised) == len(alerts), (raised, alerts)
    for cls in ("critical", "outcome"):
        assert stats["classes"][cls]["dropped"] == 0

    # -- no command twice: per cmd_id, at the devices and on the wire ----------------------------
    executed: Counter[str] = Counter(station.executed)
    for sc in scooters.values():
        executed.update(sc.executed)
    physical = {j["command"] for j in journal} & PHYSICAL
    assert physical >= {"unlock-spot", "unlock-vehicle", "lock-vehicle"}
    twice = {c: n for c, n in executed.items() if n > 1}
    assert twice == {}, twice
    wire_twice = {c: n for c, n in wire.deliveries.items() if n > 1}
    assert wire_twice == {}, wire_twice
    journal_ids = {command_id_for(j["idempotency_key"]): j for j in journal}
    for cmd_id in executed:
        assert cmd_id in journal_ids, f"a device executed {cmd_id}, which was never journaled"
    never_sent = [j for j in journal if j["state"] == "failed" and "stale" in (j["outcome"] or "")]
    print(
        f"\nkills={kills} startup_s={[round(s, 2) for s in startup]} trips={len(trips)}"
        f" journal={Counter(j['command'] + ':' + j['state'] for j in journal)}"
        f" executed={sum(executed.values())} wire={sum(wire.deliveries.values())}"
        f" events={gaps} stale={len(never_sent)} taps={tag_reads(tag)}"
    )


def tag_reads(tag: object) -> object:
    return getattr(tag, "read_ctr", getattr(tag, "counter", "?"))
