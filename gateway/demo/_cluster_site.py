"""``dockgate demo --cluster``: a site of two nodes on PostgreSQL, started and stopped in order.

Order: PostgreSQL (its own cluster in a temporary directory, on a free loopback port; as the
``postgres`` user when the demo runs as root, as the current user otherwise), Mosquitto
(with persistence), ``node-a`` (it makes the schema and takes the lead), ``node-b`` (a warm
standby), the backend, the simulated fleet (scooters first), the station-side readers that
publish taps on the broker, then the riders, seeded through the API. Only what was started is
stopped, the last started first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockgate.gateway.demo._check import StepFailed
from dockgate.gateway.demo._cluster_backend import ClusterBackendClient
from dockgate.gateway.demo._cluster_nodes import READERS, NodeProcess, SiteShared
from dockgate.gateway.demo._site import seed_riders
from dockgate.gateway.demo._world import STATIONS, Secrets, site
from dockgate.sim.device_base import Broker
from dockgate.sim.ntag424 import Ntag424Tag
from dockgate.sim.reader import SimReaderController
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.postgres import PostgresServer
from dockgate.sim.services.process import free_port
from dockgate.sim.simclock import ScaledClock
from dockgate.sim.station import StationSim

NODE_IDS = ("node-a", "node-b")


@dataclass
class ClusterDemoSite:
    """The running cluster demo: services, nodes, the backend, the simulated street."""

    speed: float
    data_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockgate-demo-cluster-"))
    )
    keys: Secrets = field(default_factory=Secrets)
    postgres: PostgresServer | None = None
    broker: Mosquitto | None = None
    nodes: list[NodeProcess] = field(default_factory=list)
    backend: ClusterBackendClient | None = None
    stations: dict[str, StationSim] = field(default_factory=dict)
    scooters: dict[str, ScooterSim] = field(default_factory=dict)
    readers: dict[str, SimReaderController] = field(default_factory=dict)
    tags: dict[str, Ntag424Tag] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=2.0))

    @property
    def token_path(self) -> Path:
        return self.data_dir / "api-tokens"

    def node(self, node_id: str) -> NodeProcess:
        return next(n for n in self.nodes if n.node_id == node_id)

    def urls(self) -> list[str]:
        """The API of every node that runs (the backend tries them in this order)."""
        return [n.url for n in self.nodes if n.alive] or [n.url for n in self.nodes]

    # -- leadership ----------------------------------------------------------------------------
    async def leader(self) -> NodeProcess | None:
        found = [n for n in self.nodes if await n.leads(self.http)]
        if len(found) > 1:
            raise StepFailed(f"two nodes lead at once: {[n.node_id for n in found]}")
        return found[0] if found else None

    async def wait_leader(
        self, timeout: float, other_than: NodeProcess | None = None
    ) -> tuple[NodeProcess, float]:
        """The leader once one leads (not ``other_than``), and when it was seen (wall clock)."""
        deadline = time.monotonic() + timeout
        while True:
            leader = await self.leader()
            if leader is not None and leader is not other_than:
                return leader, time.time()
            for node in self.nodes:
                if node is not other_than and node.starts and not node.alive:
                    raise StepFailed(node.exit_note())
            if time.monotonic() > deadline:
                raise StepFailed(f"no node took the lead within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def node_rows(self) -> list[dict[str, Any]]:
        """Each node as the live table shows it."""
        rows = []
        for node in self.nodes:
            state = await node.cluster_state(self.http)
            rows.append(
                {"node": node.node_id, "url": node.url, "alive": node.alive, **(state or {})}
            )
        return rows

    # -- start ----------------------------------------------------------------------------------
    async def start(self, progress: Callable[[str], None]) -> None:
        progress("starting PostgreSQL (initdb, pg_ctl) and Mosquitto")
        self.postgres = PostgresServer(durable=False)
        await asyncio.to_thread(self.postgres.start)
        url = self.postgres.url(await asyncio.to_thread(self.postgres.create_database, "demo"))
        self.broker = Mosquitto(persistence=True)
        await asyncio.to_thread(self.broker.start)
        shared = SiteShared(
            store_url=url,
            broker_port=self.broker.port,
            client_id=f"dockgate-demo-site-{secrets.token_hex(3)}",
            kek_file=self._write_kek(),
            keys=self.keys,
        )
        self.keys.write_token_file(self.token_path)
        self.nodes = [
            NodeProcess(nid, self.data_dir / nid, free_port(), shared) for nid in NODE_IDS
        ]
        progress("starting node-a (it takes the lead), then node-b (a warm standby)")
        self.nodes[0].start()
        await self.wait_leader(60)
        self.nodes[1].start()
        await until_async(self._standby_warm, "node-b standing by", 60)
        self.backend = ClusterBackendClient(self.urls, self.keys.sync_token)
        self.backend.start()
        progress("starting the simulated fleet and the station readers")
        await self._start_fleet()
        progress("seeding riders, a card and a ring through the API")
        await self._seed_riders()

    def _write_kek(self) -> Path:
        """The site's key-encryption key: every node opens the stored keys with it."""
        path = self.data_dir / "site-kek"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        return path

    async def _standby_warm(self) -> bool:
        state = await self.nodes[1].cluster_state(self.http)
        if not self.nodes[1].alive:
            raise StepFailed(self.nodes[1].exit_note())
        return state is not None and state.get("role") == "standby"

    async def _api_vehicles(self) -> list[dict[str, Any]]:
        assert self.backend is not None
        with contextlib.suppress(httpx.HTTPError):
            vehicles: list[dict[str, Any]] = await self.backend.get(
                "/api/v1/vehicles", page_size=100
            )
            return vehicles
        return []

    async def _start_fleet(self) -> None:
        assert self.broker is not None
        clock = ScaledClock(self.speed)
        broker = Broker(self.broker.host, self.broker.port)
        for spec in STATIONS:
            for serial, battery in spec.docked.values():
                sim = ScooterSim(serial, broker, clock=clock, start=site(spec), battery=battery)
                await sim.start()
                self.scooters[serial] = sim
        await until_async(
            lambda: self._known(set(self.scooters)), "every scooter known to the site", 20
        )
        for spec in STATIONS:
            st = StationSim(spec.device_id, broker, spots=spec.spots, clock=clock, site=site(spec))
            await st.start()
            self.stations[spec.device_id] = st
            for number, (serial, _battery) in spec.docked.items():
                st.dock(number, serial)
        docked = sum(len(s.docked) for s in STATIONS)
        await until_async(lambda: self._docked(docked), "every scooter docked", 20)
        for reader_id in READERS:
            reader = SimReaderController(reader_id, broker)
            await reader.start()
            self.readers[reader_id] = reader

    async def _known(self, serials: set[str]) -> bool:
        return {v["serial_number"] for v in await self._api_vehicles()} >= serials

    async def _docked(self, count: int) -> bool:
        return sum(1 for v in await self._api_vehicles() if v.get("spot_id")) >= count

    async def _seed_riders(self) -> None:
        assert self.backend is not None
        await seed_riders(self.backend, self.keys, self.tags)

    # -- stop -----------------------------------------------------------------------------------
    async def stop(self, *, keep_files: bool = False) -> None:
        """Stop everything this run started, the last started first."""
        for reader in self.readers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.stop(), 5)
        for sim in [*self.stations.values(), *self.scooters.values()]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sim.stop(), 5)
        if self.backend is not None:
            await self.backend.aclose()
        for node in reversed(self.nodes):
            await asyncio.to_thread(node.stop)
        await self.http.aclose()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.cleanup)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.cleanup)
        if not keep_files:
            shutil.rmtree(self.data_dir, ignore_errors=True)


async def until_async(
    check: Callable[[], Awaitable[object]], what: str, timeout: float = 10.0
) -> object:
    """Like :func:`dockgate.gateway.demo._check.until`, for a check that is a coroutine."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not seen within {timeout:.0f} s")
        await asyncio.sleep(0.1)
