"""The local API: auth and scopes, envelopes, state, events, alerts, riders, commands, config."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest

from dockgate.api import PlayCheck, create_app
from dockgate.api.auth import RedactTokens
from dockgate.api.ports import SunPlayVerifier
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import NewAlert
from dockgate.gateway.sun import SunSettings, SunVerifier
from dockgate.sim.sdm import SdmTag
from tests.support.api import READ_TOKEN, SYNC_TOKEN, AckingSender
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

KEY_HEX = "00112233445566778899aabbccddeeff"
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def build(tmp_path, sender=None, verifier=None):
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    outbox = Outbox(store.db)
    app = create_app(
        store,
        outbox,
        tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]},
        command_sender=sender,
        play_verifier=verifier,
        command_timeout=0.5,
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return store, outbox, client


@pytest.fixture
async def env(tmp_path):
    sender = AckingSender()
    store, outbox, client = build(tmp_path, sender)
    async with client:
        yield store, outbox, client, sender


async def test_auth_header_query_and_scopes(env) -> None:
    _, _, client, _ = env
    r = await client.get("/api/v1/vehicles")
    assert r.status_code == 401 and r.json()["code"] != 0 and "token" in r.json()["message"]
    assert (
        await client.get("/api/v1/vehicles", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    r = await client.get("/api/v1/vehicles", params={"private_token": READ_TOKEN})
    assert r.status_code == 200 and r.json()["code"] == 0 and len(r.json()["data"]) == 4
    r = await client.post("/api/v1/fleet-alerts/resolve", json={"alert_ids": [1]}, headers=READ)
    assert r.status_code == 403
    assert READ_TOKEN not in r.text and SYNC_TOKEN not in r.text


def test_tokens_must_be_long_and_scoped() -> None:
    from dockgate.api import TokenRegistry

    with pytest.raises(ValueError):
        TokenRegistry.from_mapping({"short": ["sync"]})
    with pytest.raises(ValueError):
        TokenRegistry.from_mapping({SYNC_TOKEN: ["admin"]})


async def test_state_resources(env) -> None:
    _, _, client, _ = env
    clusters = (await client.get("/api/v1/clusters?networks=1", headers=READ)).json()["data"]
    assert clusters[0]["id"] == 10 and clusters[0]["spot_count"] == 6
    assert (await client.get("/api/v1/clusters?networks=2", headers=READ)).json()["data"] == []
    stations = (await client.get("/api/v1/clusters/10/stations", headers=READ)).json()["data"]
    assert stations[0]["spots"][0]["vehicle"]["serial_number"] == "SN000001"
    vehicle = (await client.get("/api/v1/vehicles/1", headers=READ)).json()["data"]
    assert vehicle["position"] == {"lat": 48.58, "lon": 7.73} and vehicle["battery"] == 20
    r = await client.get("/api/v1/vehicles/99", headers=READ)
    assert r.status_code == 404 and r.json()["code"] == 404
    r = await client.get("/api/v1/clusters?networks=a,b", headers=READ)
    assert r.status_code == 422
    r = await client.get("/api/v1/stations/100/energy-consumption?start=10&end=5", headers=READ)
    assert r.status_code == 422 and "end" in r.json()["message"]


async def test_events_paging_ack_and_long_poll(env) -> None:
    _, outbox, client, _ = env
    for i in range(7):
        outbox.append("e", {"i": i}, idempotency_key=f"k{i}", priority=Priority.OUTCOME)
    r = (await client.get("/api/v1/events?cursor=0&limit=5", headers=READ)).json()["data"]
    assert [e["payload"]["i"] for e in r["events"]] == [0, 1, 2, 3, 4]
    assert r["events"][0]["priority"] == "outcome" and r["next_cursor"] == 5
    r2 = (await client.get(f"/api/v1/events?cursor={r['next_cursor']}", headers=READ)).json()
    assert [e["payload"]["i"] for e in r2["data"]["events"]] == [5, 6]
    ack = await client.post("/api/v1/events/ack", json={"cursor": 7}, headers=SYNC)
    assert ack.json()["data"] == {"acked": 7, "acked_cursor": 7}

    async def later() -> None:
        await asyncio.sleep(0.2)
        outbox.append("late", {"x": 1}, idempotency_key="late")

    task = asyncio.create_task(later())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = (await client.get("/api/v1/events?cursor=7&wait=5", headers=READ)).json()["data"]
    await task
    assert [e["kind"] for e in r["events"]] == ["late"]
    assert loop.time() - t0 < 3  # woken by the append, not by the 5 s timeout
    r = (await client.get("/api/v1/events?cursor=8&wait=0.2", headers=READ)).json()["data"]
    assert r["events"] == [] and r["next_cursor"] == 8


async def test_alerts_current_history_and_resolve(env) -> None:
    store, _, client, _ = env
    a, _ = store.alerts.raise_alert(NewAlert(1, "vehicle-fallen", "high", vehicle_id=1))
    b, _ = store.alerts.raise_alert(NewAlert(1, "station-power-cut", "critical", cluster_id=10))
    current = (await client.get("/api/v1/fleet-alerts?networks=1", headers=READ)).json()
    assert {x["id"] for x in current["data"]} == {a, b}
    r = await client.post("/api/v1/fleet-alerts/resolve", json={"alert_ids": [a]}, headers=SYNC)
    assert r.json() == {"code": 0, "data": {"resolved": [a]}}
    hist = await client.get(
        "/api/v1/fleet-alerts/history",
        params={"networks": "1", "alert_type": "vehicle-fallen", "page_size": 10},
        headers=READ,
    )
    assert [x["id"] for x in hist.json()["data"]] == [a]
    bad = await client.get("/api/v1/fleet-alerts/history?alert_type=vehicle-on-fire", headers=READ)
    assert bad.status_code == 422 and bad.json()["problems"][0]["loc"][-1] == "alert_type"
    bad = await client.post("/api/v1/fleet-alerts/resolve", json={"alert_ids": []}, headers=SYNC)
    assert bad.status_code == 422


async def test_riders_products_records_and_keys_stay_secret(env, caplog) -> None:
    _, _, client, _ = env
    caplog.set_level(logging.DEBUG)
    r = await client.put(
        "/api/v1/users/5", json={"email": "eve@example.org", "credit": 300}, headers=SYNC
    )
    assert r.json()["data"]["credit"] == 300 and r.json()["data"]["blocked"] is False
    assert (
        await client.post("/api/v1/users/5/block", json={"reason": "no"}, headers=SYNC)
    ).status_code == 422
    await client.post("/api/v1/users/5/block", json={"reason": "fraud"}, headers=SYNC)
    blocked = (await client.get("/api/v1/users/5/blocked", headers=READ)).json()["data"]
    assert blocked["blocked"] is True and blocked["reason"] == "fraud"
    await client.post("/api/v1/users/5/unblock", headers=SYNC)
    assert (await client.get("/api/v1/users/5", headers=READ)).json()["data"]["blocked"] is False
    product = (
        await client.post(
            "/api/v1/products", json={"name": "Eve's ring", "kind": "ring"}, headers=SYNC
        )
    ).json()["data"]
    rec = await client.post(
        f"/api/v1/products/{product['id']}/records",
        json={"token_encryption": "aes-128", "key": KEY_HEX},
        headers=SYNC,
    )
    assert rec.status_code == 200 and KEY_HEX not in rec.text
    bad = await client.post(
        f"/api/v1/products/{product['id']}/records", json={"key": KEY_HEX + "zz"}, headers=SYNC
    )
    assert bad.status_code == 422 and KEY_HEX not in bad.text
    await client.post(f"/api/v1/products/{product['id']}/pair", json={"user_id": 5}, headers=SYNC)
    badges = (await client.get("/api/v1/users/5/badges", headers=READ)).json()["data"]
    assert badges[0]["token_encryption"] == "aes-128" and "key" not in badges[0]
    r = await client.put("/api/v1/tag-keys/default", json={"key": KEY_HEX}, headers=SYNC)
    assert r.json()["data"] == {"name": "default", "version": 1}
    listing = await client.get("/api/v1/tag-keys", headers=READ)
    assert KEY_HEX not in listing.text and KEY_HEX.upper() not in listing.text
    assert KEY_HEX not in caplog.text and SYNC_TOKEN not in caplog.text


async def test_idempotency_key_replays_first_answer(env) -> None:
    store, _, client, _ = env
    headers = {**SYNC, "Idempotency-Key": "create-1"}
    first = await client.post("/api/v1/products", json={"name": "card"}, headers=headers)
    again = await client.post("/api/v1/products", json={"name": "card"}, headers=headers)
    assert first.json() == again.json() and len(store.products.all()) == 1
    other = await client.post("/api/v1/products", json={"name": "other"}, headers=headers)
    assert other.status_code == 422


async def test_commands_journal_send_and_outcome(env) -> None:
    _store, outbox, client, sender = env
    headers = {**SYNC, "Idempotency-Key": "cmd-1"}
    r = await client.post(
        "/api/v1/vehicles/1/commands",
        json={"command": "max_speed", "max_speed": 20},
        headers=headers,
    )
    data = r.json()["data"]
    assert data["state"] == "acked" and data["args"] == {"max_speed": 20}
    again = await client.post(
        "/api/v1/vehicles/1/commands",
        json={"command": "max_speed", "max_speed": 20},
        headers=headers,
    )
    assert again.json()["data"]["id"] == data["id"] and len(sender.sent) == 1
    events = outbox.read()
    assert events[-1].kind == "command.outcome" and events[-1].priority == Priority.OUTCOME
    assert (
        await client.post(
            "/api/v1/vehicles/1/commands", json={"command": "max_speed"}, headers=SYNC
        )
    ).status_code == 422
    assert (
        await client.post("/api/v1/spots/1000/commands", json={"command": "unlock"}, headers=SYNC)
    ).json()["data"]["state"] == "acked"
    assert (
        await client.post("/api/v1/spots/5/commands", json={"command": "unlock"}, headers=SYNC)
    ).status_code == 404
    got = await client.get(f"/api/v1/commands/{data['id']}", headers=READ)
    assert got.json()["data"]["outcome"]["status"] == "acked"


async def test_command_timeout_and_no_sender(tmp_path) -> None:
    _store, _, client = build(tmp_path, AckingSender("slow"))
    async with client:
        r = await client.post("/api/v1/vehicles/1/commands", json={"command": "lock"}, headers=SYNC)
        assert r.json()["data"]["state"] == "timeout"
    (tmp_path / "b").mkdir()
    store2, _, client2 = build(tmp_path / "b", None)
    async with client2:
        r = await client2.post(
            "/api/v1/vehicles/1/commands", json={"command": "lock"}, headers=SYNC
        )
        assert r.json()["data"]["state"] == "journaled"
        assert len(store2.commands.unfinished()) == 1


async def test_config_bundles_versioned(env) -> None:
    _, outbox, client, _ = env
    refused = await client.post(
        "/api/v1/config/bundles", json={"version": 0, "bundle": {}}, headers=SYNC
    )
    assert refused.status_code == 422
    app_state = client._transport.app.state  # type: ignore[attr-defined]
    app_state.bundle_validator = lambda kind, body: [] if "ok" in body else ["needs ok"]
    bad = await client.post(
        "/api/v1/config/bundles", json={"version": 1, "bundle": {}}, headers=SYNC
    )
    assert bad.status_code == 422 and bad.json()["problems"][0]["msg"] == "needs ok"
    good = await client.post(
        "/api/v1/config/bundles", json={"version": 2, "bundle": {"ok": 1}}, headers=SYNC
    )
    assert good.json()["data"]["version"] == 2
    stale = await client.post(
        "/api/v1/config/bundles", json={"version": 2, "bundle": {"ok": 2}}, headers=SYNC
    )
    assert stale.status_code == 409
    assert outbox.read()[-1].kind == "config.applied"
    metrics = (await client.get("/metrics")).text
    assert "dockgate_rule_bundle_version 2.0" in metrics


def _play_of(tag: SdmTag, record_id: int) -> str:
    url = tag.next_url()
    picc = re.search(r"picc_data=([0-9A-F]{32})", url)[1]
    cmac = re.search(r"cmac=([0-9A-F]{16})", url)[1]
    return f"{record_id}@{picc}:{cmac}"


async def test_dynamic_play_check_and_pairing(tmp_path) -> None:
    meta, file_key = bytes(range(16)), bytes(range(16, 32))
    settings = SunSettings(
        key_sets={
            "default": {"mode": "aes", "meta_read_key": meta.hex(), "file_read_key": file_key.hex()}
        }
    )
    verifier = SunPlayVerifier(SunVerifier(settings))
    store, _, client = build(tmp_path, verifier=verifier)
    tag = SdmTag(uid=bytes.fromhex("04A1B2C3D4E5F6"), meta_read_key=meta, file_read_key=file_key)
    product = store.products.create("card")
    record = store.records.create(product, token_encryption="aes-128")
    static = store.records.create(product)
    async with client:
        r = await client.post(
            "/api/v1/products/pair-dynamic",
            json={"user_id": 1, "play": _play_of(tag, record)},
            headers=SYNC,
        )
        assert r.status_code == 200 and r.json()["data"]["rider_id"] == 1
        # a sync token uses the scan up (counted); a read token's check is dry (test_api_hardening)
        play = await client.get(f"/api/v1/play/{_play_of(tag, record)}", headers=SYNC)
        body = play.json()["data"]
        assert body["rider"]["id"] == 1 and body["scan_count"] == 2
        assert body["record"]["uid"] == "04A1B2C3D4E5F6"
        forged = _play_of(tag, record)[:-1] + ("0" if _play_of(tag, record)[-1] != "0" else "1")
        r = await client.get(f"/api/v1/play/{forged}", headers=READ)
        assert r.status_code == 403 and "rejected" in r.json()["message"]
        r = await client.get(f"/api/v1/play/{record}@nothex:00", headers=READ)
        assert r.status_code == 422
        r = await client.get(f"/api/v1/play/{_play_of(tag, static)}", headers=READ)
        assert r.status_code == 422
        other = SdmTag(
            uid=bytes.fromhex("04000000000001"), meta_read_key=meta, file_read_key=file_key
        )
        r = await client.get(f"/api/v1/play/{_play_of(other, record)}", headers=READ)
        assert r.status_code == 403 and "not this record" in r.json()["message"]
        assert store.records.get(record).scan_count == 2


async def test_health_and_metrics_public_without_secrets(env) -> None:
    _, outbox, client, _ = env
    outbox.append("a", 1, idempotency_key="a", priority=Priority.CRITICAL)
    health = (await client.get("/health")).json()
    assert health["code"] == 0 and health["data"]["outbox_pending"]["critical"] == 1
    text = (await client.get("/metrics")).text
    assert 'dockgate_outbox_pending{class="critical"} 1.0' in text
    assert "dockgate_tap_to_unlock_seconds_bucket" in text
    assert "dockgate_outbox_oldest_unsent_seconds" in text
    assert SYNC_TOKEN not in text


def test_access_log_redacts_private_token() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s "%s"',
        ("127.0.0.1", f"GET /api/v1/vehicles?private_token={SYNC_TOKEN}"),
        None,
    )
    RedactTokens().filter(record)
    assert SYNC_TOKEN not in record.getMessage() and "private_token=***" in record.getMessage()


def test_play_check_dataclass_defaults() -> None:
    assert PlayCheck(False).reason is None
