"""The GBFS specification's cross-file rules, and an independent validator over the live feeds
of a running daemon.

The cross-file rules (no JSON Schema can say them): every station is in both station files;
every vehicle type a feed names is in ``vehicle_types.json``; a station's counts are those of
the vehicles ``vehicle_status`` places there; a motorised vehicle says its range; a vehicle's
public id is redrawn at every trip start and end.

The independent validator is PyPI ``gbfs-validator`` (a pure-Python reimplementation of
MobilityData's validator: the official JSON Schemas plus the validator's run-time conditional
rules, e.g. ``vehicle_type_id`` and ``current_range_meters`` required for motorised types). It
reads the feeds of a real ``dockgate run`` over HTTP, starting from ``gbfs.json`` as any
consumer would, with the docked and the free-floating files both required, once under the
Milan dashboard bundle and once under the GBFS bundle; it must report no error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.rules import load_bundle
from dockgate.gateway.rules.publish import geofencing
from dockgate.gateway.store import Store
from dockgate.sim.device_base import Broker
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.station import StationSim
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store
from tests.support.system_harness import DaemonProcess, StationConf, until

RULES = Path(__file__).resolve().parent.parent / "config" / "rules"
SCHEMAS = Path(__file__).parent / "data" / "gbfs-json-schema" / "v3.0"
FEEDS = (
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
)
Feeds = dict[str, dict[str, Any]]


# -- the cross-file rules ------------------------------------------------------------------
def cross_file_problems(feeds: Feeds) -> list[str]:
    """Every breach of the specification's rules between files, one line each."""
    problems: list[str] = []
    info = {s["station_id"]: s for s in feeds["station_information"]["data"]["stations"]}
    status = {s["station_id"]: s for s in feeds["station_status"]["data"]["stations"]}
    if set(info) != set(status):
        problems.append(f"stations not in both files: {sorted(set(info) ^ set(status))}")
    types = {t["vehicle_type_id"]: t for t in feeds["vehicle_types"]["data"]["vehicle_types"]}
    vehicles = feeds["vehicle_status"]["data"]["vehicles"]
    ids = Counter(v["vehicle_id"] for v in vehicles)
    problems += [f"vehicle id {i} listed {n} times" for i, n in ids.items() if n > 1]
    for v in vehicles:
        vtype = types.get(v.get("vehicle_type_id", ""))
        if vtype is None:
            problems.append(f"vehicle {v['vehicle_id']}: unknown type {v.get('vehicle_type_id')}")
        elif vtype["propulsion_type"] != "human" and not (
            0 <= v.get("current_range_meters", -1) <= vtype["max_range_meters"]
        ):
            problems.append(f"vehicle {v['vehicle_id']}: motorised, no current_range_meters")
        if "station_id" in v and v["station_id"] not in info:
            problems.append(f"vehicle {v['vehicle_id']} at unknown station {v['station_id']}")
    for sid, st in status.items():
        problems += _station_problems(sid, st, info.get(sid, {}), vehicles, set(types))
    for rules in _all_rules(feeds["geofencing_zones"]["data"]):
        for r in rules:
            unknown = set(r.get("vehicle_type_ids", ())) - set(types)
            if unknown:
                problems.append(f"geofencing rule for unknown vehicle types {sorted(unknown)}")
    return problems


def _station_problems(
    sid: str,
    st: dict[str, Any],
    info: dict[str, Any],
    vehicles: list[dict[str, Any]],
    types: set[str],
) -> list[str]:
    here = [v for v in vehicles if v.get("station_id") == sid]
    available = [v for v in here if not v["is_reserved"] and not v["is_disabled"]]
    by_type = Counter(v["vehicle_type_id"] for v in available)
    published = {a["vehicle_type_id"]: a["count"] for a in st["vehicle_types_available"]}
    problems = []
    if st["num_vehicles_available"] != len(available):
        problems.append(f"station {sid}: {st['num_vehicles_available']} available, listed {here}")
    if st.get("num_vehicles_disabled", 0) != sum(v["is_disabled"] for v in here):
        problems.append(f"station {sid}: disabled count differs from vehicle_status")
    if set(published) - types or any(published.get(t, 0) != n for t, n in by_type.items()):
        problems.append(f"station {sid}: vehicle_types_available {published} != {by_type}")
    if sum(published.values()) != st["num_vehicles_available"]:
        problems.append(f"station {sid}: vehicle_types_available does not add up")
    if len(here) + st["num_docks_available"] > info.get("capacity", 0):
        problems.append(f"station {sid}: more vehicles and free docks than docks")
    return problems


def _all_rules(fence: dict[str, Any]) -> list[list[dict[str, Any]]]:
    features = fence["geofencing_zones"]["features"]
    return [fence["global_rules"], *(f["properties"].get("rules", []) for f in features)]


