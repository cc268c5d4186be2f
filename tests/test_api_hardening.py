"""The API against hostile clients, over real HTTP (uvicorn on loopback, configured as the daemon
configures it): the token before the body, body size and nesting limits, slow heads and bodies,
the connection cap, ASCII-only ids, a read token that changes nothing, a status page that needs
a token.

Clients here are synchronous httpx: when a server answers early and closes, httpx's sync
transport still reads the answer, where its asyncio transport reports the reset instead.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from dockgate.api import ApiLimits, create_app, server_config
from dockgate.api.ports import SunPlayVerifier
from dockgate.api.status import status_router
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier
from dockgate.sim.sdm import SdmTag
from dockgate.sim.services import free_port, wait_for_port
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.fleet import seed_fleet
from tests.support.stores import database_target, open_test_store

pytestmark = pytest.mark.timeout(120)
SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
JSON = {"content-type": "application/json"}
META_KEY, FILE_KEY = bytes(range(16)), bytes(range(16, 32))
MIB = 1024 * 1024


@contextlib.contextmanager
def serving(tmp_path: Path, **options: Any) -> Iterator[tuple[httpx.Client, Store]]:
    """The app under uvicorn (``server_config``: the daemon's limits) in a thread."""
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    app = create_app(
        store, Outbox(store.db), tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]}, **options
    )
    port = free_port()
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, store
    finally:
        server.should_exit = True
        thread.join(10)


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A streamed body (httpx sends it chunked unless a Content-Length is given)."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"0" * piece


def nested(depth: int) -> bytes:
    return b'{"version": 7, "bundle": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    assert body["code"] == status and body["message"]
    return body


# -- the token before the body ----------------------------------------------------------------

_SERVER = r"""
import sys, uvicorn
from dockgate.api import create_app, server_config
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
store = Store.open(sys.argv[1])
app = create_app(store, Outbox(store.db), tokens={sys.argv[3]: ["sync"]})
config = server_config(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
uvicorn.Server(config).run()
"""


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found[1])


def test_anonymous_100mb_posts_are_refused_401_unread(tmp_path: Path) -> None:
    """Four anonymous 100 MiB uploads at once (two with a Content-Length, two chunked): each is
    answered 401 from its head, the server's peak memory stays put and each client got only
    what socket buffers hold onto the wire. Reading the bodies first took 128 -> 914 MB."""
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    target = database_target(tmp_path / "api.db")
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, target, str(port), SYNC_TOKEN],
        cwd=root,
    )
    try:
        wait_for_port("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/api/v1/config/bundles"
        assert httpx.get(url.replace("/api/v1/config/bundles", "/health")).status_code == 200
        before = peak_rss_kib(server.pid)
        sent = [0, 0, 0, 0]

        def upload(n: int) -> int:
            def body() -> Iterator[bytes]:
                for piece in chunks(100 * MIB, MIB):
                    sent[n] += len(piece)
                    yield piece

            length = {"content-length": str(100 * MIB)} if n % 2 == 0 else {}
            with httpx.Client(timeout=60) as client:
                return client.post(url, content=body(), headers={**JSON, **length}).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(upload, range(4)))
        grown_kib = peak_rss_kib(server.pid) - before
    finally:
        server.terminate()
        server.wait(10)
    print(f"server peak RSS grew {grown_kib} KiB; clients pushed {[s // MIB for s in sent]} MiB")
    assert statuses == [401, 401, 401, 401]
    assert grown_kib < 32 * 1024
    assert max(sent) < 32 * MIB, sent


