"""GBFS 3.0 feeds validated against the official schemas; vehicle ids rotate per trip."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
from tests.support.fleet import seed_fleet

SCHEMAS = Path(__file__).parent / "data" / "gbfs-json-schema" / "v3.0"
FEEDS = [
    "gbfs",
    "system_information",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
]


def validator(feed: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / f"{feed}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture
async def site(tmp_path):
    store = Store.open(tmp_path / "gbfs.db")
    seed_fleet(store)
    store.bundles.save(
        1,
        "gbfs",
        {
            "geofencing_zones": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {
                            "name": [{"text": "Old town", "language": "en"}],
                            "rules": [
                                {
                                    "ride_start_allowed": False,
                                    "ride_end_allowed": False,
                                    "ride_through_allowed": True,
                                    "maximum_speed_kph": 10,
                                }
                            ],
                        },
                        "geometry": {
                            "type": "MultiPolygon",
                            "coordinates": [
                                [
                                    [
                                        [7.74, 48.58],
                                        [7.76, 48.58],
                                        [7.76, 48.59],
                                        [7.74, 48.59],
                                        [7.74, 48.58],
                                    ]
                                ]
                            ],
                        },
                    }
                ],
            },
            "global_rules": [
                {"ride_start_allowed": True, "ride_end_allowed": True, "ride_through_allowed": True}
            ],
        },
    )
    app = create_app(store, Outbox(store.db), tokens={"x" * 16: ["read"]})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield store, client


@pytest.mark.parametrize("feed", FEEDS)
async def test_feed_validates_against_official_schema(site, feed) -> None:
    store, client = site
    store.trips.start(1, 2)  # one vehicle riding: it must not be listed
    response = await client.get(f"/gbfs/{feed}.json")
    assert response.status_code == 200
    doc = response.json()
    errors = sorted(validator(feed).iter_errors(doc), key=str)
    assert errors == [], [e.message for e in errors]


async def test_feeds_reflect_state(site) -> None:
    _store, client = site
    status = (await client.get("/gbfs/station_status.json")).json()["data"]["stations"]
    by_id = {s["station_id"]: s for s in status}
    assert by_id["100"]["num_vehicles_available"] == 2 and by_id["100"]["num_docks_available"] == 1
    assert by_id["101"]["is_renting"] is False
    links = (await client.get("/gbfs/gbfs.json")).json()["data"]["feeds"]
    assert {f["name"] for f in links} == set(FEEDS)
    zones = (await client.get("/gbfs/geofencing_zones.json")).json()["data"]
    assert (
        zones["geofencing_zones"]["features"][0]["properties"]["rules"][0]["maximum_speed_kph"]
        == 10
    )
    assert (await client.get("/gbfs/free_bike_status.json")).status_code == 422


async def test_vehicle_ids_rotate_per_trip(site) -> None:
    store, client = site

    async def public_ids() -> set[str]:
        doc = (await client.get("/gbfs/vehicle_status.json")).json()
        return {v["vehicle_id"] for v in doc["data"]["vehicles"]}

    before = await public_ids()
    assert len(before) == 4 and not any(v.startswith("SN") for v in before)
    trip = store.trips.start(1, 1)
    riding = await public_ids()
    assert len(riding) == 3
    store.trips.end(trip, spot_id=1010, station_id=101)
    after = await public_ids()
    assert len(after) == 4 and len(after & before) == 3  # vehicle 1 came back under a new id
    docked = (await client.get("/gbfs/vehicle_status.json")).json()["data"]["vehicles"]
    assert sum(1 for v in docked if v.get("station_id") == "101") == 1
