"""GBFS 3.0 feeds validated against the official schemas (formats checked); vehicle ids rotate
per trip; links follow the address consumers use; ETag and 304; vehicle types, ranges, time zone
and ttl come from the running bundle."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from dockgate.api import create_app
from dockgate.api.gbfs import GbfsSettings
from dockgate.api.gbfs_fleet import VehicleTypeSettings
from dockgate.gateway.daemon.settings import ConfigError, load_settings
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

SCHEMAS = Path(__file__).parent / "data" / "gbfs-json-schema" / "v3.0"
RULES = Path(__file__).resolve().parent.parent / "config" / "rules"
FEEDS = [
    "gbfs",
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
]
OLD_TOWN = [[[7.74, 48.58], [7.76, 48.58], [7.76, 48.59], [7.74, 48.59], [7.74, 48.58]]]


def validator(feed: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / f"{feed}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def zone(name: str, rules: list[dict[str, Any]], **window: float) -> dict[str, Any]:
    props: dict[str, Any] = {"name": [{"text": name, "language": "en"}], "rules": rules}
    props |= {k: rfc3339(v) for k, v in window.items()}
    geometry = {"type": "MultiPolygon", "coordinates": [OLD_TOWN]}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def rule(start: bool, end: bool, through: bool, speed: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ride_start_allowed": start,
        "ride_end_allowed": end,
        "ride_through_allowed": through,
    }
    return out if speed is None else {**out, "maximum_speed_kph": speed}


def gbfs_bundle(*features: dict[str, Any]) -> dict[str, Any]:
    """A GBFS 3.0 geofencing_zones document, as the backend pushes it (zones under ``data``)."""
    return {
        "last_updated": rfc3339(time.time() - 60),
        "ttl": 60,
        "version": "3.0",
        "data": {
            "geofencing_zones": {"type": "FeatureCollection", "features": list(features)},
            "global_rules": [rule(True, True, True)],
        },
    }


OLD_TOWN_RULES = [rule(False, False, True, 10)]


def client_for(store: Store, **gbfs: Any) -> httpx.AsyncClient:
    app = create_app(
        store, Outbox(store.db), tokens={"x" * 16: ["read"]}, gbfs=GbfsSettings(**gbfs)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = open_test_store(tmp_path / "gbfs.db")
    seed_fleet(store)
    store.bundles.save(1, "gbfs", gbfs_bundle(zone("Old town", OLD_TOWN_RULES)))
    async with client_for(store) as client:
        yield store, client


@pytest.fixture
async def milano(tmp_path: Path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    """The same fleet under the Milan dashboard bundle (its stations are outside its border)."""
    store = open_test_store(tmp_path / "milano.db")
    seed_fleet(store)
    store.bundles.save(1, "dashboard", json.loads((RULES / "demo-milano.json").read_text()))
    async with client_for(store) as client:
        yield store, client


async def get(client: httpx.AsyncClient, feed: str, **headers: str) -> dict[str, Any]:
    response = await client.get(f"/gbfs/{feed}.json", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_format_checker_checks_the_formats_the_schemas_use() -> None:
    """Without the format libraries jsonschema skips date-time and uri silently."""
    feeds = validator("gbfs")
    bad = {
        "last_updated": "yesterday",
        "ttl": 0,
        "version": "3.0",
        "data": {"feeds": [{"name": "system_information", "url": "not a uri"}]},
    }
    formats = {e.validator_value for e in feeds.iter_errors(bad) if e.validator == "format"}
    assert formats == {"date-time", "uri"}
    info = validator("system_information")
    assert any(
        e.validator == "format"
        for e in info.iter_errors({"data": {"feed_contact_email": "nobody"}})
    )


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("bundle", ["gbfs", "dashboard"])
async def test_feed_validates_against_official_schema(site, milano, feed: str, bundle: str) -> None:
    store, client = site if bundle == "gbfs" else milano
    store.trips.start(1, 2)  # one vehicle riding: it must not be listed
    store.vehicles.update(3, status="reserved")
    doc = await get(client, feed)
    errors = sorted(validator(feed).iter_errors(doc), key=str)
    assert errors == [], [e.message for e in errors]


async def test_feeds_reflect_state(site) -> None:
    store, client = site
    status = (await get(client, "station_status"))["data"]["stations"]
    by_id = {s["station_id"]: s for s in status}
    assert by_id["100"]["num_vehicles_available"] == 2 and by_id["100"]["num_docks_available"] == 1
    # GBFS: "Even if the station is empty, if it would otherwise allow rentals, this value
    # MUST be true" (the old feed said false for an empty station).
    assert by_id["101"]["is_renting"] is True and by_id["101"]["is_returning"] is True
    store.outages.start(101, "power cut")
    status = (await get(client, "station_status"))["data"]["stations"]
    offline = {s["station_id"]: s for s in status}["101"]
    assert offline["is_renting"] is False and offline["is_returning"] is False
    links = (await get(client, "gbfs"))["data"]["feeds"]
    assert {f["name"] for f in links} == set(FEEDS)
    zones = (await get(client, "geofencing_zones"))["data"]
    assert (
        zones["geofencing_zones"]["features"][0]["properties"]["rules"][0]["maximum_speed_kph"]
        == 10
    )
    assert (await client.get("/gbfs/free_bike_status.json")).status_code == 422


async def test_vehicle_ids_rotate_per_trip(site) -> None:
    store, client = site

    async def public_ids() -> set[str]:
        doc = await get(client, "vehicle_status")
        return {v["vehicle_id"] for v in doc["data"]["vehicles"]}

    before = await public_ids()
    assert len(before) == 4 and not any(v.startswith("SN") for v in before)
    trip = store.trips.start(1, 1)
    riding = await public_ids()
    assert len(riding) == 3
    store.trips.end(trip, spot_id=1010, station_id=101)
    after = await public_ids()
    assert len(after) == 4 and len(after & before) == 3  # vehicle 1 came back under a new id
    docked = (await get(client, "vehicle_status"))["data"]["vehicles"]
    assert sum(1 for v in docked if v.get("station_id") == "101") == 1


async def test_links_follow_the_address_the_feeds_are_read_at(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "links.db")
    seed_fleet(store)
    async with client_for(store) as client:
        for host in ("http://gw", "http://10.1.2.3:8443"):
            client.base_url = httpx.URL(host)
            links = (await get(client, "gbfs"))["data"]["feeds"]
            assert {f["url"] for f in links} == {f"{host}/gbfs/{name}.json" for name in FEEDS}
    public = "https://gbfs.example.org/milano/"
    async with client_for(store, public_url=public) as client:
        links = (await get(client, "gbfs"))["data"]["feeds"]
        assert {f["url"] for f in links} == {f"{public}{name}.json" for name in FEEDS}


async def test_every_feed_has_an_etag_and_answers_if_none_match(site) -> None:
    store, client = site
    for feed in FEEDS:
        first = await client.get(f"/gbfs/{feed}.json")
        tag = first.headers["etag"]
        assert tag.startswith('W/"'), feed
        again = await client.get(f"/gbfs/{feed}.json", headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b"", feed
        assert again.headers["etag"] == tag
        listed = await client.get(
            f"/gbfs/{feed}.json", headers={"If-None-Match": f'"other", {tag.removeprefix("W/")}'}
        )
        assert listed.status_code == 304, feed
    tag = (await client.get("/gbfs/vehicle_status.json")).headers["etag"]
    store.trips.start(1, 1)  # the data changed: the old tag no longer matches
    changed = await client.get("/gbfs/vehicle_status.json", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    other = await client.get("/gbfs/gbfs.json", headers={"If-None-Match": 'W/"nope"'})
    assert other.status_code == 200


async def test_motorised_vehicles_have_a_type_and_a_range(milano) -> None:
    store, client = milano
    store.vehicles.upsert(5, 1, "SN000005", vehicle_type="ebike", battery=50, lat=48.58, lon=7.73)
    types = (await get(client, "vehicle_types"))["data"]["vehicle_types"]
    by_id = {t["vehicle_type_id"]: t for t in types}
    assert by_id["scooter"]["form_factor"] == "scooter_standing"
    assert by_id["scooter"]["propulsion_type"] == "electric"
    assert by_id["scooter"]["max_range_meters"] == 25_000.0
    # the Milan bundle's default (high) speed is what the engine lets a vehicle reach
    assert {t["max_permitted_speed"] for t in types} == {25}
    assert by_id["ebike"]["form_factor"] == "other"  # a type not configured is still typed
    vehicles = (await get(client, "vehicle_status"))["data"]["vehicles"]
    assert len(vehicles) == 5
    for v in vehicles:
        vtype = by_id[v["vehicle_type_id"]]
        assert v["current_range_meters"] == pytest.approx(
            v["current_fuel_percent"] * vtype["max_range_meters"]
        )
    status = (await get(client, "station_status"))["data"]["stations"]
    for st in status:
        counts = {a["vehicle_type_id"]: a["count"] for a in st["vehicle_types_available"]}
        assert set(counts) == set(by_id)
        assert sum(counts.values()) == st["num_vehicles_available"]


async def test_configured_vehicle_types(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "types.db")
    seed_fleet(store)
    store.vehicles.upsert(9, 1, "SN000009", vehicle_type="bike", battery=40, lat=48.58, lon=7.73)
    bike = VehicleTypeSettings(id="bike", form_factor="bicycle", propulsion_type="human")
    async with client_for(store, vehicle_types=[bike]) as client:
        types = (await get(client, "vehicle_types"))["data"]["vehicle_types"]
        assert types[0] == {
            "vehicle_type_id": "bike",
            "form_factor": "bicycle",
            "propulsion_type": "human",
            "name": [{"text": "bike", "language": "en"}],
        }
        vehicles = (await get(client, "vehicle_status"))["data"]["vehicles"]
        bikes = [v for v in vehicles if v["vehicle_type_id"] == "bike"]
        assert len(bikes) == 1 and "current_range_meters" not in bikes[0]


async def test_time_zone_is_the_bundles(site, milano, tmp_path: Path) -> None:
    _, client = milano
    info = (await get(client, "system_information"))["data"]
    assert info["timezone"] == "Europe/Rome"
    _, client = site  # a GBFS bundle names no time zone: the settings', else UTC
    assert (await get(client, "system_information"))["data"]["timezone"] == "Etc/UTC"
    store = open_test_store(tmp_path / "tz.db")
    store.bundles.save(1, "gbfs", gbfs_bundle())
    async with client_for(store, timezone="Europe/Paris") as paris:
        assert (await get(paris, "system_information"))["data"]["timezone"] == "Europe/Paris"


async def test_a_gbfs_bundle_is_published_as_given_with_its_current_zones(tmp_path) -> None:
    now = time.time()
    store = open_test_store(tmp_path / "timed.db")
    seed_fleet(store)
    doc = gbfs_bundle(
        zone("Market", [rule(False, False, True, 8)], start=now - 3600, end=now + 600),
        zone("Festival", [rule(False, False, False)], start=now + 300),
        zone("Last year", [rule(False, False, False)], end=now - 60),
        zone("Old town", OLD_TOWN_RULES),
    )
    store.bundles.save(1, "gbfs", doc)
    async with client_for(store, ttl=3600) as client:
        fence = await get(client, "geofencing_zones")
        features = fence["data"]["geofencing_zones"]["features"]
        assert [f["properties"]["name"][0]["text"] for f in features] == ["Market", "Old town"]
        assert features[0]["properties"]["rules"] == [rule(False, False, True, 8)]
        assert features[1]["geometry"]["coordinates"] == [OLD_TOWN]
        assert fence["data"]["global_rules"] == doc["data"]["global_rules"]
        # the festival starts in 300 s: the published zones stay as they are until then
        assert 295 <= fence["ttl"] <= 300
        assert (await get(client, "system_information"))["ttl"] == 3600
        for feed in ("station_status", "vehicle_status"):  # change with every dock and undock
            assert (await get(client, feed))["ttl"] == 0
        store.clock = lambda: now + 301  # the festival has begun; the market ends at +600
        fence = await get(client, "geofencing_zones")
        features = fence["data"]["geofencing_zones"]["features"]
        names = [f["properties"]["name"][0]["text"] for f in features]
        assert names == ["Market", "Festival", "Old town"]
        assert 295 <= fence["ttl"] <= 299


async def test_a_dashboard_bundle_is_translated(milano) -> None:
    _, client = milano
    fence = (await get(client, "geofencing_zones"))["data"]
    # outside the border: no ride starts, the vehicle is locked (lock_vehicle) and slowed
    assert fence["global_rules"] == [
        {
            "ride_start_allowed": False,
            "ride_end_allowed": True,
            "ride_through_allowed": False,
            "maximum_speed_kph": 6,
        }
    ]
    names = {f["properties"]["name"][0]["text"]: f for f in fence["geofencing_zones"]["features"]}
    assert names["Network area"]["properties"]["rules"] == [rule(True, True, True)]
    duomo = names["Piazza del Duomo (pedestrian) / Centro storico / Network area"]
    assert duomo["properties"]["rules"] == [rule(True, True, True, 6)]
    # every station of this fleet stands outside the Milan border: no ride starts there
    status = (await get(client, "station_status"))["data"]["stations"]
    assert {s["is_renting"] for s in status} == {False}
    assert {s["is_returning"] for s in status} == {True}


def test_the_daemon_reads_its_gbfs_table(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "dockgate.toml"
    path.write_text(
        '[gbfs]\npublic_url = "https://gbfs.example.org/milano"\ntimezone = "Europe/Rome"\n'
        '[[gbfs.vehicle_types]]\nid = "bike"\nform_factor = "bicycle"\n'
        'propulsion_type = "electric_assist"\nmax_range_meters = 60000\n'
    )
    gbfs = load_settings(path).gbfs
    assert gbfs.public_url == "https://gbfs.example.org/milano" and gbfs.timezone == "Europe/Rome"
    assert [(t.id, t.max_range_meters) for t in gbfs.vehicle_types] == [("bike", 60000.0)]
    monkeypatch.setenv("DOCKGATE_GBFS__TTL", "120")
    assert load_settings(path).gbfs.ttl == 120
    path.write_text('[gbfs]\npublic_url = "ftp://x"\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    assert len(refused.value.problems) == 2
