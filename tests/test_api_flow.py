"""The API on the running flow: tap-to-unlock latency in /metrics, operator commands journaled
and sent to real simulated devices through Mosquitto and the MQTT driver, outcomes recorded.
Also the store gaps the flow relies on: a vehicle leaving without a rental frees its spot,
on-hold minutes priced at ``on_hold_price``."""

# ruff: noqa: F811  (the shared `rig` fixture is imported from tests.test_flow)

from __future__ import annotations

import re

import httpx

from dockgate.api import FlowCommandSender, GatewayMetrics, create_app
from dockgate.gateway.protocol import LockState
from tests.test_flow import SITE_A, Rig, rig, until  # noqa: F401

SYNC_TOKEN = "sync-token-flow-0123456789"
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}


def client_for(rig: Rig, metrics: GatewayMetrics | None = None) -> httpx.AsyncClient:
    assert rig.flow is not None
    app = create_app(
        rig.store,
        rig.outbox,
        tokens={SYNC_TOKEN: ["sync"]},
        command_sender=FlowCommandSender(rig.flow),
        metrics=metrics,
        command_timeout=8.0,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def histogram(text: str, name: str) -> tuple[float, float]:
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    assert count and total, text
    return float(count.group(1)), float(total.group(1))


async def test_tap_to_unlock_latency_reaches_metrics(rig: Rig) -> None:
    metrics = GatewayMetrics(rig.outbox)
    await rig.start_gateway(metrics=metrics)
    rig.consume()
    await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    async with client_for(rig, metrics) as client:
        before = histogram((await client.get("/metrics")).text, "dockgate_tap_to_unlock_seconds")
        assert before == (0.0, 0.0)
        decision = await rig.flow.on_tap(rig.tap(rig.rider(7)))  # type: ignore[union-attr]
        assert decision.status == "unlocked", decision
        refused = await rig.flow.on_tap(rig.tap(rig.rider(8, credit=0)))  # type: ignore[union-attr]
        assert refused.reason == "no_credit"  # a refusal sends no unlock: not observed
        count, total = histogram(
            (await client.get("/metrics")).text, "dockgate_tap_to_unlock_seconds"
        )
    assert count == 1.0 and 0.0 < total < 1.0


async def test_api_commands_reach_the_devices_and_are_journaled(rig: Rig) -> None:
    await rig.start_gateway()  # no device messages consumed: no rule commands interleave
    station = await rig.station("ST01", {1: "SXB001"})
    scooter = await rig.scooter("SXB001", SITE_A, 90)
    await until(lambda: scooter.core.lock is LockState.LOCKED, what="scooter online")
    async with client_for(rig) as client:
        r = await client.post(
            "/api/v1/vehicles/1/commands",
            json={"command": "max_speed", "max_speed": 12},
            headers={**SYNC, "Idempotency-Key": "speed-1"},
        )
        body = r.json()["data"]
        assert r.status_code == 200 and body["state"] == "acked", body
        assert scooter.core.max_speed_cap == 12
        again = await client.post(
            "/api/v1/vehicles/1/commands",
            json={"command": "max_speed", "max_speed": 12},
            headers={**SYNC, "Idempotency-Key": "speed-1"},
        )
        assert again.json()["data"]["id"] == body["id"]  # journaled once, sent once
        assert scooter.counters.received["cmd-set-max-speed"] == 1

        r = await client.post("/api/v1/spots/11/commands", json={"command": "unlock"}, headers=SYNC)
        spot = r.json()["data"]
        assert spot["state"] == "acked" and spot["outcome"]["device_status"] == "done", spot
        assert not station.core.spot(1).locked
        r = await client.post("/api/v1/spots/11/commands", json={"command": "lock"}, headers=SYNC)
        assert r.json()["data"]["state"] == "acked"
        assert station.core.spot(1).locked

        # a vehicle nobody answers for: a timeout outcome, not an error
        rig.store.upsert_vehicle(9, 1, "SXB009")
        r = await client.post("/api/v1/vehicles/9/commands", json={"command": "lock"}, headers=SYNC)
        assert r.status_code == 200 and r.json()["data"]["state"] == "timeout", r.json()
    outcomes = [e for e in rig.events("command.outcome") if "outcome" in e]
    assert [o["outcome"]["status"] for o in outcomes] == ["acked", "acked", "acked", "timeout"]


async def test_vehicle_leaving_without_rental_frees_the_spot(rig: Rig) -> None:
    await rig.start_gateway()
    rig.consume()
    station = await rig.station("ST01", {1: "SXB001"})
    assert rig.store.spot(11)["vehicle_id"] == 1
    station.undock(1)  # a technician takes it away: no rental
    await until(lambda: rig.store.spot(11)["vehicle_id"] is None, what="spot freed")
    assert rig.store.spot(11)["state"] == "free" and rig.store.vehicle(1)["spot_id"] is None
    undocked = await until(lambda: rig.events("spot.undocked"), what="undock event")
    assert undocked[0]["vehicle_id"] == 1 and undocked[0]["spot"] == 1
    station.dock(3, "SXB001")
    await until(lambda: rig.store.vehicle(1)["spot_id"] == 13, what="docked again")


async def test_on_hold_minutes_are_priced_at_on_hold_price(rig: Rig) -> None:
    now = [1_750_000_000.0]
    rig.store.clock = lambda: now[0]
    flow = await rig.start_gateway(clock=lambda: now[0])
    rig.store.upsert_rider(7, credit=5000)
    trip_id = rig.store.start_trip(7, 1)
    now[0] += 600
    rig.store.set_trip_status(trip_id, "on_hold")  # what the engine's trip hold does
    now[0] += 600
    trip = rig.store.trip(trip_id)
    # demo-milano: 1.00 unlock, 0.25/min riding, 0.10/min on hold
    assert flow.trip_cost(trip, now[0]) == round((1.00 + 10 * 0.25 + 10 * 0.10) * 100)
