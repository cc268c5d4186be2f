"""pytest fixtures for the ride flow without a broker: a fake command port and a rig.

The flow talks to devices only through its ``CommandPort``; here that is a :class:`FakePort`
(like httpx's ``MockTransport``): it records every command and answers each as its handler
says (``done`` unless told otherwise). Device messages are built with the protocol's own
``encode``/``decode``, exactly as the MQTT driver hands them over, and fed to the flow.

- ``rig``: a :class:`FlowRig`: the real store, outbox, rules engine (bundle
  ``demo-milano``), SUN verifier and tap handler on one database (on the test's engine:
  ``tests.support.stores``), two stations (``ST01`` at
  site A with vehicles ``SXB001`` 90 % and ``SXB002`` 60 %, ``ST02`` at site B with
  ``SXB003`` 10 %), readers ``reader-a`` and ``reader-b``, and a fake port. ``await
  rig.start_gateway(**flow_kwargs)`` (re)starts the flow on the same database: a restart.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dockgate.gateway.flow import RideFlow
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.protocol import (
    AlarmEvent,
    Channel,
    Command,
    DeviceMessage,
    DeviceRef,
    PowerEvent,
    SpotDocked,
    SpotStatus,
    SpotUndocked,
    StationStatus,
    Telemetry,
    VehicleEvent,
    decode,
    encode,
    now_ms,
)
from dockgate.gateway.rules import RulesEngine, load_bundle
from dockgate.gateway.store import BaseDatabase, JournalEntry, Store
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.sim.sdm import SdmTag
from tests.support.stores import open_test_database
from tests.support.taps import FILE, META, event, make_verifier

BUNDLE = Path(__file__).parent.parent.parent / "config" / "rules" / "demo-milano.json"
SITE_A = (45.4642, 9.2015)  # east of the "Centro storico" speed zone (15 km/h)
SITE_B = (45.4642, 9.1960)  # inside it
READER_A, READER_B = "reader-a", "reader-b"
STATIONS = {"ST01": 1, "ST02": 2}
CHANNELS: dict[type[BaseModel], Channel] = {
    SpotDocked: Channel.SPOT,
    SpotUndocked: Channel.SPOT,
    StationStatus: Channel.STATUS,
    PowerEvent: Channel.POWER,
    AlarmEvent: Channel.ALARM,
    Telemetry: Channel.TELEMETRY,
    VehicleEvent: Channel.EVENT,
}


# --- the fake port ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PortReply:
    """What the port answers for one command (``CommandResult``): a driver status word."""

    status: str = "done"
    reason: str | None = None
    attempts: int = 1


Handler = Callable[[DeviceRef, Command], PortReply | Awaitable[PortReply]]


def acks(device: DeviceRef, command: Command) -> PortReply:
    """Every device takes every command and does it."""
    return PortReply("done")


class FakePort:
    """A ``CommandPort`` in process: records each command, answers as ``handler`` says.

    ``handler(device, command)`` returns a :class:`PortReply` (or an awaitable of one, to
    hold the answer back); it can be swapped at any time (``port.handler = ...``).
    """

    def __init__(self, handler: Handler = acks) -> None:
        self.handler = handler
        self.sent: list[tuple[DeviceRef, Command]] = []

    async def __call__(self, device: DeviceRef, command: Command, /) -> PortReply:
        self.sent.append((device, command))
        reply = self.handler(device, command)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    def commands(self, cmd: str, device_id: str | None = None) -> list[Command]:
        """The commands named ``cmd`` sent so far (to ``device_id`` only, if given)."""
        return [
            c
            for d, c in self.sent
            if c.cmd == cmd and (device_id is None or d.device_id == device_id)
        ]

    def feedback(self, device_id: str) -> list[tuple[str | None, str, str | None]]:
        """(reader, result, reason) of each station-feedback shown at ``device_id``."""
        return [
            (c.reader, c.result, c.reason)  # type: ignore[union-attr]
            for c in self.commands("station-feedback", device_id)
        ]


# --- device messages ----------------------------------------------------------------------------
def message(device: DeviceRef, payload: BaseModel, *, retained: bool = False) -> DeviceMessage:
    """``payload`` as the driver would hand it over (encoded, then decoded and checked)."""
    channel = CHANNELS[type(payload)]
    return decode(device.topic(channel), encode(payload), retained=retained)


def station(device_id: str) -> DeviceRef:
    return DeviceRef.station(1, device_id)


def vehicle(serial: str) -> DeviceRef:
    return DeviceRef.vehicle(1, serial)


def telemetry(
    serial: str,
    at: tuple[float, float],
    *,
    speed: float = 0.0,
    battery: int = 80,
    lock: str = "locked",
    max_speed: int = 25,
    ts: int | None = None,
) -> DeviceMessage:
    report = Telemetry(
        ts=now_ms() if ts is None else ts,
        device_id=serial,
        lat=at[0],
        lng=at[1],
        gps_accuracy=3.0,
        speed=speed,
        battery=battery,
        lock=lock,
        speed_mode=2,
        max_speed=max_speed,
        odometer=0,
    )
    return message(vehicle(serial), report)


async def until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """``pred()``'s first true value, polled (background sends and timers run meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


def new_uid() -> bytes:
    return bytes([0x04]) + secrets.token_bytes(6)


