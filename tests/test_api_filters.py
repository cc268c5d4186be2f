"""The dashboard's filters and sorts over HTTP: each one filters or sorts (exact ids), a page walk
visits every row once, nothing is silently ignored (an unknown or unsupported parameter is a
422 naming it), every refusal lists its problems, and trips speak the dashboard's states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Database, NewAlert, Store
from dockgate.gateway.store._schema import MIGRATIONS
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
BASE = 1_709_251_200.0  # 2024-03-01T00:00:00Z
DAY, HOUR = 86_400.0, 3_600.0


@dataclass
class Clock:
    now: float = BASE

    def __call__(self) -> float:
        return self.now


def client_of(store: Store) -> httpx.AsyncClient:
    app = create_app(store, Outbox(store.db), tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def seed_site(store: Store, clock: Clock) -> None:
    """Two networks, four riders, four trips and six alerts at known times.

    Trips (id: rider, vehicle, start station -> end station, start, end):
    1: ada, SN000001, 100 -> 101, Mar 1 01:00, +600 s (finished)
    2: bob, SN000002, 101 -> 200, Mar 2 01:00, +300 s (finished)
    3: ada, SN000003, 100, Mar 3 01:00, on hold
    4: bob, SN000005 (network 2), 200, Mar 4 01:00, running; now is Mar 4 02:00.
    Alerts: 1 (Mar 1, vehicle 1 in trip 1, resolved Mar 5), 2 (Mar 2, vehicle 2 in trip 2),
    3 (Mar 2, station power cut, cluster 10, resolved Mar 6), 4 (Mar 3, vehicle 3 in trip 3),
    5 (Mar 4, network 2, vehicle 5 in trip 4, resolved Mar 6), 6 (Mar 4, spot, cluster 10).
    """
    seed_fleet(store)
    topology = store.topology
    topology.upsert_network(2, "Lyon")
    topology.upsert_cluster(20, 2, "Part-Dieu", 45.76, 4.86)
    topology.upsert_station(200, 20, "Station 200", 45.76, 4.86)
    store.vehicles.upsert(5, 2, "SN000005", battery=90)
    store.riders.upsert(3, email="carol@example.com")
    store.riders.upsert(4, email="dave@example.net")
    store.riders.set_blocked(4, True, "fraud")

    def at(moment: float) -> None:
        clock.now = moment

    at(BASE + HOUR)
    t1 = store.trips.start(1, 1, station_id=100)
    at(BASE + HOUR + 600)
    store.trips.end(t1, station_id=101)
    at(BASE + DAY + HOUR)
    t2 = store.trips.start(2, 2, station_id=101)
    at(BASE + DAY + HOUR + 300)
    store.trips.end(t2, station_id=200)
    at(BASE + 2 * DAY + HOUR)
    t3 = store.trips.start(1, 3, station_id=100)
    at(BASE + 2 * DAY + 90 * 60)
    store.trips.set_status(t3, "on-hold")
    at(BASE + 3 * DAY + HOUR)
    store.trips.start(2, 5, station_id=200)

    alerts = [
        (BASE + HOUR + 100, NewAlert(1, "vehicle-fallen", "low", vehicle_id=1)),
        (BASE + DAY + HOUR + 100, NewAlert(1, "vehicle-lifted", "high", vehicle_id=2)),
        (
            BASE + DAY + 2 * HOUR,
            NewAlert(1, "station-power-cut", "critical", cluster_id=10, station_id=100),
        ),
        (BASE + 2 * DAY + 2 * HOUR, NewAlert(1, "vehicle-dismantling", "critical", vehicle_id=3)),
        (
            BASE + 3 * DAY + HOUR + 100,
            NewAlert(2, "vehicle-fallen", "low", cluster_id=20, vehicle_id=5),
        ),
        (
            BASE + 3 * DAY + 3 * HOUR,
            NewAlert(1, "spot-identify-fail", "low", cluster_id=10, station_id=101, spot_id=1010),
        ),
    ]
    for moment, alert in alerts:
        at(moment)
        store.alerts.raise_alert(alert)
    at(BASE + 4 * DAY)
    store.alerts.resolve([1])
    at(BASE + 5 * DAY)
    store.alerts.resolve([3, 5])
    at(BASE + 3 * DAY + 2 * HOUR)


@pytest.fixture
async def site(tmp_path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    clock = Clock()
    store = open_test_store(tmp_path / "filters.db", clock=clock)
    seed_site(store, clock)
    async with client_of(store) as client:
        yield store, client


async def listing(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/api/v1{path}", params=params, headers=READ)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def ids(client: httpx.AsyncClient, path: str, **params: Any) -> list[int]:
    """The ids of one page; the page holds every match (``total``) in these small lists."""
    body = await listing(client, path, **params)
    found = [row["id"] for row in body["data"]]
    assert body["total"] == len(found), body
    return found


async def refused(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/api/v1{path}", params=params, headers=READ)
    assert r.status_code == 422, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == 422 and body["message"] and body["problems"], body
    return body


def named(body: dict[str, Any]) -> list[str]:
    return [p["loc"][-1] for p in body["problems"]]


# -- fleet alerts --------------------------------------------------------------------------------

HISTORY = [
    ({}, [5, 3, 1]),
    ({"networks": "1"}, [3, 1]),
    ({"networks": "2"}, [5]),
    ({"networks": "1,2"}, [5, 3, 1]),
    ({"alert_type": "vehicle-fallen"}, [5, 1]),
    ({"alert_severity": "critical"}, [3]),
    ({"creation_date_min": "2024-03-02"}, [5, 3]),
    ({"creation_date_max": "2024-03-02"}, [3, 1]),
    ({"creation_date_min": "2024-03-02", "creation_date_max": "2024-03-02"}, [3]),
    ({"resolved_at_min": "2024-03-06"}, [5, 3]),
    ({"resolved_at_max": "2024-03-05"}, [1]),
    ({"user_id": 1}, [1]),
    ({"user_id": 2}, [5]),
    ({"email": "ADA"}, [1]),
    ({"email": "example.org"}, [5, 1]),
    ({"email": "%"}, []),
    ({"cluster_name": "gar"}, [3]),
    ({"cluster_name": "part-"}, [5]),
    ({"cluster_id": 10}, [3]),
    ({"vehicle_id": 5}, [5]),
    ({"serial_number": "SN000001"}, [1]),
    ({"sort_by": "creation_date", "sort_dir": "ASC"}, [1, 3, 5]),
    ({"sort_by": "alert_severity", "sort_dir": "DESC"}, [3, 5, 1]),
    ({"sort_by": "alert_severity", "sort_dir": "ASC"}, [5, 1, 3]),
    ({"sort_by": "alert_severity", "sort_dir": "ASC", "primary_key_dir": "ASC"}, [1, 5, 3]),
    ({"sort_by": "resolved_at", "sort_dir": "ASC"}, [1, 5, 3]),
    ({"primary_key_dir": "ASC"}, [1, 3, 5]),
]


@pytest.mark.parametrize(("params", "expected"), HISTORY)
async def test_alert_history_filters_and_sorts(site, params, expected) -> None:
    _, client = site
    assert await ids(client, "/fleet-alerts/history", **params) == expected


CURRENT = [
    ({}, [6, 4, 2]),
    ({"alert_type": "vehicle-dismantling"}, [4]),
    ({"user_id": 1}, [4]),
    ({"email": "bob@"}, [2]),
    ({"cluster_name": "GARE"}, [6]),
    ({"serial_number": "SN000002"}, [2]),
    ({"creation_date_min": "2024-03-03"}, [6, 4]),
    ({"sort_by": "alert_severity"}, [4, 2, 6]),
    ({"sort_by": "creation_date", "sort_dir": "ASC"}, [2, 4, 6]),
    ({"networks": "2"}, []),
]


@pytest.mark.parametrize(("params", "expected"), CURRENT)
async def test_current_alert_filters_and_sorts(site, params, expected) -> None:
    _, client = site
    assert await ids(client, "/fleet-alerts", **params) == expected


async def test_current_alerts_have_no_resolution_filter(site) -> None:
    _, client = site
    body = await refused(client, "/fleet-alerts", resolved_at_min="2024-03-01")
    assert named(body) == ["resolved_at_min"]
    body = await refused(client, "/fleet-alerts", sort_by="resolved_at")
    assert named(body) == ["sort_by"]


# -- trips ---------------------------------------------------------------------------------------

TRIPS = [
    ({}, [4, 3, 2, 1]),
    ({"state": "finished"}, [2, 1]),
    ({"state": "running"}, [4]),
    ({"state": "on-hold"}, [3]),
    ({"state": "running,on-hold"}, [4, 3]),
    ({"state": "cancelled"}, []),
    ({"networks": "2"}, [4]),
    ({"networks": "1"}, [3, 2, 1]),
    ({"start_date_min": "2024-03-02T00:00:00Z"}, [4, 3, 2]),
    ({"start_date_max": "2024-03-02T12:00:00Z"}, [2, 1]),
    ({"start_date_min": "2024-03-02T00:00:00"}, [4, 3, 2]),  # no offset: UTC
    ({"start_date_min": "2024-03-02T02:00:00+01:00"}, [4, 3, 2]),  # 01:00Z, bound included
    ({"end_date_min": "2024-03-02T00:00:00Z"}, [2]),
    ({"end_date_max": "2024-03-01T23:59:59Z"}, [1]),
    ({"trip_id_min": 2, "trip_id_max": 3}, [3, 2]),
    ({"serial_number": "SN000005"}, [4]),
    ({"email": "bob"}, [4, 2]),
    ({"user_id": 1}, [3, 1]),
    ({"cluster_start_id": 10}, [3, 2, 1]),
    ({"cluster_start_id": 20}, [4]),
    ({"cluster_start_name": "gare"}, [3, 2, 1]),
    ({"cluster_end_id": 10}, [1]),
    ({"cluster_end_id": 20}, [2]),
    ({"cluster_end_name": "dieu"}, [2]),
    ({"duration_min": 3600}, [4, 3]),
    ({"duration_max": 600}, [2, 1]),
    ({"duration_min": 301, "duration_max": 3600}, [4, 1]),
    ({"sort_by": "start_date", "sort_dir": "ASC"}, [1, 2, 3, 4]),
    ({"sort_by": "end_date", "sort_dir": "DESC"}, [4, 3, 2, 1]),
    ({"sort_by": "end_date", "sort_dir": "ASC"}, [1, 2, 4, 3]),
    ({"sort_by": "end_date", "sort_dir": "ASC", "primary_key_dir": "ASC"}, [1, 2, 3, 4]),
    ({"sort_by": "duration", "sort_dir": "DESC"}, [3, 4, 1, 2]),
    ({"sort_by": "duration", "sort_dir": "ASC"}, [2, 1, 4, 3]),
]


@pytest.mark.parametrize(("params", "expected"), TRIPS)
async def test_trip_filters_and_sorts(site, params, expected) -> None:
    _, client = site
    assert await ids(client, "/trips", **params) == expected


async def test_trips_speak_the_dashboards_states(site) -> None:
    store, client = site
    states = {t["id"]: t["status"] for t in (await listing(client, "/trips"))["data"]}
    assert states == {1: "finished", 2: "finished", 3: "on-hold", 4: "running"}
    store.trips.set_status(3, "running")
    assert (await listing(client, "/trips/3"))["data"]["status"] == "running"
    store.trips.end(4, station_id=200)
    assert (await listing(client, "/trips/4"))["data"]["status"] == "finished"
    assert await ids(client, "/trips", state="running") == [3]
    body = await refused(client, "/trips", state="running,ended")
    assert named(body) == ["state"] and "on-hold" in body["problems"][0]["msg"]


@pytest.mark.parametrize("name", ["model_name", "demo", "distance_min", "distance_max"])
async def test_trip_filters_without_data_are_refused_by_name(site, name) -> None:
    _, client = site
    body = await refused(client, "/trips", **{name: "1"})
    assert named(body) == [name] and body["problems"][0]["msg"].startswith("not supported")


async def test_trip_sort_without_data_is_refused(site) -> None:
    _, client = site
    assert named(await refused(client, "/trips", sort_by="distance")) == ["sort_by"]


# -- users ---------------------------------------------------------------------------------------

USERS = [
    ({}, [4, 3, 2, 1]),
    ({"networks": "1"}, [2, 1]),
    ({"networks": "2"}, [2]),
    ({"networks": "2", "without_network": "true"}, [4, 3, 2]),
    ({"without_network": "false"}, [2, 1]),
    ({"without_network": "true"}, [4, 3, 2, 1]),
    ({"user_id_min": 2, "user_id_max": 3}, [3, 2]),
    ({"email": "example.com"}, [3]),
    ({"blocked": "true"}, [4]),
    ({"blocked": "false"}, [3, 2, 1]),
    ({"trip_count_min": 2}, [2, 1]),
    ({"trip_count_max": 0}, [4, 3]),
    ({"last_activity_min": "2024-03-04T00:00:00Z"}, [2]),
    ({"last_activity_max": "2024-03-03T12:00:00Z"}, [1]),
    ({"last_activity_min": "2024-03-04T02:00:00"}, []),  # UTC: after bob's 01:00
    ({"last_activity_min": "2024-03-04T02:00:00", "timezone": "Europe/Paris"}, [2]),
    ({"sort_by": "trip_count"}, [2, 1, 4, 3]),
    ({"sort_by": "last_activity", "sort_dir": "ASC"}, [4, 3, 1, 2]),
    ({"primary_key_dir": "ASC"}, [1, 2, 3, 4]),
]


@pytest.mark.parametrize(("params", "expected"), USERS)
async def test_user_filters_and_sorts(site, params, expected) -> None:
    _, client = site
    assert await ids(client, "/users", **params) == expected


@pytest.mark.parametrize(
    "name", ["lastname", "firstname", "register_at_min", "phone_number", "currency"]
)
async def test_user_filters_without_data_are_refused_by_name(site, name) -> None:
    _, client = site
    body = await refused(client, "/users", **{name: "EUR"})
    assert named(body) == [name] and body["problems"][0]["msg"].startswith("not supported")


async def test_user_timezone_must_exist(site) -> None:
    _, client = site
    assert named(await refused(client, "/users", timezone="Mars/Olympus")) == ["timezone"]
    # a name too long for the filesystem made zoneinfo raise OSError: a 500 (found by fuzzing)
    hostile = "0" * 43 + "\x80" * 300
    assert named(await refused(client, "/users", timezone=hostile)) == ["timezone"]
    assert named(await refused(client, "/users", timezone="../../etc/passwd")) == ["timezone"]
    assert named(await refused(client, "/users", sort_by="register_at")) == ["sort_by"]


# -- other lists ---------------------------------------------------------------------------------


async def test_networks_filter_vehicles_and_clusters(site) -> None:
    _, client = site
    assert await ids(client, "/vehicles") == [1, 2, 3, 4, 5]
    assert await ids(client, "/vehicles", networks="2") == [5]
    assert await ids(client, "/vehicles", primary_key_dir="DESC", networks="1") == [4, 3, 2, 1]
    assert await ids(client, "/clusters", networks="2") == [20]
    assert await ids(client, "/networks") == [1, 2]
    assert await ids(client, "/clusters/10/stations") == [100, 101]
    assert named(await refused(client, "/vehicles", networks="1,x")) == ["networks"]
    assert named(await refused(client, "/vehicles", networks="0")) == ["networks"]


# -- pages ---------------------------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> list[int]:
    """Every page of a list, following ``last_primary_key``; the pages' ids in order."""
    seen: list[int] = []
    last = None
    while True:
        page_params = {**params, "page_size": 10}
        if last is not None:
            page_params["last_primary_key"] = last
        body = await listing(client, path, **page_params)
        rows = [row["id"] for row in body["data"]]
        assert len(rows) <= 10
        seen += rows
        if len(rows) < 10:
            assert body["total"] == len(seen), (path, params, body["total"], seen)
            return seen
        last = rows[-1]