def test_token_then_scope_then_size_then_parse(tmp_path: Path) -> None:
    broken = b'{"name": '
    with serving(tmp_path) as (client, _):
        assert_envelope(client.post("/api/v1/products", content=broken, headers=JSON), 401)
        r = client.post("/api/v1/products", content=broken, headers={**JSON, **READ})
        assert_envelope(r, 403)
        big = b'{"name": "' + b"x" * (70 * 1024) + b'"}'
        r = client.post("/api/v1/products", content=big, headers={**JSON, **SYNC})
        assert "65536 bytes" in assert_envelope(r, 413)["message"]
        r = client.post("/api/v1/products", content=broken, headers={**JSON, **SYNC})
        assert_envelope(r, 422)
        r = client.post("/api/v1/products", json={"name": "card"}, headers=SYNC)
        assert r.status_code == 200 and r.json()["data"]["name"] == "card"
        no_token = client.post("/api/v1/events/ack", json={"cursor": 0})
        assert no_token.headers["www-authenticate"].startswith("Bearer")


def test_oversize_bodies_are_413_declared_or_streamed(tmp_path: Path) -> None:
    with serving(tmp_path, limits=ApiLimits(body_bytes=64 * 1024, large_body_bytes=2 * MIB)) as (
        client,
        store,
    ):
        streamed = client.post("/api/v1/products", content=chunks(200 * 1024), headers=SYNC)
        assert_envelope(streamed, 413)
        small = client.post(
            "/api/v1/products",
            content=iter([b'{"name": ', b'"chunked"}']),
            headers={**JSON, **SYNC},
        )
        assert small.status_code == 200, small.text
        # the bundle route takes the large limit: 1 MiB passes the guard, 3 MiB does not
        padding = "p" * MIB
        r = client.post(
            "/api/v1/config/bundles", json={"version": 3, "bundle": {"pad": padding}}, headers=SYNC
        )
        assert r.status_code not in (413, 500) and r.status_code < 500, r.text[:300]
        r = client.post("/api/v1/config/bundles", content=chunks(3 * MIB), headers=SYNC)
        assert_envelope(r, 413)
        assert [p.name for p in store.products.all()] == ["chunked"]


def test_deep_nesting_is_refused_before_parsing_and_hashing(tmp_path: Path) -> None:
    headers = {**JSON, **SYNC, "Idempotency-Key": "deep-1"}
    with serving(tmp_path) as (client, _):
        for depth in (65, 300, 5000):
            r = client.post("/api/v1/config/bundles", content=nested(depth), headers=headers)
            body = assert_envelope(r, 422)
            assert "deeper than 64" in body["message"] and body["problems"][0]["loc"] == ["body"]
        # within the bound the request reaches the route (the validator judges the bundle)
        r = client.post("/api/v1/config/bundles", content=nested(60), headers=headers)
        assert r.status_code < 500 and "deeper" not in r.text
        # brackets inside strings are not nesting
        r = client.post(
            "/api/v1/products", json={"name": "[" * 150}, headers={**SYNC, "Idempotency-Key": "s"}
        )
        assert r.status_code == 200, r.text


def test_a_bundle_that_could_never_be_served_again_is_refused(tmp_path: Path) -> None:
    """JSON may spell a lone surrogate (``\\ud800``); stored, it made every later read of the
    bundle a 500. It is refused on the way in, with or without an Idempotency-Key."""
    demo = (Path(__file__).resolve().parent.parent / "config/rules/demo-milano.json").read_text()
    poisoned = re.sub(r'"name": "[^"]*"', r'"name": "\\ud800"', demo, count=1)
    assert poisoned != demo
    with serving(tmp_path) as (client, _):
        for extra in ({}, {"Idempotency-Key": "poison"}):
            body = b'{"version": 4, "bundle": ' + poisoned.encode() + b"}"
            r = client.post(
                "/api/v1/config/bundles", content=body, headers={**JSON, **SYNC, **extra}
            )
            assert_envelope(r, 422)
        assert client.get("/api/v1/config/bundles/current", headers=READ).status_code == 200
        body = b'{"version": 4, "bundle": ' + demo.encode() + b"}"
        r = client.post("/api/v1/config/bundles", content=body, headers={**JSON, **SYNC})
        assert r.status_code == 200, r.text[:300]


