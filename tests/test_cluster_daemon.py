"""Two daemons of one site in one process, on a real PostgreSQL and a real Mosquitto: one
leads and alone holds the site's MQTT session, the standby serves reads and sends writes to
it; a lost lease stops the leader's session at once, and the broker keeps what arrives
meanwhile for whichever node leads next (the same client id, a persistent session)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockgate.gateway.daemon.app import Daemon
from dockgate.gateway.daemon.settings import ConfigError, load_settings
from dockgate.gateway.protocol import Channel, DeviceRef
from dockgate.gateway.store import open_database
from dockgate.sim.services import free_port
from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.mqtt import ScriptedDevice, telemetry
from tests.support.stores import database_target

pytestmark = pytest.mark.engines("postgresql")
TOKEN = "cluster-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LEASE = 1.0


def config(tmp_path: Path, node: str, *, url: str, broker: int, port: int) -> Path:
    path = tmp_path / f"{node}.toml"
    kek = f'[secrets]\nkek_file = "{tmp_path / "kek"}"\n'
    path.write_text(
        f"""
[site]
name = "Cluster site"
data_dir = "state-{node}"

[mqtt]
port = {broker}
client_id = "dockgate-site-1"

[api]
port = {port}
tokens = [{{ name = "backend", token = "{TOKEN}", scopes = ["sync"] }}]

[store]
url = "{url}"

[cluster]
enabled = true
node_id = "{node}"
lease_seconds = {LEASE}
renew_seconds = 0.25
advertise_url = "http://127.0.0.1:{port}"

[[stations]]
id = 1
device_id = "ST001"
lat = 45.4642
lon = 9.19
spots = 2

{kek}"""
    )
    return path


class Node:
    def __init__(self, daemon: Daemon, port: int) -> None:
        self.daemon = daemon
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.daemon.run())

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.daemon.stop()
            await asyncio.wait_for(self.task, 30)

    @property
    def leads(self) -> bool:
        return self.daemon.cluster.status().leading

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, headers=AUTH) as client:
            return await client.get(path)


@pytest.fixture
async def nodes(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Node, Node]]:
    (tmp_path / "kek").write_text("00" * 32)
    (tmp_path / "kek").chmod(0o600)
    url = database_target(tmp_path / "site.db")
    made: list[Node] = []
    try:
        for name in ("node-a", "node-b"):
            port = free_port()
            path = config(tmp_path, name, url=url, broker=mosquitto.port, port=port)
            made.append(Node(Daemon(load_settings(path)), port))
        yield made[0], made[1]
    finally:
        for node in made:
            await node.stop()
            node.daemon.close()


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def vehicle(node: Node, serial: str) -> dict[str, Any] | None:
    vehicles = (await node.get("/api/v1/vehicles")).json()["data"]
    return next((v for v in vehicles if v.get("serial_number") == serial), None)


def report(device: ScriptedDevice) -> None:
    """One telemetry report (battery 50), QoS 1, on the broker before this returns."""
    device.publish(Channel.TELEMETRY, telemetry(device.device.device_id)).wait_for_publish(5)


async def test_one_node_leads_with_the_site_session_the_other_stands_by_warm(
    nodes: tuple[Node, Node], scripted_device: Callable[..., ScriptedDevice]
) -> None:
    a, b = nodes
    a.start()
    await until(lambda: a.leads and a.daemon.mqtt.connected)
    b.start()
    await until(lambda: b.daemon.cluster.status().leader is not None)
    await until(lambda: b.daemon.api_port is not None)

    health = (await b.get("/health")).json()["data"]
    assert health["status"] == "ok", health["problems"]
    assert health["cluster"]["role"] == "standby" and health["cluster"]["token"] is None
    assert health["cluster"]["leader"] == {"node_id": "node-a", "url": a.url}
    assert not b.daemon.mqtt.connected  # no session with the site's client id
    assert (await a.get("/health")).json()["data"]["cluster"]["token"] == 1
    assert (await a.get("/health/leader")).status_code == 200
    assert (await b.get("/health/leader")).status_code == 503

    async with httpx.AsyncClient(base_url=b.url, headers=AUTH) as client:
        body = {"alert_ids": [1]}
        refused = await client.post("/api/v1/fleet-alerts/resolve?language=en", json=body)
        assert refused.status_code == 307
        assert refused.headers["location"] == f"{a.url}/api/v1/fleet-alerts/resolve?language=en"

    report(scripted_device(DeviceRef.vehicle(1, "SXB00001")))
    found = await until_vehicle(b, "SXB00001")  # the standby reads what the leader wrote
    assert found["battery"] == 50


async def until_vehicle(node: Node, serial: str, battery: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = await vehicle(node, serial)
        if found is not None and (battery is None or found["battery"] == battery):
            return found
        assert time.monotonic() < deadline, f"{serial} not seen by {node.url}"
        await asyncio.sleep(0.1)


async def test_a_lost_lease_stops_the_session_and_the_broker_keeps_messages_for_the_next(
    nodes: tuple[Node, Node], scripted_device: Callable[..., ScriptedDevice], tmp_path: Path
) -> None:
    a, b = nodes
    a.start()
    await until(lambda: a.leads and a.daemon.mqtt.connected)
    b.start()
    await until(lambda: b.daemon.cluster.status().leader is not None)

    thief = open_database(database_target(tmp_path / "site.db"))
    thief.conn.execute(
        "UPDATE cluster_lease SET holder = 'ghost', token = token + 1,"
        f" expires_at = EXTRACT(EPOCH FROM clock_timestamp()) + {2 * LEASE}"
    )
    thief.close()
    await until(lambda: not a.leads, 2)
    await until(lambda: not a.daemon.mqtt.connected, 2)  # the session stops at once
    status = a.daemon.cluster.status()
    assert status.role == "standby" and status.transitions == {"leader": 1, "standby": 1}

    report(scripted_device(DeviceRef.vehicle(1, "SXB00002")))  # kept for the site's session
    await asyncio.sleep(0.3)
    assert not a.leads and not b.leads  # nobody has the session
    leader = await until(lambda: a if a.leads else b if b.leads else None, 3 * LEASE)
    assert leader.daemon.cluster.status().token == 3  # 1, the ghost's 2, then 3
    assert (await until_vehicle(a, "SXB00002"))["battery"] == 50

    await leader.stop()  # a clean stop gives the lease up: the other leads at once
    other = b if leader is a else a
    started = time.monotonic()
    await until(lambda: other.leads and other.daemon.mqtt.connected, 3)
    assert time.monotonic() - started < LEASE
    assert other.daemon.cluster.status().token == 4


@pytest.mark.engines("sqlite")  # settings only: no database is opened
def test_a_cluster_needs_postgresql_and_a_node_id(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[cluster]\nenabled = true\nnode_id = "a"\n')
    with pytest.raises(ConfigError, match="postgresql \\[store\\] url"):
        load_settings(path)
    store = '[store]\nurl = "postgresql://u@127.0.0.1:1/d"\n'
    path.write_text(store + "[cluster]\nenabled = true\n")
    with pytest.raises(ConfigError, match="needs its node_id"):
        load_settings(path)
    path.write_text(store + '[cluster]\nnode_id = "a"\nlease_seconds = 2.0\nrenew_seconds = 1.0\n')
    with pytest.raises(ConfigError, match="renew_seconds must be below half"):
        load_settings(path)
    path.write_text(store + '[cluster]\nnode_id = "a b"\n')
    with pytest.raises(ConfigError, match=r"cluster\.node_id"):
        load_settings(path)
