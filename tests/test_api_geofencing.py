"""The dashboard's Geofencing operations and network settings one by one over HTTP: each write
saves the whole bundle as the next version (checked as a whole, announced, loadable by the
engine), is replayed for a repeated Idempotency-Key, takes the dashboard's bodies as JSON or
as forms, and refuses another network naming the field, leaving the bundle as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from dockgate.api import ApiLimits, create_app
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.rules import load_bundle
from dockgate.gateway.store import Store
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.dashboard import body, seed_bundle
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

ROOT = Path(__file__).resolve().parents[1]
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
FORM = {**SYNC, "content-type": "application/x-www-form-urlencoded"}
GEO = "/api/v1/geofencing"
NET = "/api/v1/networks/1"
SQUARE = [[7.750, 48.570], [7.752, 48.570], [7.752, 48.572], [7.750, 48.572]]
BOWTIE = [[7.71, 48.57], [7.72, 48.58], [7.72, 48.57], [7.71, 48.58]]


class Gateway:
    """The API over a real store with the seed fleet (network 1), and what it saved."""

    def __init__(self, store: Store, outbox: Outbox, client: httpx.AsyncClient) -> None:
        self.store, self.outbox, self.client = store, outbox, client

    @property
    def version(self) -> int:
        saved = self.store.bundles.current()
        return 0 if saved is None else saved.version

    @property
    def bundle(self) -> dict[str, Any]:
        saved = self.store.bundles.current()
        assert saved is not None
        return saved.body

    def announced(self) -> list[int]:
        return [
            e.payload["version"] for e in self.outbox.read(0, 1000) if e.kind == "config.applied"
        ]

    async def data(self, method: str, url: str, **kw: Any) -> Any:
        """The answer's data, after checking it is a success."""
        kw.setdefault("headers", SYNC)
        r = await self.client.request(method, url, **kw)
        assert r.status_code == 200, r.text
        assert r.json()["code"] == 0
        return r.json()["data"]


async def _gateway(tmp_path: Path, limits: ApiLimits | None = None) -> AsyncIterator[Gateway]:
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    outbox = Outbox(store.db)
    tokens = {SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]}
    app = create_app(store, outbox, tokens=tokens, limits=limits or ApiLimits())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield Gateway(store, outbox, client)


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for gw in _gateway(tmp_path):
        yield gw


@pytest.fixture
async def gw(bare: Gateway) -> Gateway:
    """A gateway running the bundle made of the dashboard's bodies (version 1)."""
    await bare.data("POST", "/api/v1/config/bundles", json={"version": 1, "bundle": seed_bundle()})
    return bare


def assert_saved(gw: Gateway, version: int) -> dict[str, Any]:
    """The newest bundle is ``version``, announced, and loads as the engine would load it."""
    assert gw.version == version and gw.announced()[-1] == version
    load_bundle(gw.bundle)
    return gw.bundle


# --- one by one ---------------------------------------------------------------------------
async def test_a_change_needs_a_pushed_bundle_to_change(bare: Gateway) -> None:
    r = await bare.client.put(f"{GEO}/border/shape", json=body("border-shape"), headers=SYNC)
    assert r.status_code == 409 and "push a whole one first" in r.json()["message"]
    assert await bare.data("GET", f"{GEO}/speed-zones?network_id=1") == []
    assert await bare.data("GET", f"{NET}/rent-settings") is None
    assert bare.version == 0


async def test_border_shape_and_settings(gw: Gateway) -> None:
    border = await gw.data("GET", f"{GEO}/border?network_id=1", headers=READ)
    assert border["shape"] == body("border-shape")["shape"]
    assert border["settings"]["lock_vehicle"] is True
    # the body as the dashboard sends it, unchanged: nothing to save
    assert (await gw.data("PUT", f"{GEO}/border/shape", json=body("border-shape")))["version"] == 1
    wider = {**body("border-shape"), "shape": [[7.6, 48.5], [7.8, 48.5], [7.8, 48.7], [7.6, 48.7]]}
    assert (await gw.data("PUT", f"{GEO}/border/shape", json=wider))["version"] == 2
    assert assert_saved(gw, 2)["border"]["shape"] == wider["shape"]
    settings = {**body("border-settings"), "lock_vehicle": False}
    await gw.data("PUT", f"{GEO}/border/settings", json=settings)
    border = await gw.data("GET", f"{GEO}/border?network_id=1")
    assert border["shape"] == wider["shape"] and border["settings"]["lock_vehicle"] is False
    assert assert_saved(gw, 3)["border"]["settings"]["lock_vehicle"] is False


