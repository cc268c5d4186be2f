"""The cluster demo's day: rides on the leader, the leader killed mid-ride, the standby going on.

A step returns a one-line account of what happened, or raises :class:`StepFailed` saying what
it did not see. Taps come from the station controllers' readers over the broker, so they reach
whichever node leads. Checks read what the backend received from the feed (through any
node) and what the simulated devices did.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dockgate.gateway.demo._check import StepFailed, until
from dockgate.gateway.demo._cluster_backend import ClusterBackendClient
from dockgate.gateway.demo._cluster_site import ClusterDemoSite, until_async
from dockgate.gateway.demo._site import CARD_RIDER, RING_RIDER
from dockgate.gateway.demo._world import site, station
from dockgate.gateway.protocol import LockState
from dockgate.sim.routes import Route
from dockgate.sim.sdm import SdmTag

TAKEOVER_LIMIT_S = 5.0
CLASSES_NEVER_DROPPED = ("critical", "outcome")


@dataclass(frozen=True, slots=True)
class ClusterStep:
    name: str
    title: str
    run: Callable[[ClusterDemoSite, dict[str, Any]], Awaitable[str]]


def backend(site: ClusterDemoSite) -> ClusterBackendClient:
    if site.backend is None:
        raise StepFailed("the backend is not running")
    return site.backend


async def serial_of(site: ClusterDemoSite, vehicle_id: int) -> str:
    vehicle = await backend(site).get(f"/api/v1/vehicles/{vehicle_id}")
    return str(vehicle["serial_number"])


def sun_of(site: ClusterDemoSite, tag: str) -> SdmTag:
    """The tag's SUN message source, as a reader reads it (the presets' tags have one)."""
    source = site.tags[tag].source
    if not isinstance(source, SdmTag):
        raise StepFailed(f"the {tag} has no SUN message to read")
    return source


async def leader_id(site: ClusterDemoSite) -> str:
    leader = await site.leader()
    return leader.node_id if leader is not None else "no node"


async def ride_from(
    site: ClusterDemoSite, reader: str, tag: str, rider: int, after: int
) -> tuple[dict[str, Any], str]:
    """A tap at ``reader``: the unlock acknowledged and the trip started; (trip, serial)."""
    site.readers[reader].present(sun_of(site, tag))
    api = backend(site)
    accepted = await api.wait_for("tap.accepted", lambda p: p["rider_id"] == rider, after=after)
    outcome = await api.wait_for(
        "command.outcome",
        lambda p: p["command_id"] == accepted["command_id"] and p["state"] != "sent",
        after=after,
    )
    if outcome["state"] != "acked":
        raise StepFailed(f"unlock-spot not done: {outcome['state']} {outcome.get('reason')}")
    trip = await api.wait_for("trip.started", lambda p: p["rider_id"] == rider, after=after)
    serial = await serial_of(site, trip["vehicle_id"])
    scooter = site.scooters[serial]
    await until(lambda: scooter.core.lock is LockState.UNLOCKED, f"{serial} unlocked")
    return trip, serial


async def dock_at(
    site: ClusterDemoSite, serial: str, device_id: str, trip: dict[str, Any]
) -> dict[str, Any]:
    """Park ``serial`` in the first free spot of ``device_id``; the trip's end."""
    scooter = site.scooters[serial]
    scooter.park()
    scooter.core.lat, scooter.core.lon = site_of(device_id)
    st = site.stations[device_id]
    st.dock(st.free_spots()[0], serial)
    ended: dict[str, Any] = await backend(site).wait_for(
        "trip.ended", lambda p: p["trip_id"] == trip["trip_id"], timeout=15
    )
    await until(lambda: scooter.core.lock is LockState.LOCKED, f"{serial} locked in the dock")
    return ended


def site_of(device_id: str) -> tuple[float, float]:
    return site(station(device_id))


