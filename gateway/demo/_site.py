"""Starts and stops everything the demo needs, in order, and undoes only what it started.

Order: Mosquitto and pcscd (external programs), the daemon in this event loop, the backend
client, then the simulated fleet (scooters first, so the daemon knows each vehicle before a
station reports it docked), then the riders and their tags, seeded through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dockgate.gateway.daemon.app import Daemon
from dockgate.gateway.daemon.logs import JsonFormatter
from dockgate.gateway.demo._backend import BackendClient
from dockgate.gateway.demo._check import StepFailed, until
from dockgate.gateway.demo._world import STATIONS, Secrets, daemon_settings, site
from dockgate.sim.device_base import Broker
from dockgate.sim.ntag424 import Ntag424Tag, card, ring
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.pcscd import PcscdService, ensure_pcscd
from dockgate.sim.simclock import ScaledClock
from dockgate.sim.station import StationSim

log = logging.getLogger("dockgate.demo")

CARD_RIDER, RING_RIDER = 101, 102
RING_RECORD = 1044  # the ring's record id, inside its SUN URL (senzu-play profile)


def new_uid() -> bytes:
    """A 7-byte NXP UID (manufacturer byte 04) drawn for this run."""
    return b"\x04" + secrets.token_bytes(6)


@dataclass
class DemoSite:
    """The running demo: services, the daemon, the backend, the simulated street."""

    speed: float
    break_step: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockgate-demo-")))
    keys: Secrets = field(default_factory=Secrets)
    broker: Mosquitto | None = None
    pcscd: PcscdService | None = None
    daemon: Daemon | None = None
    backend: BackendClient | None = None
    stations: dict[str, StationSim] = field(default_factory=dict)
    scooters: dict[str, ScooterSim] = field(default_factory=dict)
    tags: dict[str, Ntag424Tag] = field(default_factory=dict)
    _daemon_task: asyncio.Task[None] | None = None
    _log_handler: logging.Handler | None = None

    @property
    def api_url(self) -> str:
        assert self.daemon is not None and self.daemon.api_port is not None
        return f"http://127.0.0.1:{self.daemon.api_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "dockgate.log"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "api-tokens"

    def vpcd_port(self, reader_index: int) -> int:
        assert self.pcscd is not None
        return self.pcscd.port_of(self.pcscd.readers[reader_index])

    # -- start ----------------------------------------------------------------------------------
    async def start(self, progress: Callable[[str], None]) -> None:
        self._log_to_file()
        progress("starting Mosquitto and pcscd (virtual readers)")
        self.broker = Mosquitto(persistence=False)
        await asyncio.to_thread(self.broker.start)
        self.pcscd = await asyncio.to_thread(ensure_pcscd)
        progress("starting the gateway daemon")
        settings = daemon_settings(
            data_dir=self.data_dir,
            broker_port=self.broker.port,
            pcsc_readers=self.pcscd.readers,
            keys=self.keys,
        )
        self.keys.write_token_file(self.token_path)
        self.daemon = Daemon(settings)
        self._daemon_task = asyncio.create_task(self.daemon.run(), name="demo-daemon")
        await until(lambda: self._daemon_up(), "the daemon's API", timeout=20)
        self._quiet_uvicorn()
        self.backend = BackendClient(
            self.api_url, self.keys.sync_token, skip_one_on_resume=self.break_step == "catch-up"
        )
        self.backend.start()
        progress("starting the simulated fleet")
        await self._start_fleet()
        progress("seeding riders, a card and a ring through the API")
        await self._seed_riders()
        await until(self._readers_up, "both PC/SC readers up", timeout=15)

    def _daemon_up(self) -> bool:
        task = self._daemon_task
        if task is not None and task.done():
            exc = task.exception()
            raise StepFailed(f"the daemon stopped: {exc!r}" if exc else "the daemon stopped")
        return self.daemon is not None and self.daemon.api_port is not None

    def _readers_up(self) -> bool:
        assert self.daemon is not None
        readers = self.daemon.health()["readers"]
        return len(readers) >= 2 and all(r["state"] == "up" for r in readers)

    def _log_to_file(self) -> None:
        """The daemon's logs go to a file: the terminal shows the day, not the machinery."""
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per backend poll
        self._log_handler = handler

    @staticmethod
    def _quiet_uvicorn() -> None:
        """uvicorn gives its loggers their own stderr handlers when it starts: to the file."""
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers[:] = []
            logging.getLogger(name).propagate = True

    async def _start_fleet(self) -> None:
        assert self.broker is not None and self.daemon is not None
        clock = ScaledClock(self.speed)
        broker = Broker(self.broker.host, self.broker.port)
        for spec in STATIONS:
            for serial, battery in spec.docked.values():
                sim = ScooterSim(serial, broker, clock=clock, start=site(spec), battery=battery)
                await sim.start()
                self.scooters[serial] = sim
        store = self.daemon.store
        await until(
            lambda: {v.serial_number for v in store.vehicles.all()} >= set(self.scooters),
            "every scooter known to the gateway",
        )
        for spec in STATIONS:
            st = StationSim(spec.device_id, broker, spots=spec.spots, clock=clock, site=site(spec))
            await st.start()
            self.stations[spec.device_id] = st
            for number, (serial, _battery) in spec.docked.items():
                st.dock(number, serial)
        docked = sum(len(s.docked) for s in STATIONS)
        await until(
            lambda: sum(1 for v in store.vehicles.all() if v.spot_id) >= docked,
            "every scooter docked in the gateway's store",
        )

    async def _seed_riders(self) -> None:
        assert self.backend is not None
        await seed_riders(self.backend, self.keys, self.tags)

    # -- stop -----------------------------------------------------------------------------------
    async def stop(self, *, keep_files: bool = False) -> None:
        """Stop everything this run started, the last started first."""
        for sim in [*self.stations.values(), *self.scooters.values()]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sim.stop(), 5)
        if self.backend is not None:
            await self.backend.aclose()
        if self.daemon is not None and self._daemon_task is not None:
            self.daemon.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._daemon_task, 10)
        if self.pcscd is not None:
            await asyncio.to_thread(self.pcscd.stop)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.cleanup)
        if self._log_handler is not None:
            # What is still cancelled while the event loop closes (uvicorn's lifespan task)
            # would otherwise reach stderr through logging's last-resort handler.
            logging.getLogger().handlers[:] = [logging.NullHandler()]
            self._log_handler.close()
        if not keep_files:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class RiderApi(Protocol):
    """What seeding riders needs of a backend client: one authorised request."""

    async def send(self, method: str, path: str, body: dict[str, Any]) -> Any: ...


