"""The API of a cluster's node: reads everywhere, writes only on the leader (a standby answers
307 to the leader or 503 while none is known), ``/health/leader`` for a load balancer, the
``dockgate_cluster_*`` metrics, and a write whose leader lost its lease mid-way (503)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from dockgate.api import create_app
from dockgate.api.cluster import ClusterCollector
from dockgate.api.metrics import GatewayMetrics
from dockgate.gateway.cluster import ClusterStatus, Fence, LeaderInfo
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
from tests.support.api import READ_TOKEN, SYNC_TOKEN, AckingSender
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
LEADER = ClusterStatus(
    True, "node-a", "leader", 7, 0.4, LeaderInfo("node-a", "http://10.0.0.1:8081"),
    {"leader": 2, "standby": 1},
)  # fmt: skip
STANDBY = ClusterStatus(
    True, "node-b", "standby", None, 0.6, LeaderInfo("node-a", "http://10.0.0.1:8081/"),
    {"leader": 1, "standby": 1},
)  # fmt: skip
ORPHAN = ClusterStatus(True, "node-b", "standby", None, None, None, {"leader": 1, "standby": 1})


@dataclass
class Node:
    """One node's API; ``status`` is its view of the leadership (the elector's, in the daemon)."""

    store: Store
    client: httpx.AsyncClient
    metrics: GatewayMetrics
    status: ClusterStatus = LEADER


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    outbox = Outbox(store.db)
    metrics = GatewayMetrics(outbox)
    holder: list[Node] = []
    app = create_app(
        store,
        outbox,
        tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]},
        command_sender=AckingSender(),
        metrics=metrics,
        cluster=lambda: holder[0].status,
    )
    metrics.registry.register(ClusterCollector(lambda: holder[0].status))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        holder.append(Node(store, client, metrics))
        yield holder[0]


async def test_a_standby_sends_writes_to_the_leader_with_path_and_query(node: Node) -> None:
    node.status = STANDBY
    r = await node.client.post(
        "/api/v1/users/1/block?language=en", json={"reason": "fraud"}, headers=SYNC
    )
    assert r.status_code == 307
    assert r.headers["location"] == "http://10.0.0.1:8081/api/v1/users/1/block?language=en"
    assert r.json()["code"] == 307 and "node-a" in r.json()["message"]
    assert not node.store.riders.get(1).blocked  # nothing written here
    for method in ("PUT", "PATCH", "DELETE"):
        r = await node.client.request(method, "/api/v1/users/1", headers=SYNC)
        assert r.status_code == 307, method


async def test_a_standby_without_a_known_leader_asks_to_retry(node: Node) -> None:
    node.status = ORPHAN
    r = await node.client.post("/api/v1/users/1/block", json={"reason": "fraud"}, headers=SYNC)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    body = r.json()
    assert body["code"] == 503 and "no leader is known" in body["message"]
    assert "location" not in r.headers


async def test_a_standby_checks_the_token_first_and_serves_reads(node: Node) -> None:
    node.status = STANDBY
    r = await node.client.post("/api/v1/users/1/block", json={"reason": "fraud"})
    assert r.status_code == 401 and "location" not in r.headers  # no leader for anonymous
    r = await node.client.post("/api/v1/users/1/block", json={"reason": "x"}, headers=READ)
    assert r.status_code == 403
    r = await node.client.get("/api/v1/users/1/blocked", headers=READ)
    assert r.status_code == 200 and r.json()["data"]["blocked"] is False
    assert (await node.client.get("/api/v1/vehicles", headers=READ)).status_code == 200


async def test_the_leader_takes_writes(node: Node) -> None:
    r = await node.client.post("/api/v1/users/1/block", json={"reason": "fraud"}, headers=SYNC)
    assert r.status_code == 200
    assert node.store.riders.get(1).blocked


async def test_health_leader_answers_for_a_load_balancer(node: Node) -> None:
    r = await node.client.get("/health/leader")
    assert (r.status_code, r.json()) == (200, {"leader": True, "node_id": "node-a"})
    node.status = STANDBY
    r = await node.client.get("/health/leader")
    assert r.status_code == 503
    assert r.json() == {
        "leader": False,
        "node_id": "node-b",
        "current_leader": {"node_id": "node-a", "url": "http://10.0.0.1:8081/"},
    }


async def test_a_gateway_alone_always_leads(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "alone.db")
    seed_fleet(store)
    app = create_app(store, Outbox(store.db), tokens={SYNC_TOKEN: ["sync"]})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        r = await client.get("/health/leader")
        assert (r.status_code, r.json()) == (200, {"leader": True, "node_id": None})
        r = await client.post("/api/v1/users/1/block", json={"reason": "fraud"}, headers=SYNC)
        assert r.status_code == 200


async def test_cluster_metrics(node: Node) -> None:
    text = generate_latest(node.metrics.registry).decode()
    assert "dockgate_cluster_leader 1.0" in text
    assert "dockgate_cluster_token 7.0" in text
    assert "dockgate_cluster_lease_age_seconds 0.4" in text
    assert 'dockgate_cluster_transitions_total{to="leader"} 2.0' in text
    assert 'dockgate_cluster_transitions_total{to="standby"} 1.0' in text
    node.status = ORPHAN
    text = (await node.client.get("/metrics")).text
    assert "dockgate_cluster_leader 0.0" in text and "dockgate_cluster_token 0.0" in text
    assert "dockgate_cluster_lease_age_seconds NaN" in text


async def test_a_write_whose_leader_lost_the_lease_meanwhile_is_refused_whole(
    node: Node,
) -> None:
    """The node still says it leads (its elector has not noticed), but the fence refuses the
    write's transaction: nothing is kept and the client is asked to send it again."""
    node.store.db.guard = Fence("network-1", "node-a", lease_seconds=3.0)  # not armed
    r = await node.client.post("/api/v1/users/1/block", json={"reason": "fraud"}, headers=SYNC)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["code"] == 503 and "lost the site's lease" in r.json()["message"]
    node.store.db.guard = None
    assert not node.store.riders.get(1).blocked