# --- the rig ------------------------------------------------------------------------------------
def build_world(store: Store) -> None:
    """Network 1: station 1 (ST01, spots 11-14) at A, station 2 (ST02, spots 21-24) at B."""
    store.topology.upsert_network(1, "Milano", "Europe/Rome")
    store.topology.upsert_cluster(1, 1, "Centro", *SITE_A)
    store.topology.upsert_station(1, 1, "A", *SITE_A, badge_reader=True)
    store.topology.upsert_station(2, 1, "B", *SITE_B, badge_reader=True)
    for station_id in (1, 2):
        for n in range(1, 5):
            store.topology.upsert_spot(station_id * 10 + n, station_id, n)
    for vid, serial, battery in ((1, "SXB001", 90), (2, "SXB002", 60), (3, "SXB003", 10)):
        store.vehicles.upsert(vid, 1, serial, battery=battery, lat=SITE_A[0], lon=SITE_A[1])
    store.vehicles.dock(1, 11)
    store.vehicles.dock(2, 12)
    store.vehicles.dock(3, 21)  # too low to rent: station B has nothing to offer


@dataclass
class FlowRig:
    """The gateway's parts on one database, a fake port, and the street's messages."""

    path: Path
    db: BaseDatabase
    store: Store
    outbox: Outbox
    engine: RulesEngine
    handler: TapHandler
    port: FakePort = field(default_factory=FakePort)
    flow: RideFlow | None = None

    async def start_gateway(self, **flow_kwargs: Any) -> RideFlow:
        """A (new) flow on the same database and port: a gateway (re)start. The old flow's
        background sends and timers are cancelled, as a killed process's would be."""
        await self.stop_gateway()
        flow_kwargs.setdefault("undock_timeout", 20.0)
        self.flow = RideFlow(
            self.store,
            self.outbox,
            self.engine,
            self.port,
            network_id=1,
            readers={READER_A: 1, READER_B: 2},
            station_devices={1: "ST01", 2: "ST02"},
            **flow_kwargs,
        )
        return self.flow

    async def stop_gateway(self) -> None:
        if self.flow is not None:
            await self.flow.aclose()
        self.flow = None

    @property
    def running(self) -> RideFlow:
        assert self.flow is not None, "start_gateway() first"
        return self.flow

    # --- riders and taps -------------------------------------------------------------------
    def rider(
        self, rider_id: int, *, credit: int = 2000, first_purchase: bool = True, paired: bool = True
    ) -> SdmTag:
        """A rider with a card (a product with one record holding the card's UID)."""
        uid = new_uid()
        self.store.riders.upsert(rider_id, credit=credit, first_purchase_done=first_purchase)
        product = self.store.products.create(f"card of {rider_id}")
        self.store.records.create(product, uid=uid.hex(), token_encryption="aes-128")
        if paired:
            self.store.products.pair(product, rider_id)
        return SdmTag(
            uid=uid, meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac"
        )

    def tap(self, tag: SdmTag, reader: str = READER_A) -> Tap:
        return self.handler.handle(
            event(tag.next_url(), time.monotonic(), uid=tag.uid, reader=reader)
        )

    # --- device messages -------------------------------------------------------------------
    async def send(self, device: DeviceRef, payload: BaseModel, *, retained: bool = False) -> None:
        await self.running.on_device_message(message(device, payload, retained=retained))

    async def undock(self, device_id: str, spot: int, serial: str | None) -> None:
        payload = SpotUndocked(
            ts=now_ms(), device_id=device_id, type="spot-undocked", spot=spot, vehicle_id=serial
        )
        await self.send(station(device_id), payload)

    async def dock(self, device_id: str, spot: int, serial: str) -> None:
        payload = SpotDocked(
            ts=now_ms(), device_id=device_id, type="spot-docked", spot=spot, vehicle_id=serial
        )
        await self.send(station(device_id), payload)

    async def status(
        self,
        device_id: str,
        spots: dict[int, tuple[bool, str | None]],
        *,
        retained: bool = False,
        ts: int | None = None,
    ) -> None:
        """A station status: ``spots`` maps a spot number to (locked, vehicle serial)."""
        payload = StationStatus(
            ts=now_ms() if ts is None else ts,
            device_id=device_id,
            spots=[
                SpotStatus(
                    spot=n,
                    state="occupied" if serial else "free",
                    locked=locked,
                    vehicle_id=serial,
                )
                for n, (locked, serial) in sorted(spots.items())
            ],
        )
        await self.send(station(device_id), payload, retained=retained)

    # --- what happened ---------------------------------------------------------------------
    def kinds(self) -> list[str]:
        return [e.kind for e in self.outbox.read(0, 10_000)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.outbox.read(0, 10_000) if e.kind == kind]

    def commands(self, name: str) -> list[JournalEntry]:
        """The journal's commands named ``name``, oldest first."""
        cols = ", ".join(f.name for f in fields(JournalEntry))
        rows = self.db.conn.execute(
            f"SELECT {cols} FROM command_journal WHERE command=? ORDER BY id", (name,)
        ).fetchall()
        return [JournalEntry(*r) for r in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[FlowRig]:
    db = open_test_database(tmp_path / "gw.db")
    store = Store(db)
    build_world(store)
    r = FlowRig(
        tmp_path,
        db,
        store,
        Outbox(db),
        RulesEngine(load_bundle(BUNDLE), clock=time.time),
        TapHandler(make_verifier(tmp_path / "replay.db")),
    )
    try:
        yield r
    finally:
        await r.stop_gateway()
        db.close()
