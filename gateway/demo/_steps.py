"""The scripted day: seven steps, each acting on the simulated street and checking the result.

A step returns a one-line account of what happened, or raises :class:`StepFailed` saying what
it did not see. Checks read what the backend received from ``/api/v1/events`` and what the
simulated devices did, the two ends the gateway sits between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockgate.gateway.demo._check import StepFailed, until
from dockgate.gateway.demo._site import CARD_RIDER, RING_RIDER, DemoSite
from dockgate.gateway.demo._world import route_out_east, route_to_duomo
from dockgate.gateway.protocol import LockState
from dockgate.gateway.taps import Tap
from dockgate.sim.ntag424 import Ntag424Tag, clone_of
from dockgate.sim.transports import VpcdCard

OUT_OF_NETWORK = "vehicle-out-of-network-area"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    title: str
    run: Callable[[DemoSite, dict[str, Any]], Awaitable[str]]


# -- helpers ----------------------------------------------------------------------------------
async def present(site: DemoSite, tag: Ntag424Tag, reader: int) -> Tap:
    """Hold ``tag`` on a station's reader until the daemon has verified it, then take it away.

    The tap is found by the UID the reader saw, so a tap by another program sharing the
    machine's one pcscd is never mistaken for ours.
    """
    daemon = site.daemon
    assert daemon is not None
    before = list(daemon.recent_taps)

    def ours() -> Tap | None:
        return next(
            (
                t
                for t in reversed(daemon.recent_taps)
                if t.event.uid == tag.uid and not any(t is b for b in before)
            ),
            None,
        )

    for _attempt in range(3):  # a rider whose tap was not read, or misread, tries again
        vpcd = VpcdCard(tag, port=site.vpcd_port(reader))
        await _insert(vpcd)
        try:
            tap = await until(ours, "the reader seeing the tag", timeout=4)
        except StepFailed:
            tap = None
        finally:
            await asyncio.to_thread(vpcd.remove)
        await asyncio.sleep(0.6)  # pcscd polls about every 0.44 s: let it see the removal
        if tap is not None and tap.event.error is None:
            return tap
        if tap is not None:  # a read that failed (e.g. another client on the shared pcscd)
            before.append(tap)
    raise StepFailed(f"the reader at vpcd port {site.vpcd_port(reader)} never read the tag")


def slot_busy(port: int) -> bool:
    """Whether a card is already connected to this vpcd slot (vpcd serves one at a time);
    read from /proc/net/tcp, because connecting to find out would itself insert a card."""
    needle = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 3 and cols[1].endswith(needle) and cols[3] == "01":
                    return True
    return False


async def _insert(vpcd: VpcdCard, wait: float = 20.0) -> None:
    """Present the card once the slot is free (another program on this machine's one pcscd
    may be holding a card there for a while)."""
    deadline = time.monotonic() + wait
    while slot_busy(vpcd.port):
        if time.monotonic() > deadline:
            raise StepFailed(
                f"another program keeps a card on the virtual reader (vpcd port {vpcd.port})"
            )
        await asyncio.sleep(0.2)
    try:
        await asyncio.to_thread(vpcd.insert, 3.0)
    except OSError as exc:
        raise StepFailed(f"cannot present a card at vpcd port {vpcd.port}: {exc}") from None


def serial_of(site: DemoSite, vehicle_id: int) -> str:
    assert site.daemon is not None
    return site.daemon.store.vehicles.get(vehicle_id).serial_number


def backend(site: DemoSite) -> Any:
    assert site.backend is not None
    return site.backend


def bundle_config(site: DemoSite) -> Any:
    assert site.daemon is not None
    return site.daemon.engine.bundle.config


# -- the steps --------------------------------------------------------------------------------
async def tap_unlock(site: DemoSite, day: dict[str, Any]) -> str:
    started = time.monotonic()
    tap = await present(site, site.tags["card"], reader=0)
    if not tap.accepted:
        raise StepFailed(f"the rider's card was refused at ST01: {tap.reason}")
    api = backend(site)
    accepted = await api.wait_for("tap.accepted", lambda p: p["rider_id"] == CARD_RIDER)
    outcome = await api.wait_for(
        "command.outcome",
        lambda p: p["command_id"] == accepted["command_id"] and p["state"] != "sent",
    )
    if outcome["state"] != "acked" or outcome.get("status") not in (None, "done", "acked"):
        raise StepFailed(f"unlock-spot not done: {outcome['state']} {outcome.get('reason')}")
    unlocked_in = time.monotonic() - started
    trip = await api.wait_for("trip.started", lambda p: p["rider_id"] == CARD_RIDER)
    serial = serial_of(site, trip["vehicle_id"])
    scooter = site.scooters[serial]
    await until(lambda: scooter.core.lock is LockState.UNLOCKED, f"{serial} unlocked")
    day["card_trip"], day["card_serial"] = trip, serial
    return (
        f"card {tap.uid} at ST01: spot {accepted['spot_id'] % 1000} unlocked and acked "
        f"({unlocked_in:.1f} s from the card touching the reader), {serial} undocked, "
        f"trip {trip['trip_id']} started"
    )


async def speed_zone(site: DemoSite, day: dict[str, Any]) -> str:
    serial = day["card_serial"]
    scooter = site.scooters[serial]
    zone = next(z for z in bundle_config(site).speed_zones if z.name == "Centro storico")
    scooter.ride(route_to_duomo())
    await until(lambda: scooter.core.max_speed_cap == zone.max_speed, "set-max-speed obeyed")
    await until(lambda: scooter.core.speed <= zone.max_speed, f"{serial} at or under the limit")
    await until(lambda: not scooter.core.riding, f"{serial} arriving at ST02", timeout=30)
    scooter.park()
    return (
        f"{serial} rode into '{zone.name}': the gateway sent set-max-speed {zone.max_speed}, "
        f"the scooter now caps at {scooter.core.max_speed} km/h"
    )


async def border(site: DemoSite, day: dict[str, Any]) -> str:
    tap = await present(site, site.tags["ring"], reader=1)
    if not tap.accepted:
        raise StepFailed(f"the rider's ring was refused at ST03: {tap.reason}")
    api = backend(site)
    trip = await api.wait_for("trip.started", lambda p: p["rider_id"] == RING_RIDER)
    serial = serial_of(site, trip["vehicle_id"])
    scooter = site.scooters[serial]
    await until(lambda: scooter.core.lock is LockState.UNLOCKED, f"{serial} unlocked")
    scooter.ride(route_out_east())
    alert = await api.wait_for(
        "alert.raised",
        lambda p: p["alert_type"] == OUT_OF_NETWORK and p["vehicle_id"] == trip["vehicle_id"],
        timeout=30,
    )
    settings = bundle_config(site).border.settings
    done = [f"alert {OUT_OF_NETWORK} ({alert['severity']})"]
    if settings.play_vehicle_sound:
        await until(lambda: "geofencing" in scooter.core.sounds, "the geofencing sound played")
        done.append("geofencing sound played")
    if settings.reduce_vehicle_speed:
        slow = site.daemon.engine.bundle.config.safety.slow_speed_kph  # type: ignore[union-attr]
        await until(
            lambda: (scooter.core.max_speed_cap or 99) <= slow, f"{serial} slowed to {slow} km/h"
        )
        done.append(f"slowed to {scooter.core.max_speed} km/h")
    scooter.park()  # the rider stops outside
    if settings.lock_vehicle:
        await until(lambda: scooter.core.lock is not LockState.UNLOCKED, f"{serial} locked")
        done.append(f"locked once stopped ({scooter.core.lock.value})")
    day["ring_trip"] = trip
    return f"ring at ST03, {serial} rode east out of the network: " + ", ".join(done)


async def dock(site: DemoSite, day: dict[str, Any]) -> str:
    serial, trip = day["card_serial"], day["card_trip"]
    st02 = site.stations["ST02"]
    spot = st02.free_spots()[0]
    st02.dock(spot, serial)
    api = backend(site)
    ended = await api.wait_for("trip.ended", lambda p: p["trip_id"] == trip["trip_id"])
    if ended["station_id"] != 2 or ended["cost"] < 1:
        raise StepFailed(f"trip ended at station {ended['station_id']} costing {ended['cost']}")
    rider = await api.get(f"/api/v1/users/{CARD_RIDER}")
    if rider["credit"] != 2000 - ended["cost"]:
        raise StepFailed(f"credit {rider['credit']} not charged {ended['cost']} cents")
    await until(
        lambda: site.scooters[serial].core.lock is LockState.LOCKED, f"{serial} locked in the dock"
    )
    minutes = (ended["ended_at"] - ended["started_at"]) / 60
    return (
        f"{serial} docked at ST02 spot {spot}: trip {trip['trip_id']} ended, "
        f"{ended['cost'] / 100:.2f} EUR for {minutes:.1f} min, credit now "
        f"{rider['credit'] / 100:.2f} EUR"
    )


async def clone_replay(site: DemoSite, day: dict[str, Any]) -> str:
    api = backend(site)
    genuine = site.tags["card"]
    if site.break_step == "clone-replay":  # self-test: a perfect copy, with the real keys
        fake = Ntag424Tag(genuine.uid, genuine.source.clone(), name="copy")  # type: ignore[attr-defined]
    else:
        fake = clone_of(genuine)
    after = api.cursor
    tap = await present(site, fake, reader=0)
    if tap.accepted:
        raise StepFailed("a clone of the rider's card was accepted")
    try:
        refused = await api.wait_for(
            "tap.refused",
            lambda p: p["reader"] == tap.event.reader and p["detail"] == tap.reason,
            after=after,
        )
    except StepFailed as exc:
        raise StepFailed(f"clone tap ({tap.reason}, duplicate={tap.duplicate}): {exc}") from None
    shown = await until(
        lambda: [f for f in site.stations["ST01"].feedback if f.result == "refused"],
        "refusal shown at ST01",
    )
    clone_line = (
        f"clone refused ({refused['reason']}: {refused['detail']}; ST01 shows '{shown[-1].reason}')"
    )
    st01 = site.stations["ST01"]
    unlocks = st01.counters.received["cmd-unlock-spot"]
    genuine.faults.replay = True  # the chip serves its last message again: a recorded tap
    try:
        after = api.cursor
        tap = await present(site, genuine, reader=0)
    finally:
        genuine.faults.replay = False
    if tap.accepted or tap.reason != "replayed":
        raise StepFailed(f"a replayed SUN message was not refused as replayed: {tap.reason}")
    await asyncio.sleep(0.5)  # time for a (wrong) unlock to reach the station
    opened = st01.counters.received["cmd-unlock-spot"] - unlocks
    accepted = [e for e in api.received if e["cursor"] > after and e["kind"] == "tap.accepted"]
    if opened or accepted:
        raise StepFailed(f"a replayed message opened {opened} spot(s), {len(accepted)} accepted")
    return f"{clone_line}; replayed message refused (replayed), no spot opened"


async def power_cut(site: DemoSite, day: dict[str, Any]) -> str:
    api = backend(site)
    st = site.stations["ST02"]
    st.cut_power()
    raised = await api.wait_for("alert.raised", lambda p: p["alert_type"] == "station-power-cut")
    await _outage_open(api, True)
    st.restore_power()
    await api.wait_for("alert.cleared", lambda p: p["alert_id"] == raised["alert_id"])
    await _outage_open(api, False)
    return (
        f"ST02 on backup battery: alert {raised['alert_id']} station-power-cut raised with "
        "an open outage, both cleared when power came back"
    )


async def _outage_open(api: Any, expected: bool) -> None:
    """Wait until ``/clusters/1/outages`` lists an open outage (or none)."""
    deadline = time.monotonic() + 5
    while True:
        outages = await api.get("/api/v1/clusters/1/outages")
        if any(o["ended_at"] is None for o in outages) == expected:
            return
        if time.monotonic() > deadline:
            state = "no open outage" if expected else "the outage still open"
            raise StepFailed(f"/api/v1/clusters/1/outages shows {state}")
        await asyncio.sleep(0.1)


async def catch_up(site: DemoSite, day: dict[str, Any]) -> str:
    api = backend(site)
    daemon = site.daemon
    assert daemon is not None
    await api.pause()
    paused_at, stopped = api.cursor, time.monotonic()
    for device_id in ("ST01", "ST03"):  # critical events while the backend is away
        site.stations[device_id].trigger_alarm("tamper")
        site.stations[device_id].clear_alarm()
    for sim in site.scooters.values():
        sim.report_now()
    await until(
        lambda: sum(1 for e in daemon.outbox.read(paused_at, 10_000) if e.priority <= 1) >= 4,
        "events accumulating while the backend is away",
    )
    await asyncio.sleep(2.5)  # the fleet keeps reporting while the backend is away
    waiting = daemon.outbox.read(paused_at, 10_000)
    must_arrive = {e.idempotency_key for e in waiting if e.priority <= 1}
    target = daemon.outbox.last_cursor
    api.resume()
    await until(lambda: api.cursor >= target, "the backend catching up")
    caught_up = time.monotonic() - stopped
    keys = [e["idempotency_key"] for e in api.received]
    cursors = [e["cursor"] for e in api.received]
    if len(set(keys)) != len(keys) or cursors != sorted(set(cursors)):
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        raise StepFailed(f"events delivered more than once or out of order: {dupes[:3]}")
    missing = must_arrive - set(keys)
    if missing:
        raise StepFailed(f"{len(missing)} event(s) queued during the outage never arrived")
    lost = _unaccounted(site)
    if lost:
        raise StepFailed(lost)
    return (
        f"backend away {caught_up:.1f} s while {len(waiting)} events queued "
        f"({len(must_arrive)} alerts and outcomes); caught up: {len(keys)} events in all, "
        f"each exactly once, none lost"
    )


def _unaccounted(site: DemoSite) -> str | None:
    """Alerts and outcomes are never dropped or compacted: each appended one must have reached
    the backend or still be pending; state may be superseded (compacted), never dropped."""
    assert site.daemon is not None and site.backend is not None
    received = Counter(e["priority"] for e in site.backend.received)
    for priority, stats in site.daemon.outbox.stats().items():
        name = priority.name.lower()
        if stats.dropped:
            return f"{stats.dropped} {name} events dropped"
        if name in ("critical", "outcome") and stats.appended != received[name] + stats.pending:
            return (
                f"{name}: {stats.appended} appended but {received[name]} received "
                f"and {stats.pending} pending"
            )
    return None


STEPS: tuple[Step, ...] = (
    Step("tap-unlock", "a card tap at ST01 unlocks a spot and starts a trip", tap_unlock),
    Step("speed-zone", "the ride enters a speed zone: max speed commanded", speed_zone),
    Step("border", "a ride leaves the network border: alert, sound, slow-down", border),
    Step("dock", "the vehicle docks at ST02: trip ended with its cost", dock),
    Step("clone-replay", "a clone card and a replayed message are refused", clone_replay),
    Step("power-cut", "a station power cut raises an outage alert, then restore", power_cut),
    Step("catch-up", "upstream outage: the backend catches up, every event once", catch_up),
)
BREAKABLE = ("clone-replay", "catch-up")