async def test_speed_zone_create_update_delete(gw: Gateway) -> None:
    zones = await gw.data("GET", f"{GEO}/speed-zones?network_id=1", headers=READ)
    assert [z["max_speed"] for z in zones] == [6, 6] and zones[1]["id"] == 1
    # the update body that made zone 1, again: nothing changes, nothing is saved
    again = await gw.data("PUT", f"{GEO}/speed-zones", json=body("speed-zone-update"))
    assert again["version"] == 1 and gw.announced() == [1]
    created = await gw.data(
        "POST", f"{GEO}/speed-zones", json={**body("speed-zone-create"), "shape": SQUARE}
    )
    assert created["version"] == 2
    assert_saved(gw, 2)
    zones = await gw.data("GET", f"{GEO}/speed-zones?network_id=1")
    assert zones[-1]["id"] == created["id"] and zones[-1]["shape"] == SQUARE
    update = {**body("speed-zone-update"), "speed_zone_id": created["id"], "max_speed": 20}
    assert (await gw.data("PUT", f"{GEO}/speed-zones", json=update))["id"] == created["id"]
    zones = await gw.data("GET", f"{GEO}/speed-zones?network_id=1")
    assert zones[-1] == {**zones[-1], "id": created["id"], "max_speed": 20}
    assert zones[-1]["shape"] == update["shape"]  # the zone keeps its id as its content changes
    assert_saved(gw, 3)
    await gw.data("DELETE", f"{GEO}/speed-zones/{created['id']}")
    assert [z["id"] for z in await gw.data("GET", f"{GEO}/speed-zones?network_id=1")] == [
        zones[0]["id"],
        1,
    ]
    assert_saved(gw, 4)
    r = await gw.client.delete(f"{GEO}/speed-zones/{created['id']}", headers=SYNC)
    assert r.status_code == 404 and r.json()["problems"][0]["loc"] == ["path", "id"]
    r = await gw.client.put(f"{GEO}/speed-zones", json={"speed_zone_id": 99}, headers=SYNC)
    assert r.status_code == 404 and r.json()["problems"][0]["loc"] == ["body", "speed_zone_id"]
    assert gw.version == 4


async def test_virtual_parking_create_update_delete(gw: Gateway) -> None:
    parkings = await gw.data("GET", f"{GEO}/virtual-parkings?network_id=1", headers=READ)
    assert len(parkings) == 2
    # the create body that made the first one, again: the same parking exists
    r = await gw.client.post(
        f"{GEO}/virtual-parkings", json=body("virtual-parking-create"), headers=SYNC
    )
    assert r.status_code == 409
    new = {**body("virtual-parking-create"), "shape": SQUARE, "network_id": None}
    created = await gw.data("POST", f"{GEO}/virtual-parkings", json=new)
    assert_saved(gw, 2)
    update = {**body("virtual-parking-update"), "capacity": 4}
    await gw.data("PUT", f"{GEO}/virtual-parkings/{created['id']}", json=update)
    parkings = await gw.data("GET", f"{GEO}/virtual-parkings?network_id=1")
    assert parkings[-1] == {**parkings[-1], "id": created["id"], "capacity": 4}
    assert_saved(gw, 3)
    await gw.data("DELETE", f"{GEO}/virtual-parkings/{created['id']}")
    assert len(await gw.data("GET", f"{GEO}/virtual-parkings?network_id=1")) == 2
    assert_saved(gw, 4)


async def test_network_settings(gw: Gateway) -> None:
    for name in ("rent-settings", "rent-timings", "vehicle-speed-settings"):
        assert await gw.data("GET", f"{NET}/{name}", headers=READ) == body(name)
        assert (await gw.data("PUT", f"{NET}/{name}", json=body(name)))["version"] == gw.version
    changed = {**body("rent-settings"), "trip_on_hold": False, "min_battery_to_auto_lock": None}
    await gw.data("PUT", f"{NET}/rent-settings", json=changed)
    assert assert_saved(gw, 2)["rent_settings"] == changed
    timings = {**body("rent-timings"), "trip_auto_pause": 900}
    await gw.data("PUT", f"{NET}/rent-timings", json=timings)
    assert await gw.data("GET", f"{NET}/rent-timings") == timings
    assert_saved(gw, 3)
    await gw.data("PUT", f"{NET}/vehicle-settings/2", json=body("vehicle-settings"))
    models = await gw.data("GET", f"{NET}/vehicle-settings")
    assert [m["model_id"] for m in models] == [1, 2]
    assert_saved(gw, 4)