# -- the steps --------------------------------------------------------------------------------
async def tap_unlock(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    started = time.monotonic()
    trip, serial = await ride_from(site, "R-ST01", "card", CARD_RIDER, after=0)
    day["card_trip"], day["card_serial"] = trip, serial
    return (
        f"card at ST01's reader, verified by {await leader_id(site)} over the broker: {serial} "
        f"unlocked in {time.monotonic() - started:.1f} s, trip {trip['trip_id']} started"
    )


async def dock(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    ended = await dock_at(site, day["card_serial"], "ST02", day["card_trip"])
    rider = await backend(site).get(f"/api/v1/users/{CARD_RIDER}")
    if ended["station_id"] != 2 or rider["credit"] != 2000 - ended["cost"]:
        raise StepFailed(f"trip ended at {ended['station_id']}, credit {rider['credit']}")
    return (
        f"{day['card_serial']} docked at ST02: trip {ended['trip_id']} ended, "
        f"{ended['cost'] / 100:.2f} EUR charged"
    )


async def ring_ride(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    trip, serial = await ride_from(site, "R-ST03", "ring", RING_RIDER, after=0)
    site.scooters[serial].ride(Route("lambrate-porta-vittoria", [site_of("ST03"), site_of("ST01")]))
    day["ring_trip"], day["ring_serial"] = trip, serial
    return f"ring at ST03's reader: {serial} unlocked, trip {trip['trip_id']} under way to ST01"


async def leader_dies(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    old = await site.leader()
    if old is None:
        raise StepFailed("no node leads before the kill")
    api = backend(site)
    mark = api.cursor
    killed_at = time.time()
    await asyncio.to_thread(old.kill)
    # The street does not wait for the site: a power cut, and a new ride, with no leader.
    site.stations["ST02"].cut_power()
    site.readers["R-ST01"].present(sun_of(site, "card"))
    new, led_at = await site.wait_leader(15, other_than=old)
    takeover = led_at - killed_at
    state = await new.cluster_state(site.http) or {}
    day.update(old=old, new=new, takeover=takeover, mark=mark)
    if takeover >= TAKEOVER_LIMIT_S:
        raise StepFailed(f"{new.node_id} took the lead only {takeover:.1f} s after the kill")
    raised = await api.wait_for(
        "alert.raised", lambda p: p["alert_type"] == "station-power-cut", after=mark, timeout=15
    )
    day["power_alert"] = raised["alert_id"]
    trip = await api.wait_for(
        "trip.started", lambda p: p["rider_id"] == CARD_RIDER, after=mark, timeout=15
    )
    day["second_trip"] = trip
    day["second_serial"] = await serial_of(site, trip["vehicle_id"])
    return (
        f"{old.node_id} killed (SIGKILL); {new.node_id} led {takeover:.1f} s later with token "
        f"{state.get('token')}; the tap and the power cut made with no leader were applied "
        f"once it led (trip {trip['trip_id']}, alert {raised['alert_id']})"
    )


async def after_takeover(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    ring = await dock_at(site, day["ring_serial"], "ST01", day["ring_trip"])
    second = await dock_at(site, day["second_serial"], "ST01", day["second_trip"])
    site.stations["ST02"].restore_power()
    await backend(site).wait_for(
        "alert.cleared", lambda p: p["alert_id"] == day["power_alert"], after=day["mark"]
    )
    old = day["old"]
    await asyncio.to_thread(old.start)

    async def standby() -> bool:
        state = await old.cluster_state(site.http)
        return state is not None and state.get("role") == "standby"

    await until_async(standby, f"{old.node_id} back as a standby", 60)
    return (
        f"ring trip {ring['trip_id']} (started under {old.node_id}) ended at ST01 under "
        f"{day['new'].node_id}, trip {second['trip_id']} too; ST02's power back, alert "
        f"cleared; {old.node_id} restarted and stands by"
    )


async def nothing_lost(site: ClusterDemoSite, day: dict[str, Any]) -> str:
    api = backend(site)
    stats = await api.get("/api/v1/events/stats")
    await until(lambda: api.cursor >= stats["last_cursor"], "the backend catching up", timeout=20)
    stats = await api.get("/api/v1/events/stats")
    keys = [e["idempotency_key"] for e in api.received]
    cursors = [e["cursor"] for e in api.received]
    if len(set(keys)) != len(keys) or cursors != sorted(set(cursors)):
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        raise StepFailed(f"events delivered twice or out of order: {dupes[:3]}")
    lost = unaccounted(stats, api)
    if lost:
        raise StepFailed(lost)
    started = Counter(e["payload"]["trip_id"] for e in api.received if e["kind"] == "trip.started")
    ended = Counter(e["payload"]["trip_id"] for e in api.received if e["kind"] == "trip.ended")
    if started != ended or set(started.values()) != {1}:
        raise StepFailed(f"trips started {dict(started)} but ended {dict(ended)}")
    taps = sum(1 for e in api.received if e["kind"] == "tap.accepted")
    unlocks = sum(st.counters.received["cmd-unlock-spot"] for st in site.stations.values())
    if unlocks != taps:
        raise StepFailed(f"{unlocks} unlocks executed for {taps} accepted taps")
    return (
        f"{len(keys)} events, each once and in cursor order; {len(started)} trips, each "
        f"started and ended once; {unlocks} unlocks for {taps} taps; take-over in "
        f"{day['takeover']:.1f} s"
    )


def unaccounted(stats: dict[str, Any], api: ClusterBackendClient) -> str | None:
    """Alerts and outcomes are never dropped: each appended one reached the backend or is
    still pending (state events may be superseded, never dropped)."""
    received = Counter(e["priority"] for e in api.received)
    for name, cls in stats["classes"].items():
        if cls["dropped"]:
            return f"{cls['dropped']} {name} events dropped"
        if name in CLASSES_NEVER_DROPPED and cls["appended"] != received[name] + cls["pending"]:
            return (
                f"{name}: {cls['appended']} appended but {received[name]} received and "
                f"{cls['pending']} pending"
            )
    return None


CLUSTER_STEPS: tuple[ClusterStep, ...] = (
    ClusterStep("tap-unlock", "a card tap at ST01's reader (the broker) starts a trip", tap_unlock),
    ClusterStep("dock", "the scooter docks at ST02: the trip ends with its cost", dock),
    ClusterStep("ring-ride", "a ring tap at ST03 starts a ride, under way to ST01", ring_ride),
    ClusterStep("leader-dies", "the leader killed mid-ride: the standby takes over", leader_dies),
    ClusterStep("after", "the rides end on the new leader; the dead node returns", after_takeover),
    ClusterStep("nothing-lost", "every event once and in order, no unlock twice", nothing_lost),
)