@pytest.fixture
async def crowd(tmp_path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    """37 riders, 37 vehicles, 37 trips and 37 resolved alerts, sort keys often equal."""
    clock = Clock()
    store = open_test_store(tmp_path / "crowd.db", clock=clock)
    store.topology.upsert_network(1, "Strasbourg")
    for i in range(1, 38):
        store.riders.upsert(i, email=f"r{i}@example.org")
        store.vehicles.upsert(i, 1, f"SN{i:06d}")
        clock.now = BASE + (i % 4) * HOUR  # four start times for 37 trips
        trip = store.trips.start(i, i)
        clock.now += (i % 3) * 60  # three durations
        if i % 5:
            store.trips.end(trip)
        severity = ("low", "high", "critical")[i % 3]
        clock.now = BASE + (i % 2) * DAY
        store.alerts.raise_alert(NewAlert(1, "vehicle-fallen", severity, vehicle_id=i))
    store.alerts.resolve(range(1, 38))
    clock.now = BASE + DAY
    async with client_of(store) as client:
        yield store, client


WALKS = [
    ("/fleet-alerts/history", {}),
    ("/fleet-alerts/history", {"sort_by": "alert_severity"}),
    ("/fleet-alerts/history", {"sort_by": "alert_severity", "sort_dir": "ASC"}),
    ("/fleet-alerts/history", {"sort_by": "creation_date", "primary_key_dir": "ASC"}),
    ("/trips", {}),
    ("/trips", {"sort_by": "start_date"}),
    ("/trips", {"sort_by": "duration", "sort_dir": "ASC"}),
    ("/trips", {"sort_by": "end_date", "primary_key_dir": "ASC"}),
    ("/trips", {"state": "finished", "sort_by": "duration"}),
    ("/users", {"sort_by": "trip_count"}),
    ("/users", {"sort_by": "last_activity", "sort_dir": "ASC"}),
    ("/vehicles", {}),
    ("/vehicles", {"primary_key_dir": "DESC"}),
]


@pytest.mark.parametrize(("path", "params"), WALKS)
async def test_paging_walks_every_row_exactly_once_in_order(crowd, path, params) -> None:
    _, client = crowd
    walked = await walk(client, path, **params)
    whole = await listing(client, path, **params, page_size=500)
    assert walked == [row["id"] for row in whole["data"]]  # one pass, the same order
    assert len(set(walked)) == len(walked) == whole["total"]


async def test_a_page_says_how_many_rows_match(crowd) -> None:
    _, client = crowd
    body = await listing(client, "/trips", page_size=10, state="running")
    assert len(body["data"]) == 7 and body["total"] == 7  # trips 5, 10, ... 35
    body = await listing(client, "/fleet-alerts/history")
    assert len(body["data"]) == 20 and body["total"] == 37  # the default page, and more


@pytest.mark.parametrize("size", ["501", "9", "0", "1_0"])
async def test_page_size_beyond_the_limits_is_refused_never_cut(crowd, size) -> None:
    _, client = crowd
    for path in ("/fleet-alerts", "/fleet-alerts/history", "/trips", "/users", "/vehicles"):
        body = await refused(client, path, page_size=size)
        assert named(body) == ["page_size"], (path, body)


async def test_a_sorted_page_after_an_unknown_row_is_refused(crowd) -> None:
    _, client = crowd
    body = await refused(client, "/trips", sort_by="duration", last_primary_key=999)
    assert body["problems"] == [
        {"loc": ["query", "last_primary_key"], "msg": body["problems"][0]["msg"]}
    ]
    assert await ids(client, "/trips", last_primary_key=999, state="cancelled") == []


# -- nothing silently ignored -------------------------------------------------------------------

READ_ROUTES = [
    "/networks",
    "/clusters",
    "/clusters/10",
    "/clusters/10/stations",
    "/clusters/10/outages",
    "/stations/100/energy-consumption?start=0&end=10",
    "/vehicles",
    "/vehicles/1",
    "/trips",
    "/trips/1",
    "/events",
    "/events/stats",
    "/fleet-alerts",
    "/fleet-alerts/history",
    "/users",
    "/users/1",
    "/users/1/blocked",
    "/users/1/badges",
    "/products",
    "/tag-keys",
    "/config/bundles/current",
]


@pytest.mark.parametrize("path", READ_ROUTES)
async def test_every_route_refuses_a_parameter_it_does_not_read(site, path) -> None:
    _, client = site
    joiner = "&" if "?" in path else "?"
    good = await client.get(f"/api/v1{path}{joiner}language=en-US", headers=READ)
    assert good.status_code == 200, good.text
    by_token = await client.get(f"/api/v1{path}{joiner}private_token={READ_TOKEN}")
    assert by_token.status_code == 200, by_token.text
    r = await client.get(f"/api/v1{path}{joiner}cluster_nam=Gare&language=x!", headers=READ)
    assert r.status_code == 422, r.text
    assert r.json()["problems"] == [
        {"loc": ["query", "cluster_nam"], "msg": "not a parameter of this route"},
        {"loc": ["query", "language"], "msg": "a language tag, e.g. en-US"},
    ]
    assert "cluster_nam" in r.json()["message"]


async def test_public_routes_refuse_unknown_parameters_too(site) -> None:
    _, client = site
    assert (await client.get("/health?language=fr")).status_code == 200
    r = await client.get("/health?verbose=1")
    assert r.status_code == 422 and r.json()["problems"][0]["loc"] == ["query", "verbose"]


async def test_the_reported_cases_are_no_longer_ignored(site) -> None:
    """The issue's findings: each filter now filters, or is refused."""
    _, client = site
    assert await ids(client, "/fleet-alerts/history", serial_number="SN000001") == [1]
    assert await ids(client, "/trips", state="finished") == [2, 1]
    assert await ids(client, "/fleet-alerts/history", cluster_name="Gare") == [3]
    assert await ids(client, "/trips", user_id=2) == [4, 2]
    assert await ids(client, "/trips", email="ada@") == [3, 1]
    assert await ids(client, "/trips", sort_by="start_date", sort_dir="ASC") == [1, 2, 3, 4]
    assert await ids(client, "/users", networks="2") == [2]
    assert await ids(client, "/trips", start_date_max="2024-03-01T12:00:00Z") == [1]


async def test_a_parameter_given_twice_is_refused(site) -> None:
    _, client = site
    r = await client.get("/api/v1/trips?state=running&state=finished", headers=READ)
    assert r.status_code == 422
    assert r.json()["problems"][0]["loc"] == ["query", "state"]


async def test_lang_of_cluster_details_is_checked(site) -> None:
    _, client = site
    assert (await listing(client, "/clusters/10", lang="fr"))["data"]["id"] == 10
    assert named(await refused(client, "/clusters/10", lang="french")) == ["lang"]


# -- refusals carry problems ---------------------------------------------------------------------


async def test_every_400_and_422_lists_its_problems(site) -> None:
    _, client = site
    r = await client.post(
        "/api/v1/products", json={"name": "c"}, headers={**SYNC, "Idempotency-Key": ""}
    )
    assert r.status_code == 400
    assert r.json()["problems"][0]["loc"] == ["header", "Idempotency-Key"]
    r = await client.get("/api/v1/stations/100/energy-consumption?start=10&end=5", headers=READ)
    assert r.status_code == 422 and r.json()["problems"][0]["loc"] == ["query", "end"]
    r = await client.post("/api/v1/products", content=b"{", headers=SYNC)
    assert r.status_code == 422 and r.json()["problems"][0]["loc"][0] == "body"
    r = await client.get("/api/v1/fleet-alerts/history?alert_type=vehicle-on-fire", headers=READ)
    body = r.json()
    assert r.status_code == 422 and body["message"] == "invalid alert_type"
    assert body["problems"][0]["loc"] == ["query", "alert_type"]
    r = await client.put("/api/v1/users/1", json={"credit": "lots"}, headers=SYNC)
    assert r.status_code == 422 and r.json()["problems"][0]["loc"] == ["body", "credit"]


async def test_energy_over_the_dashboards_days(site) -> None:
    store, client = site
    for moment, wh in ((BASE - HOUR, 1.0), (BASE + HOUR, 2.0), (BASE + DAY + HOUR, 4.0)):
        store.energy.add(100, moment, wh)
    path = "/stations/100/energy-consumption"
    utc = await listing(client, path, start_date="2024-03-01", end_date="2024-03-01")
    assert utc["data"]["energy_wh"] == 2.0
    paris = await listing(
        client, path, start_date="2024-03-01", end_date="2024-03-02", timezone="Europe/Paris"
    )
    assert paris["data"]["energy_wh"] == 7.0  # from Feb 29 23:00Z: the first reading too
    both = await refused(client, path, start=0, end_date="2024-03-01", start_date="2024-03-01")
    assert named(both) == ["start"]
    assert named(await refused(client, path, start_date="2024-03-01")) == ["end_date"]
    assert named(await refused(client, path, start=0, end=1, timezone="UTC")) == ["timezone"]


# -- the stored trip states ----------------------------------------------------------------------


def test_stored_trip_states_migrate_to_the_dashboards(tmp_path) -> None:
    mine = next(i for i, step in enumerate(MIGRATIONS) if "THEN 'finished'" in step)
    db = Database(tmp_path / "old.db")
    db.migrate("store", MIGRATIONS[:mine])
    with db.transaction() as c:
        c.execute("INSERT INTO networks VALUES (1, 'n', 'UTC', 0)")
        c.execute("INSERT INTO riders(id, updated_at) VALUES (1, 0)")
        for status in ("started", "paused", "on_hold", "ended"):
            c.execute(
                "INSERT INTO vehicles(network_id, serial_number, gbfs_id, updated_at)"
                " VALUES (1, ?, 'g', 0)",
                (f"SN{status}",),
            )
            c.execute(
                "INSERT INTO trips(rider_id, vehicle_id, status, started_at, updated_at)"
                " VALUES (1, last_insert_rowid(), ?, 0, 0)",
                (status,),
            )
    db.close()
    store = Store.open(tmp_path / "old.db")
    rows = store.db.conn.execute("SELECT status FROM trips ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["running", "on-hold", "on-hold", "finished"]
    assert [t.id for t in store.trips.open()] == [1, 2, 3]
    plan = store.db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM trips WHERE status IN ('running', 'on-hold')"
    ).fetchall()
    assert any("trips_open" in str(tuple(r)) for r in plan), [tuple(r) for r in plan]