# --- refusals leave the bundle as it was ----------------------------------------------------
@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "loc"),
    [
        ("POST", f"{GEO}/speed-zones", {**body("speed-zone-create"), "network_id": 2}, 422, "body"),
        ("PUT", f"{GEO}/border/shape", {**body("border-shape"), "network_id": 2}, 422, "body"),
        (
            "PUT",
            f"{GEO}/border/settings",
            {**body("border-settings"), "network_id": 2},
            422,
            "body",
        ),
        (
            "POST",
            f"{GEO}/virtual-parkings",
            {**body("virtual-parking-create"), "network_id": 2},
            422,
            "body",
        ),
        ("PUT", "/api/v1/networks/2/rent-settings", body("rent-settings"), 404, "path"),
        ("PUT", "/api/v1/networks/2/vehicle-settings/1", body("vehicle-settings"), 404, "path"),
        ("GET", f"{GEO}/speed-zones?network_id=2", None, 422, "query"),
        ("GET", "/api/v1/networks/2/rent-timings", None, 404, "path"),
    ],
)
async def test_another_network_is_refused_naming_the_field(
    gw: Gateway, method: str, url: str, payload: Any, status: int, loc: str
) -> None:
    before = gw.bundle
    r = await gw.client.request(method, url, json=payload, headers=SYNC)
    assert r.status_code == status, r.text
    assert r.json()["problems"] == [
        {"loc": [loc, "network_id"], "msg": "must be this gateway's network (1)"}
    ]
    assert gw.version == 1 and gw.bundle == before and gw.announced() == [1]


async def test_a_change_is_checked_with_the_whole_bundle(gw: Gateway) -> None:
    before = gw.bundle
    r = await gw.client.put(
        f"{GEO}/speed-zones", json={"speed_zone_id": 1, "shape": BOWTIE}, headers=SYNC
    )
    assert r.status_code == 422
    [problem] = r.json()["problems"]
    assert problem["loc"] == ["body", "shape"] and problem["msg"].startswith("invalid polygon")
    r = await gw.client.post(
        f"{GEO}/speed-zones", json={**body("speed-zone-create"), "max_speed": 30}, headers=SYNC
    )
    assert r.json()["problems"] == [
        {"loc": ["body", "max_speed"], "msg": "must be between 6 and 25"}
    ]
    assert gw.version == 1 and gw.bundle == before


async def test_writes_need_the_sync_scope(gw: Gateway) -> None:
    r = await gw.client.put(f"{NET}/rent-timings", json=body("rent-timings"), headers=READ)
    assert r.status_code == 403
    r = await gw.client.delete(f"{GEO}/speed-zones/1")
    assert r.status_code == 401
    assert gw.version == 1


# --- Idempotency-Key ----------------------------------------------------------------------
async def test_a_repeated_key_replays_the_first_answer(gw: Gateway) -> None:
    keyed = {**SYNC, "Idempotency-Key": "zone-1"}
    create = {**body("speed-zone-create"), "shape": SQUARE}
    first = await gw.data("POST", f"{GEO}/speed-zones", json=create, headers=keyed)
    again = await gw.data("POST", f"{GEO}/speed-zones", json=create, headers=keyed)
    assert again == first and gw.version == 2 and gw.announced() == [1, 2]
    r = await gw.client.post(f"{GEO}/speed-zones", json={**create, "max_speed": 7}, headers=keyed)
    assert r.status_code == 422 and "different body" in r.json()["message"]
    gone = {**SYNC, "Idempotency-Key": "delete-1"}
    url = f"{GEO}/speed-zones/{first['id']}"
    assert await gw.data("DELETE", url, headers=gone) == await gw.data("DELETE", url, headers=gone)
    timings = {**SYNC, "Idempotency-Key": "timings-1"}
    changed = {**body("rent-timings"), "trip_max_pause": 60}
    assert await gw.data("PUT", f"{NET}/rent-timings", json=changed, headers=timings) == {
        "version": 4,
        "warnings": [],
    }
    await gw.data("PUT", f"{NET}/rent-timings", json=changed, headers=timings)
    assert gw.version == 4 and gw.announced() == [1, 2, 3, 4]