def test_slow_body_is_cut_off_408(tmp_path: Path) -> None:
    with serving(tmp_path, limits=ApiLimits(body_timeout=0.5)) as (client, _):
        port = client.base_url.port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + SYNC_TOKEN.encode() + b"\r\n"
                b'Content-Length: 100\r\n\r\n{"name":'
            )
            started = time.monotonic()
            answer = receive_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert time.monotonic() - started < 5


def receive_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while piece := sock.recv(65536):
        data += piece
    return data


def test_slow_head_is_closed(tmp_path: Path) -> None:
    with serving(tmp_path, limits=ApiLimits(header_timeout=0.5)) as (client, _):
        port = client.base_url.port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")  # and never the blank line
            started = time.monotonic()
            assert receive_all(sock) == b""
            assert 0.4 < time.monotonic() - started < 4
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
            time.sleep(0.2)
            sock.sendall(b"Connection: close\r\n\r\n")  # in time: answered
            assert receive_all(sock).startswith(b"HTTP/1.1 200 ")
        assert client.get("/health").status_code == 200


def test_connection_cap_answers_503(tmp_path: Path) -> None:
    with serving(tmp_path, limits=ApiLimits(max_connections=3)) as (client, _):
        port = client.base_url.port
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            with httpx.Client(base_url=str(client.base_url)) as other:
                assert other.get("/health").status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        with httpx.Client(base_url=str(client.base_url)) as other:
            assert other.get("/health").status_code == 200


# -- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/vehicles/١٢", "id"),
        ("/api/v1/vehicles/1_0", "id"),
        ("/api/v1/vehicles/+1", "id"),
        ("/api/v1/users/%201", "id"),
        ("/api/v1/trips?last_primary_key=1_0", "last_primary_key"),
        ("/api/v1/events?cursor=١", "cursor"),
        ("/api/v1/fleet-alerts/history?vehicle_id=1_0", "vehicle_id"),
        ("/api/v1/clusters?networks=1,١", "networks"),
        ("/api/v1/stations/100/energy-consumption?start=1_0&end=20", "start"),
    ],
)
def test_ids_are_ascii_decimal_only(tmp_path: Path, path: str, field: str) -> None:
    with serving(tmp_path) as (client, _):
        body = assert_envelope(client.get(path, headers=READ), 422)
        assert [p["loc"][-1] for p in body["problems"]] == [field]
        assert client.get("/api/v1/vehicles/12", headers=READ).status_code == 404
        assert client.get("/api/v1/vehicles/1", headers=READ).status_code == 200


def test_body_ids_and_last_event_id_are_ascii(tmp_path: Path) -> None:
    with serving(tmp_path, max_stream=0.2) as (client, _):
        r = client.post("/api/v1/products/1/pair", json={"user_id": "1_0"}, headers=SYNC)
        assert assert_envelope(r, 422)["problems"][0]["loc"] == ["body", "user_id"]
        for odd in (b"\xb2", b"\xd9\xa1", b"1_0"):  # superscript two, Arabic-Indic one
            headers = {**READ, "Last-Event-ID": odd}
            with client.stream("GET", "/api/v1/events/stream", headers=headers) as stream:
                assert stream.status_code == 200


# -- a read token changes nothing -------------------------------------------------------------


def play_of(tag: SdmTag, record_id: int) -> str:
    url = tag.next_url()
    picc = re.search(r"picc_data=([0-9A-F]{32})", url)
    cmac = re.search(r"cmac=([0-9A-F]{16})", url)
    assert picc and cmac, url
    return f"{record_id}@{picc[1]}:{cmac[1]}"


