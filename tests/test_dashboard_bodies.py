"""The dashboard's request bodies paste into a bundle unchanged: the rules engine, ``dockgate
rules check`` and the API accept a bundle made of them; what they refuse is named by its
field's path in plain words; and the fields they carry act at the edge (``trip_on_hold``,
``freefloat_lock_price``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.rules import (
    BundleError,
    CommandKind,
    RulesEngine,
    Trip,
    VehicleState,
    load_bundle,
)
from dockgate.gateway.rules.config import content_id
from dockgate.gateway.rules.pricing import pricing_at, trip_cost
from tests.plugins.flow import SITE_A, FlowRig, telemetry, until
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.dashboard import body, seed_bundle
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "rules" / "demo-milano.json"
CLI = [sys.executable, "-m", "dockgate.gateway.cli", "rules", "check"]
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
NOW = 1_717_236_000.0


def problems_of(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    return [(p.location, p.message) for p in exc.value.problems]


def check(tmp_path: Path, doc: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([*CLI, *extra, str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture
async def api(tmp_path: Path):
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)  # one network: 1
    app = create_app(store, Outbox(store.db), tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield store, client


# --- accepted as they are -----------------------------------------------------------------
def test_the_seed_bodies_make_a_bundle_the_engine_takes() -> None:
    bundle = load_bundle(seed_bundle())
    config = bundle.config
    assert config.vehicle_speed_settings is not None
    assert config.vehicle_speed_settings.min_battery_to_slow_down is None
    # the create bodies name no id: the gateway derives one from the content; the update
    # body's speed_zone_id is the zone's id
    created, updated = config.speed_zones
    assert created.id == content_id(body("speed-zone-create")) and updated.id == 1
    assert [p.capacity for p in config.virtual_parkings] == [0, 0]
    assert config.pricing[0].network_id == 1 and config.border is not None
    assert config.border.settings.lock_vehicle is True


def test_dockgate_rules_check_accepts_the_seed_bundle(tmp_path: Path) -> None:
    done = check(tmp_path, seed_bundle(), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["speed_zones"] == 2
    assert summary["virtual_parkings"] == 2 and summary["border"] is True


async def test_the_api_accepts_the_seed_bundle(api) -> None:
    store, client = api
    r = await client.post(
        "/api/v1/config/bundles", json={"version": 1, "bundle": seed_bundle()}, headers=SYNC
    )
    assert r.status_code == 200, r.text
    assert store.bundles.current().body == seed_bundle()  # kept as pushed


def test_derived_ids_follow_the_content_not_the_position() -> None:
    doc = seed_bundle()
    first = load_bundle(doc).config.virtual_parkings[0].id
    doc["virtual_parkings"].reverse()
    assert load_bundle(doc).config.virtual_parkings[1].id == first  # moved, same id
    doc["virtual_parkings"][1]["capacity"] = 3
    assert load_bundle(doc).config.virtual_parkings[1].id != first  # another parking


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("vehicle_speed_settings",), "min_battery_to_slow_down"),
        (("vehicle_speed_settings",), "battery_slow_down_speed"),
        (("rent_settings",), "min_battery_to_auto_lock"),
        (("vehicle_settings", 0), "speed_mode"),
        (("virtual_parkings", 0), "network_id"),
    ],
)
def test_null_where_the_dashboard_allows_it(path: tuple[Any, ...], field: str) -> None:
    doc = seed_bundle()
    part = doc
    for key in path:
        part = part[key]
    part[field] = None
    load_bundle(doc)


def test_a_battery_slow_down_needs_both_of_its_fields() -> None:
    """Either null (not set): no slow-down; both set: the slow-down speed caps the vehicle."""
    doc = json.loads(DEMO.read_text())
    doc["vehicle_speed_settings"].update(min_battery_to_slow_down=30, battery_slow_down_speed=8)
    both = load_bundle(doc).plan
    doc["vehicle_speed_settings"]["min_battery_to_slow_down"] = None
    threshold_unset = load_bundle(doc).plan
    assert both is not None and threshold_unset is not None
    assert (both.battery_slow_at, both.battery_slow_speed) == (30, 8)
    assert threshold_unset.battery_slow_at is None  # speed set alone: nothing slows down


# --- refused, named by path and in plain words ---------------------------------------------
NETWORK_PLACES = [
    ("border",),
    ("border", "settings"),
    ("speed_zones", 0),
    ("virtual_parkings", 0),
    ("pricing", 0),
]


@pytest.mark.parametrize("where", NETWORK_PLACES)
def test_a_network_id_that_is_not_the_bundles_is_named(where: tuple[Any, ...]) -> None:
    doc = seed_bundle()
    part = doc
    for key in where:
        part = part[key]
    part["network_id"] = 2
    location = ".".join(map(str, [*where, "network_id"]))
    assert problems_of(doc) == [(location, "must be the bundle's network_id (1)")]


def test_refusals_name_the_field_and_say_what_it_needs() -> None:
    doc = seed_bundle()
    doc["speed_zones"][1]["max_speed"] = 40
    doc["rent_settings"]["trip_on_hold"] = "yes"
    doc["vehicle_settings"][0]["speed_mode"] = 4
    doc["speed_zones"][0]["shape"] = doc["speed_zones"][0]["shape"][:2]
    doc["speed_zones"][1]["id"] = 2  # the update body names it 1
    assert problems_of(doc) == [
        ("speed_zones.0.shape", "needs at least 3 items"),
        ("speed_zones.1.max_speed", "must be between 6 and 25"),
        ("rent_settings.trip_on_hold", "must be true or false"),
        ("vehicle_settings.0.speed_mode", "must be 1, 2 or 3"),
    ]
    doc = seed_bundle()
    doc["speed_zones"][1]["id"] = 2
    assert problems_of(doc) == [
        ("speed_zones.1", "id and speed_zone_id name two different entries")
    ]


def test_the_same_created_entry_twice_is_refused() -> None:
    doc = seed_bundle()
    doc["speed_zones"].append(body("speed-zone-create"))
    assert problems_of(doc) == [
        ("speed_zones.2", "repeats speed_zones.0 (an entry without an id is named by its content)")
    ]


def test_dockgate_rules_check_prints_the_same_paths_and_messages(tmp_path: Path) -> None:
    doc = seed_bundle()
    doc["speed_zones"][1]["max_speed"] = 40
    doc["pricing"][0]["network_id"] = 7
    done = check(tmp_path, doc)
    assert done.returncode == 1
    assert "speed_zones.1.max_speed: must be between 6 and 25" in done.stderr
    assert "pricing.0.network_id: must be the bundle's network_id (1)" in done.stderr
    as_json = json.loads(check(tmp_path, doc, "--json").stdout)
    assert as_json["problems"][0] == {
        "location": "speed_zones.1.max_speed",
        "message": "must be between 6 and 25",
    }


async def test_the_api_lists_bundle_problems_by_path(api) -> None:
    store, client = api
    doc = seed_bundle()
    doc["speed_zones"][1]["max_speed"] = 40
    r = await client.post(
        "/api/v1/config/bundles", json={"version": 1, "bundle": doc}, headers=SYNC
    )
    assert r.status_code == 422
    assert r.json()["problems"] == [
        {
            "loc": ["body", "bundle", "speed_zones", "1", "max_speed"],
            "msg": "must be between 6 and 25",
        }
    ]
    assert "Problem(" not in r.text and store.bundles.current() is None


async def test_the_api_refuses_a_bundle_for_another_network(api) -> None:
    store, client = api
    doc = seed_bundle()
    doc["network_id"] = 2
    for part in (doc["border"], doc["border"]["settings"], *doc["speed_zones"], *doc["pricing"]):
        part["network_id"] = 2  # consistent within the bundle, but the site serves network 1
    doc["virtual_parkings"][0]["network_id"] = 2
    r = await client.post(
        "/api/v1/config/bundles", json={"version": 1, "bundle": doc}, headers=SYNC
    )
    assert r.status_code == 422
    assert r.json()["problems"] == [
        {"loc": ["body", "bundle", "network_id"], "msg": "must be this site's network (1)"}
    ]
    assert store.bundles.current() is None


# --- applied at the edge ------------------------------------------------------------------
def still_vehicle(on_hold: bool) -> tuple[RulesEngine, VehicleState]:
    """A vehicle at rest on a trip for 1000 s, still for 901 s (demo: auto-pause at 900 s)."""
    doc = json.loads(DEMO.read_text())
    doc["rent_settings"]["trip_on_hold"] = on_hold
    engine = RulesEngine(load_bundle(doc), clock=lambda: NOW)
    trip = Trip("t", NOW - 1000, last_moved_at=NOW - 901)
    lat = 45.4642 - 1500 / 111_195.0  # 2 km east, 1.5 km south of the centre: no zone
    lon = 9.19 + 2000 / (111_195.0 * math.cos(math.radians(45.4642)))
    state = VehicleState("v1", lat, lon, NOW, 5.0, 0.0, 80, False, trip)
    return engine, state


@pytest.mark.parametrize("on_hold", [True, False])
def test_trip_on_hold_governs_the_auto_pause(on_hold: bool) -> None:
    engine, state = still_vehicle(on_hold)
    kinds = engine.evaluate(state, NOW).command_kinds()
    assert (CommandKind.TRIP_HOLD in kinds) is on_hold


def test_freefloat_lock_price_is_added_to_a_trip_ending_outside_a_station() -> None:
    price = load_bundle(seed_bundle()).config.pricing[0]
    docked = trip_cost(price, 600, 60)
    assert trip_cost(price, 600, 60, freefloat_lock=True) == pytest.approx(docked + 0.1)


async def test_a_trip_the_engine_ends_in_freefloat_pays_the_lock_price(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    decision = await flow.on_tap(rig.tap(rig.rider(7)))
    assert decision.accepted, decision
    await rig.undock("ST01", 1, "SXB001")
    trip_id = rig.store.vehicles.get(1).trip_id
    assert trip_id is not None
    # demo: below 5 % of battery, a vehicle at rest is locked and its trip ended where it is
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=4, lock="unlocked"))
    await until(lambda: rig.store.trips.get(trip_id).ended_at is not None, what="trip ended")
    await flow.drain()
    ended = rig.store.trips.get(trip_id)
    assert ended.end_station_id is None and ended.ended_at is not None
    b = rig.engine.bundle
    price = pricing_at(b.config.pricing, ended.started_at, b.timezone)
    assert price is not None and price.freefloat_lock_price == 0.5
    ride = ended.ended_at - ended.started_at
    expected = round(trip_cost(price, ride, 0.0, freefloat_lock=True) * 100)
    assert ended.cost is not None and abs(ended.cost - expected) <= 1
    assert ended.cost >= 100 + 50  # the unlock price and the lock price