# --- forms ----------------------------------------------------------------------------------
async def test_flat_bodies_may_be_forms(gw: Gateway) -> None:
    settings = {**body("rent-settings"), "max_simultaneous_rented_vehicle": 3}
    form = urlencode({k: str(v).lower() for k, v in settings.items()})
    await gw.data("PUT", f"{NET}/rent-settings", content=form, headers=FORM)
    assert assert_saved(gw, 2)["rent_settings"] == settings  # typed as the JSON body is
    speeds = "default_low_speed=8&default_medium_speed=15&default_high_speed=25"
    speeds += "&min_battery_to_slow_down=&battery_slow_down_speed=12"  # empty: null
    await gw.data("PUT", f"{NET}/vehicle-speed-settings", content=speeds, headers=FORM)
    saved = assert_saved(gw, 3)["vehicle_speed_settings"]
    assert saved["min_battery_to_slow_down"] is None and saved["battery_slow_down_speed"] == 12
    form = urlencode({**body("border-settings"), "notify_user": "false"}).replace("True", "true")
    await gw.data("PUT", f"{GEO}/border/settings", content=form, headers=FORM)
    assert assert_saved(gw, 4)["border"]["settings"]["notify_user"] is False
    await gw.data(
        "PUT", f"{NET}/vehicle-settings/1", content="auto_light=false&speed_mode=1", headers=FORM
    )
    assert assert_saved(gw, 5)["vehicle_settings"] == [
        {"model_id": 1, "auto_light": False, "speed_mode": 1}
    ]


@pytest.mark.parametrize(
    ("content", "loc", "msg"),
    [
        ("auto_light=true&speed_mode=%2B1", ["body", "speed_mode"], "must be 1, 2 or 3"),
        ("auto_light=yes&speed_mode=1", ["body", "auto_light"], "must be true or false"),
        (
            "auto_light=true&speed_mode=1&speed_mode=2",
            ["body", "speed_mode"],
            "given more than once",
        ),
        ("auto_light=true&colour=red&speed_mode=1", ["body", "colour"], "not a known field"),
        ("auto_light", ["body"], "not a form of at most 100 UTF-8 name=value fields"),
    ],
)
async def test_a_form_is_read_as_strictly_as_json(
    gw: Gateway, content: str, loc: list[str], msg: str
) -> None:
    r = await gw.client.put(f"{NET}/vehicle-settings/1", content=content, headers=FORM)
    assert r.status_code == 422
    assert r.json()["problems"] == [{"loc": loc, "msg": msg}]
    assert gw.version == 1


async def test_a_form_is_bounded_like_any_body(tmp_path: Path) -> None:
    async for gw in _gateway(tmp_path, ApiLimits(body_bytes=1024)):
        await gw.data(
            "POST", "/api/v1/config/bundles", json={"version": 1, "bundle": seed_bundle()}
        )
        padded = "auto_light=true&speed_mode=1&" + "x" * 2000 + "=1"
        r = await gw.client.put(f"{NET}/vehicle-settings/1", content=padded, headers=FORM)
        assert r.status_code == 413 and gw.version == 1
        r = await gw.client.put(
            f"{NET}/vehicle-settings/1",
            content=b"auto_light=true&speed_mode=1",
            headers={**SYNC, "content-type": "multipart/form-data; boundary=x"},
        )
        assert r.status_code == 422 and "multipart" in r.json()["problems"][0]["msg"]


async def test_a_gbfs_bundle_is_kept_under_the_dashboards_changes(bare: Gateway) -> None:
    gbfs = json.loads((ROOT / "config" / "rules" / "gbfs-3.0-geofencing_zones.json").read_text())
    push = {"version": 1, "kind": "gbfs", "bundle": gbfs}
    await bare.data("POST", "/api/v1/config/bundles", json=push)
    await bare.data("POST", f"{GEO}/speed-zones", json=body("speed-zone-create"))
    saved = bare.store.bundles.current()
    assert saved is not None and (saved.version, saved.kind) == (2, "dashboard")
    assert saved.body["gbfs"] == gbfs and saved.body["network_id"] == 1
    loaded = load_bundle(saved.body)
    assert loaded.gbfs is not None and len(loaded.gbfs.zones) == 3
    assert len(loaded.config.speed_zones) == 1