def test_read_token_play_is_dry_and_the_backend_can_still_pair(tmp_path: Path) -> None:
    settings = SunSettings(
        key_sets={
            "default": {
                "mode": "aes",
                "meta_read_key": META_KEY.hex(),
                "file_read_key": FILE_KEY.hex(),
            }
        }
    )
    replay = ReplayStore(tmp_path / "replay.db")
    verifier = SunPlayVerifier(SunVerifier(settings, replay))
    uid = bytes.fromhex("04A1B2C3D4E5F6")
    tag = SdmTag(uid=uid, meta_read_key=META_KEY, file_read_key=FILE_KEY)
    with serving(tmp_path, play_verifier=verifier) as (client, store):
        record = store.records.create(store.products.create("card"), token_encryption="aes-128")
        scan = play_of(tag, record)
        for _ in range(2):  # a technician may look twice: nothing is used up
            r = client.get(f"/api/v1/play/{scan}", headers=READ)
            data = assert_envelope_ok(r)
            assert data["dry_run"] is True and data["scan_count"] == 0 and data["read_ctr"] == 1
        assert store.records.get(record).scan_count == 0
        assert replay.last(uid) is None
        paired = client.post(
            "/api/v1/products/pair-dynamic", json={"user_id": 1, "play": scan}, headers=SYNC
        )
        assert paired.status_code == 200, paired.text
        assert store.records.get(record).scan_count == 1 and replay.last(uid) == 1
        again = client.get(f"/api/v1/play/{scan}", headers=READ)  # the dry check sees the replay
        assert "replayed" in assert_envelope(again, 403)["message"]
        assert store.records.get(record).scan_count == 1
        later = assert_envelope_ok(client.get(f"/api/v1/play/{play_of(tag, record)}", headers=READ))
        assert later["dry_run"] is True and later["scan_count"] == 1 and later["rider"]["id"] == 1
        used = assert_envelope_ok(client.get(f"/api/v1/play/{play_of(tag, record)}", headers=SYNC))
        assert used["dry_run"] is False and used["scan_count"] == 2 and replay.last(uid) == 3
    replay.close()


def assert_envelope_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    data: dict[str, Any] = response.json()["data"]
    return data


# -- the status page ------------------------------------------------------------------------------


async def site_snapshot() -> dict[str, Any]:
    vehicles = [
        {
            "id": "SXB00001",
            "lat": 45.46,
            "lon": 9.19,
            "battery": 80,
            "locked": True,
            "trip_id": None,
        },
        {
            "id": "SXB00002",
            "lat": 45.47,
            "lon": 9.18,
            "battery": 55,
            "locked": False,
            "trip_id": 42,
        },
    ]
    return {
        "site": {"name": "Test site", "bundle_version": "v1"},
        "map": {"border": [], "speed_zones": [], "parkings": [], "stations": []},
        "vehicles": vehicles,
        "alerts": [{"type": "vehicle-fallen", "severity": "high", "vehicle_id": "SXB00002"}],
        "readers": [{"reader": "r1", "state": "up"}],
        "taps": [{"at": 1.0, "reader": "r1", "uid": "04de5f1eacc040", "valid": True}],
        "parts": [],
    }


def test_status_page_and_snapshot_need_a_token(tmp_path: Path) -> None:
    with serving(tmp_path, extra_routers=[status_router(site_snapshot)]) as (client, _):
        assert_envelope(client.get("/status/snapshot"), 401)
        assert_envelope(client.get("/status"), 401)
        assert_envelope(client.get("/status/snapshot", params={"private_token": "x" * 20}), 401)
        full = client.get("/status/snapshot", headers=READ)
        assert full.status_code == 200 and "SXB00002" in full.text and "04de5f" in full.text
        page = client.get("/status", params={"private_token": READ_TOKEN})
        assert page.status_code == 200 and "<svg" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        public = client.get("/status/public/snapshot")
        assert public.status_code == 200
        text = public.text
        assert "SXB0000" not in text and "04de5f" not in text and "trip_id" not in text
        assert [v["lat"] for v in public.json()["vehicles"]] == [45.46]  # the riding one is hidden
        assert client.get("/status/public").status_code == 200
