"""The API on the running flow: tap-to-unlock latency in /metrics, operator commands journaled
and sent through the flow's command port (the fake one of ``tests/plugins/flow.py``),
outcomes recorded. Also the store gaps the flow relies on: a vehicle leaving without a
rental frees its spot, on-hold minutes priced at ``on_hold_price``."""

from __future__ import annotations

import re

import httpx

from dockgate.api import FlowCommandSender, GatewayMetrics, create_app
from dockgate.gateway.protocol import Command, DeviceRef
from tests.plugins.flow import FlowRig, PortReply

SYNC_TOKEN = "sync-token-flow-0123456789"
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}


def client_for(rig: FlowRig, metrics: GatewayMetrics | None = None) -> httpx.AsyncClient:
    app = create_app(
        rig.store,
        rig.outbox,
        tokens={SYNC_TOKEN: ["sync"]},
        command_sender=FlowCommandSender(rig.running),
        metrics=metrics,
        command_timeout=8.0,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def histogram(text: str, name: str) -> tuple[float, float]:
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    assert count and total, text
    return float(count.group(1)), float(total.group(1))


async def test_tap_to_unlock_latency_reaches_metrics(rig: FlowRig) -> None:
    metrics = GatewayMetrics(rig.outbox)
    flow = await rig.start_gateway(metrics=metrics)
    async with client_for(rig, metrics) as client:
        before = histogram((await client.get("/metrics")).text, "dockgate_tap_to_unlock_seconds")
        assert before == (0.0, 0.0)
        decision = await flow.on_tap(rig.tap(rig.rider(7)))
        assert decision.status == "unlocked", decision
        refused = await flow.on_tap(rig.tap(rig.rider(8, credit=0)))
        assert refused.reason == "no_credit"  # a refusal sends no unlock: not observed
        count, total = histogram(
            (await client.get("/metrics")).text, "dockgate_tap_to_unlock_seconds"
        )
    assert count == 1.0 and 0.0 < total < 1.0


async def test_api_commands_reach_the_devices_and_are_journaled(rig: FlowRig) -> None:
    def devices(device: DeviceRef, command: Command) -> PortReply:
        if device.device_id == "SXB009":  # nobody answers for it: the driver gives up
            return PortReply("no-ack", "no reply", 3)
        return PortReply("done")

    rig.port.handler = devices
    await rig.start_gateway()  # no device messages: no rule commands interleave
    async with client_for(rig) as client:
        r = await client.post(
            "/api/v1/vehicles/1/commands",
            json={"command": "max_speed", "max_speed": 12},
            headers={**SYNC, "Idempotency-Key": "speed-1"},
        )
        body = r.json()["data"]
        assert r.status_code == 200 and body["state"] == "acked", body
        [speed] = rig.port.commands("set-max-speed", "SXB001")
        assert speed.max_speed == 12  # type: ignore[union-attr]
        again = await client.post(
            "/api/v1/vehicles/1/commands",
            json={"command": "max_speed", "max_speed": 12},
            headers={**SYNC, "Idempotency-Key": "speed-1"},
        )
        assert again.json()["data"]["id"] == body["id"]  # journaled once, sent once
        assert len(rig.port.commands("set-max-speed")) == 1

        r = await client.post("/api/v1/spots/11/commands", json={"command": "unlock"}, headers=SYNC)
        spot = r.json()["data"]
        assert spot["state"] == "acked" and spot["outcome"]["device_status"] == "done", spot
        [unlock] = rig.port.commands("unlock-spot", "ST01")
        assert unlock.spot == 1  # type: ignore[union-attr]
        r = await client.post("/api/v1/spots/11/commands", json={"command": "lock"}, headers=SYNC)
        assert r.json()["data"]["state"] == "acked"
        [lock] = rig.port.commands("lock-spot", "ST01")
        assert lock.spot == 1  # type: ignore[union-attr]

        # a vehicle nobody answers for: a timeout outcome, not an error
        rig.store.vehicles.upsert(9, 1, "SXB009")
        r = await client.post("/api/v1/vehicles/9/commands", json={"command": "lock"}, headers=SYNC)
        assert r.status_code == 200 and r.json()["data"]["state"] == "timeout", r.json()
    outcomes = [e for e in rig.events("command.outcome") if "outcome" in e]
    assert [o["outcome"]["status"] for o in outcomes] == ["acked", "acked", "acked", "timeout"]


async def test_vehicle_leaving_without_rental_frees_the_spot(rig: FlowRig) -> None:
    await rig.start_gateway()
    assert rig.store.topology.spot(11).vehicle_id == 1
    await rig.undock("ST01", 1, "SXB001")  # a technician takes it away: no rental
    spot = rig.store.topology.spot(11)
    assert spot.vehicle_id is None and spot.state == "free"
    assert rig.store.vehicles.get(1).spot_id is None
    undocked = rig.events("spot.undocked")
    assert undocked[0]["vehicle_id"] == 1 and undocked[0]["spot"] == 1
    await rig.dock("ST01", 3, "SXB001")
    assert rig.store.vehicles.get(1).spot_id == 13


async def test_on_hold_minutes_are_priced_at_on_hold_price(rig: FlowRig) -> None:
    now = [1_750_000_000.0]
    rig.store.clock = lambda: now[0]
    flow = await rig.start_gateway(clock=lambda: now[0])
    rig.store.riders.upsert(7, credit=5000)
    trip_id = rig.store.trips.start(7, 1)
    now[0] += 600
    rig.store.trips.set_status(trip_id, "on-hold")  # what the engine's trip hold does
    now[0] += 600
    trip = rig.store.trips.get(trip_id)
    # demo-milano: 1.00 unlock, 0.25/min riding, 0.10/min on hold
    assert flow.trip_cost(trip, now[0]) == round((1.00 + 10 * 0.25 + 10 * 0.10) * 100)