def schema_errors(feed: str, doc: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / f"{feed}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    checker = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return [f"{feed}: {e.json_path}: {e.message}" for e in checker.iter_errors(doc)]


def test_the_cross_file_checks_catch_what_they_check() -> None:
    """Each rule, broken on purpose, is reported (a checker that says nothing proves nothing)."""
    vehicle = {"vehicle_id": "a", "is_reserved": False, "is_disabled": False, "station_id": "1"}
    good: Feeds = {
        "station_information": {"data": {"stations": [{"station_id": "1", "capacity": 2}]}},
        "station_status": {
            "data": {
                "stations": [
                    {
                        "station_id": "1",
                        "num_vehicles_available": 1,
                        "num_vehicles_disabled": 0,
                        "num_docks_available": 1,
                        "vehicle_types_available": [{"vehicle_type_id": "s", "count": 1}],
                    }
                ]
            }
        },
        "vehicle_types": {
            "data": {
                "vehicle_types": [
                    {"vehicle_type_id": "s", "propulsion_type": "electric", "max_range_meters": 9}
                ]
            }
        },
        "vehicle_status": {
            "data": {"vehicles": [{**vehicle, "vehicle_type_id": "s", "current_range_meters": 4}]}
        },
        "geofencing_zones": {
            "data": {
                "geofencing_zones": {"features": []},
                "global_rules": [{"vehicle_type_ids": ["s"]}],
            }
        },
    }
    assert cross_file_problems(good) == []
    breaks: list[Callable[[Feeds], None]] = [
        lambda f: f["station_information"]["data"]["stations"].clear(),
        lambda f: f["vehicle_status"]["data"]["vehicles"][0].pop("current_range_meters"),
        lambda f: f["vehicle_status"]["data"]["vehicles"][0].update(vehicle_type_id="x"),
        lambda f: f["vehicle_status"]["data"]["vehicles"][0].update(is_disabled=True),
        lambda f: f["vehicle_status"]["data"]["vehicles"].append(
            {**vehicle, "vehicle_type_id": "s", "current_range_meters": 1}
        ),
        lambda f: f["geofencing_zones"]["data"]["global_rules"][0].update(vehicle_type_ids=["x"]),
        lambda f: f["station_status"]["data"]["stations"][0].update(num_docks_available=2),
    ]
    for i, breach in enumerate(breaks):
        feeds = json.loads(json.dumps(good))
        breach(feeds)
        assert cross_file_problems(feeds), f"breach {i} went unnoticed"


# -- the feeds served by the API ---------------------------------------------------------------
async def fetch_all(client: httpx.AsyncClient | httpx.Client) -> Feeds:
    """gbfs.json, then every feed it links to, as a consumer reads them."""

    async def get(url: str) -> dict[str, Any]:
        response = client.get(url)
        if not isinstance(response, httpx.Response):
            response = await response
        assert response.status_code == 200, (url, response.status_code)
        body: dict[str, Any] = response.json()
        return body

    feeds = {"gbfs": await get("/gbfs/gbfs.json")}
    for link in feeds["gbfs"]["data"]["feeds"]:
        feeds[link["name"]] = await get(link["url"])
    return feeds


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = open_test_store(tmp_path / "cross.db")
    seed_fleet(store)
    store.bundles.save(1, "dashboard", json.loads((RULES / "demo-milano.json").read_text()))
    app = create_app(store, Outbox(store.db), tokens={"x" * 16: ["read"]})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield store, client


async def test_cross_file_rules_hold_as_the_fleet_changes(api) -> None:
    store, client = api

    async def snapshot() -> Feeds:
        feeds = await fetch_all(client)
        assert set(feeds) == {"gbfs", *FEEDS}
        errors = [e for name, doc in feeds.items() for e in schema_errors(name, doc)]
        assert errors == [] and cross_file_problems(feeds) == [], errors
        return feeds

    def ids(feeds: Feeds) -> dict[str, str | None]:
        return {v["vehicle_id"]: v.get("station_id") for v in _vehicles(feeds)}

    first = await snapshot()
    store.vehicles.update(2, status="reserved")
    store.vehicles.update(4, status="broken")
    await snapshot()
    trip = store.trips.start(1, 1)
    riding = await snapshot()
    assert len(ids(riding)) == len(ids(first)) - 1  # the rented vehicle is not listed
    store.trips.end(trip, spot_id=1010, station_id=101)
    store.outages.start(100, "cable cut")
    back = await snapshot()
    # vehicle 1 is back under an id never published before; the others kept theirs
    fresh = set(ids(back)) - set(ids(first))
    assert len(fresh) == 1 and ids(back)[fresh.pop()] == "101"
    assert set(ids(first)) - set(ids(back)) == {
        v for v, st in ids(first).items() if st == "100" and v not in ids(riding)
    }


def _vehicles(feeds: Feeds) -> list[dict[str, Any]]:
    vehicles: list[dict[str, Any]] = feeds["vehicle_status"]["data"]["vehicles"]
    return vehicles


async def test_the_independent_validator_reports_a_broken_feed(api, tmp_path: Path) -> None:
    """The validator is no rubber stamp: the feeds, saved as files, pass; the same feeds with
    a motorised vehicle that names no type nor range, and a wrong time zone, do not."""
    _, client = api
    feeds = await fetch_all(client)
    folder = tmp_path / "feed"
    folder.mkdir()

    def save(docs: Feeds) -> str:
        for link in docs["gbfs"]["data"]["feeds"]:
            link["url"] = (folder / f"{link['name']}.json").as_uri()
        for name, doc in docs.items():
            (folder / f"{name}.json").write_text(json.dumps(doc))
        return str(folder)

    assert notices(independent_validation(save(feeds))) == []
    vehicle = _vehicles(feeds)[0]
    del vehicle["vehicle_type_id"], vehicle["current_range_meters"]
    feeds["system_information"]["data"]["timezone"] = "Europe/Milan"
    found = notices(independent_validation(save(feeds)))
    assert any(n.startswith("vehicle_status.json /data/vehicles/0") for n in found), found
    assert any(n.startswith("system_information.json /data/timezone") for n in found), found


# -- a running daemon, and the independent validator -------------------------------------------
STATIONS = [
    StationConf(1, "ST001", 45.4648, 9.1885, spots=4),
    StationConf(2, "ST002", 45.4733, 9.2051),
]
SERIALS = ("SXG0001", "SXG0002", "SXG0003")
BUNDLES = ["demo-milano.json", "gbfs-3.0-geofencing_zones.json"]


def independent_validation(url: str) -> dict[str, Any]:
    """``gbfs-validator`` (PyPI) on the feed at ``url``: docked and free-floating files both
    required, every notice an error."""
    run = subprocess.run(
        [sys.executable, "-m", "gbfs_validator.cli", "-u", url, "--docked", "--free-floating"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def notices(report: dict[str, Any]) -> list[str]:
    out = []
    for file in report.get("files", []):
        if file.get("required") and not file.get("exists"):
            out.append(f"{file['file']}: required and missing")
        for lang in file.get("languages") or [file]:
            for e in lang.get("errors") or []:
                out.append(f"{file['file']} {e.get('instancePath')}: {e.get('message')}")
    return out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("bundle", BUNDLES)
async def test_live_feeds_pass_an_independent_validator(
    tmp_path: Path, mosquitto: Mosquitto, bundle: str
) -> None:
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=STATIONS,
        extra={
            "rules": {"bundle": str(RULES / bundle)},
            "gbfs": {"feed_contact_email": "gbfs@example.org", "ttl": 60, "language": "it"},
        },
    )
    broker = Broker("127.0.0.1", mosquitto.port)
    station = StationSim("ST001", broker, spots=4)
    scooters = [
        ScooterSim(s, broker, start=(45.4655 + i / 1000, 9.1900), battery=90 - 20 * i)
        for i, s in enumerate(SERIALS)
    ]
    try:
        daemon.start()
        for sc in scooters:
            await sc.start()
        await until(lambda: len(daemon.get("/api/v1/vehicles")) == 3, 20, "vehicles learned")
        await station.start()
        station.dock(1, SERIALS[0])
        await until(
            lambda: any(v.get("spot_id") for v in daemon.get("/api/v1/vehicles")), 20, "docked"
        )
        base = f"http://127.0.0.1:{daemon.api_port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            feeds = await fetch_all(client)
            errors = [e for name, doc in feeds.items() for e in schema_errors(name, doc)]
            assert errors == [], errors
            assert cross_file_problems(feeds) == []
            assert {f["url"] for f in feeds["gbfs"]["data"]["feeds"]} == {
                f"{base}/gbfs/{name}.json" for name in ("gbfs", *FEEDS)
            }
            # the running daemon publishes the very bundle it enforces
            types = [t["vehicle_type_id"] for t in feeds["vehicle_types"]["data"]["vehicle_types"]]
            expected = geofencing(
                load_bundle(RULES / bundle), time.time(), language="it", vehicle_types=types
            )
            assert feeds["geofencing_zones"]["data"] == expected.data
            docked = [v for v in _vehicles(feeds) if v.get("station_id") == "1"]
            assert len(docked) == 1 and len(_vehicles(feeds)) == 3
            tag = client.get("/gbfs/vehicle_types.json").headers["etag"]
            again = client.get("/gbfs/vehicle_types.json", headers={"If-None-Match": tag})
            assert again.status_code == 304
        report = independent_validation(f"{base}/gbfs/gbfs.json")
        assert notices(report) == [], notices(report)
        summary = report["summary"]
        assert summary["hasErrors"] is False and summary["errorsCount"] == 0, summary
        assert summary["version"]["detected"] == "3.0"
        checked = {f["file"] for f in report["files"] if f.get("exists")}
        assert checked == {f"{name}.json" for name in ("gbfs", *FEEDS)}
    finally:
        for sc in scooters:
            await sc.stop()
        await station.stop()
        daemon.terminate()
        daemon.close()