async def seed_riders(api: RiderApi, keys: Secrets, tags: dict[str, Ntag424Tag]) -> None:
    """What a backend does for a new rider: account with credit, product, record, pairing;
    the card's and the ring's simulated tags go into ``tags``."""
    meta, file = keys.meta_read_key, keys.file_read_key
    card_uid, ring_uid = new_uid(), new_uid()  # not the presets: tests may share pcscd
    tags["card"] = card(card_uid, meta_read_key=meta, file_read_key=file)
    tags["ring"] = ring(ring_uid, record=str(RING_RECORD), meta_read_key=meta, file_read_key=file)
    for rider, name, kind, uid, record in (
        (CARD_RIDER, "Giulia (card)", "card", card_uid, None),
        (RING_RIDER, "Marco (ring)", "ring", ring_uid, RING_RECORD),
    ):
        await api.send(
            "PUT",
            f"/api/v1/users/{rider}",
            {"name": name, "credit": 2000, "first_purchase_done": True},
        )
        product = await api.send("POST", "/api/v1/products", {"name": name, "kind": kind})
        body: dict[str, str | int] = {
            "technology": "nfc",
            "token_encryption": "aes-128",
            "uid": uid.hex(),
        }
        if record is not None:
            body["id"] = record
        await api.send("POST", f"/api/v1/products/{product['id']}/records", body)
        await api.send("POST", f"/api/v1/products/{product['id']}/pair", {"user_id": rider})
