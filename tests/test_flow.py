"""The tap-to-ride flow end to end: real Mosquitto, the real MQTT driver, the station and
scooter simulators, the real SUN verifier, store, outbox and rules engine.

Tap -> unlock-spot ack -> undock -> trip started -> ride through a speed zone (max-speed
command) -> dock at another station -> trip ended with its cost, every event in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.gateway.flow import RideFlow
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.protocol import DeviceMessage, LockState
from dockgate.gateway.rules import RulesEngine, load_bundle
from dockgate.gateway.rules.pricing import pricing_at, trip_cost
from dockgate.gateway.store import Database, Store
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.sim.device_base import Broker
from dockgate.sim.routes import Route
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.sdm import SdmTag
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.simclock import ScaledClock
from dockgate.sim.station import StationSim
from tests.test_taps import FILE, META, event, make_verifier

pytestmark = pytest.mark.timeout(90)

BUNDLE = Path(__file__).parent.parent / "config" / "rules" / "demo-milano.json"
SITE_A = (45.4642, 9.2015)  # east of the "Centro storico" speed zone (15 km/h)
SITE_B = (45.4642, 9.1960)  # inside it
READER_A, READER_B = "reader-a", "reader-b"
SCALE = 20.0  # simulated seconds per real second (telemetry every 0.5 s while riding)


def new_uid() -> bytes:
    return bytes([0x04]) + secrets.token_bytes(6)


async def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


@dataclass
class Rig:
    """The gateway's parts on one database, plus the simulated street."""

    broker: Mosquitto
    path: Path
    store: Store
    outbox: Outbox
    engine: RulesEngine
    handler: TapHandler
    driver: MqttDriver | None = None
    flow: RideFlow | None = None
    stations: dict[str, StationSim] = field(default_factory=dict)
    scooters: dict[str, ScooterSim] = field(default_factory=dict)
    seen: list[DeviceMessage] = field(default_factory=list)
    _consumer: asyncio.Task[None] | None = None
    clock: ScaledClock = field(default_factory=lambda: ScaledClock(SCALE))
    client_id: str = field(default_factory=lambda: f"gw-{secrets.token_hex(4)}")

    def sim_broker(self) -> Broker:
        return Broker(self.broker.host, self.broker.port)

    async def start_gateway(self, **flow_kwargs: Any) -> RideFlow:
        """A (new) driver and flow on the same database: a gateway (re)start."""
        await self.stop_gateway()
        settings = MqttSettings(
            port=self.broker.port,
            client_id=self.client_id,  # one per site: a restart resumes its MQTT session
            command_timeout=1.0,
            outcome_timeout=5.0,
        )
        self.driver = await MqttDriver(settings).__aenter__()
        flow_kwargs.setdefault("undock_timeout", 20.0)
        self.flow = RideFlow(
            self.store,
            self.outbox,
            self.engine,
            self.driver.send_command,
            network_id=1,
            readers={READER_A: 1, READER_B: 2},
            station_devices={1: "ST01", 2: "ST02"},
            **flow_kwargs,
        )
        return self.flow

    def consume(self) -> None:
        """Feed every device message to the flow (what the daemon's loop does)."""
        driver, flow = self.driver, self.flow
        assert driver is not None and flow is not None

        async def run() -> None:
            async for msg in driver.messages():
                self.seen.append(msg)
                await flow.on_device_message(msg)

        self._consumer = asyncio.create_task(run())

    async def stop_gateway(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self.flow is not None:
            await self.flow.aclose()
        if self.driver is not None:
            await self.driver.aclose()
        self.flow = self.driver = None

    async def station(self, device_id: str, docked: dict[int, str]) -> StationSim:
        sim = StationSim(device_id, self.sim_broker(), spots=4, clock=self.clock, seed=1)
        await sim.start()
        for spot, serial in docked.items():
            sim.dock(spot, serial)
        self.stations[device_id] = sim
        return sim

    async def scooter(self, serial: str, at: tuple[float, float], battery: float) -> ScooterSim:
        sim = ScooterSim(serial, self.sim_broker(), clock=self.clock, start=at, battery=battery)
        await sim.start()
        self.scooters[serial] = sim
        return sim

    def rider(
        self, rider_id: int, *, credit: int = 2000, first_purchase: bool = True, paired: bool = True
    ) -> SdmTag:
        """A rider with a card (a product with one record holding the card's UID)."""
        uid = new_uid()
        self.store.upsert_rider(rider_id, credit=credit, first_purchase_done=first_purchase)
        product = self.store.create_product(f"card of {rider_id}")
        self.store.create_record(product, uid=uid.hex(), token_encryption="aes-128")
        if paired:
            self.store.pair_product(product, rider_id)
        return SdmTag(
            uid=uid, meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac"
        )

    def tap(self, tag: SdmTag, reader: str = READER_A) -> Tap:
        return self.handler.handle(
            event(tag.next_url(), time.monotonic(), uid=tag.uid, reader=reader)
        )

    def kinds(self) -> list[str]:
        return [e.kind for e in self.outbox.read(0, 10_000)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.outbox.read(0, 10_000) if e.kind == kind]

    def commands(self, name: str) -> list[dict[str, Any]]:
        with self.store.db.lock:
            rows = self.store.db.conn.execute(
                "SELECT * FROM command_journal WHERE command=? ORDER BY id", (name,)
            ).fetchall()
        return [dict(r) for r in rows]


def build_world(store: Store) -> None:
    """Network 1: station 1 (ST01, spots 11-14) at A, station 2 (ST02, spots 21-24) at B."""
    store.upsert_network(1, "Milano", "Europe/Rome")
    store.upsert_cluster(1, 1, "Centro", *SITE_A)
    store.upsert_station(1, 1, "A", *SITE_A, badge_reader=True)
    store.upsert_station(2, 1, "B", *SITE_B, badge_reader=True)
    for station in (1, 2):
        for n in range(1, 5):
            store.upsert_spot(station * 10 + n, station, n)
    for vid, serial, battery in ((1, "SXB001", 90), (2, "SXB002", 60), (3, "SXB003", 10)):
        store.upsert_vehicle(vid, 1, serial, battery=battery, lat=SITE_A[0], lon=SITE_A[1])
    store.dock_vehicle(1, 11)
    store.dock_vehicle(2, 12)
    store.dock_vehicle(3, 21)  # too low to rent: station B has nothing to offer


@pytest.fixture
async def rig(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Rig]:
    db = Database(tmp_path / "gw.db")
    store = Store(db)
    build_world(store)
    r = Rig(
        mosquitto,
        tmp_path,
        store,
        Outbox(db),
        RulesEngine(load_bundle(BUNDLE), clock=time.time),
        TapHandler(make_verifier(tmp_path / "replay.db")),
    )
    try:
        yield r
    finally:
        await r.stop_gateway()
        for sim in [*r.stations.values(), *r.scooters.values()]:
            await sim.stop()
        db.close()


async def test_tap_ride_dock_elsewhere_ends_trip_with_cost(rig: Rig) -> None:
    await rig.start_gateway()
    rig.consume()
    st_a = await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    st_b = await rig.station("ST02", {1: "SXB003"})
    scooter = await rig.scooter("SXB001", SITE_A, 90)
    await rig.scooter("SXB002", SITE_A, 60)
    card = rig.rider(7)

    decision = await rig.flow.on_tap(rig.tap(card))  # type: ignore[union-attr]
    # the highest battery wins; the spot acked and physically opened
    assert decision.accepted and decision.status == "unlocked", decision
    assert (decision.spot, decision.vehicle_id, decision.rider_id) == (1, 1, 7)

    vehicle = await until(lambda: rig.store.vehicle(1)["trip_id"], what="trip started")
    trip = rig.store.trip(vehicle)
    assert trip["status"] == "started" and trip["start_spot_id"] == 11
    await until(lambda: scooter.core.lock is LockState.UNLOCKED, what="vehicle unlocked")
    assert st_a.counters.received["cmd-unlock-spot"] == 1

    scooter.ride(Route("a-b", [SITE_A, SITE_B]))
    await until(lambda: scooter.core.max_speed_cap == 15, what="zone speed cap")
    scooter.park()
    st_b.dock(2, "SXB001")
    ended = await until(
        lambda: rig.store.trip(trip["id"])["status"] == "ended" and rig.store.trip(trip["id"]),
        what="trip ended",
    )
    await until(lambda: scooter.core.lock is LockState.LOCKED, what="vehicle locked")
    await rig.flow.drain()  # type: ignore[union-attr]

    b = rig.engine.bundle
    price = pricing_at(b.config.pricing, ended["started_at"], b.timezone)
    assert price is not None
    expected = round(trip_cost(price, ended["ended_at"] - ended["started_at"], 0.0) * 100)
    assert abs(ended["cost"] - expected) <= 1 and ended["cost"] >= 100  # unlock price 1.00
    assert (ended["end_station_id"], ended["end_spot_id"]) == (2, 22)
    assert rig.store.rider(7)["credit"] == 2000 - ended["cost"]
    assert rig.store.vehicle(1)["spot_id"] == 22 and rig.store.vehicle(1)["trip_id"] is None

    # the outbox tells the whole story, in order
    events = rig.outbox.read(0, 10_000)

    def first(kind: str, **match: Any) -> int:
        for e in events:
            if e.kind == kind and all(e.payload.get(k) == v for k, v in match.items()):
                return e.cursor
        raise AssertionError(f"no {kind} {match} in {[x.kind for x in events]}")

    order = [
        first("tap.accepted", rider_id=7),
        first("command.outcome", command="unlock-spot", state="acked", status="done"),
        first("trip.started", trip_id=trip["id"]),
        first("command.outcome", command="unlock-vehicle", state="acked"),
        first("trip.ended", trip_id=trip["id"], cost=ended["cost"]),
        first("command.outcome", command="lock-vehicle", state="acked"),
    ]
    assert order == sorted(order), order
    speeds = [c for c in rig.commands("set-max-speed") if c["trip_id"] == trip["id"]]
    assert any('"max_speed": 15' in c["args"] and c["state"] == "acked" for c in speeds)
    assert len(rig.commands("unlock-spot")) == 1
    assert len(rig.commands("unlock-vehicle")) == 1  # the engine's unlock joined the trip's


async def test_undock_timeout_relocks_spot_and_cancels(rig: Rig) -> None:
    await rig.start_gateway(undock_timeout=0.5)
    rig.consume()
    st_a = await rig.station("ST01", {1: "SXB001"})
    st_a.auto_release = False  # the rider walks away
    decision = await rig.flow.on_tap(rig.tap(rig.rider(8)))  # type: ignore[union-attr]
    assert decision.status == "unlocked"
    await until(lambda: rig.events("rental.cancelled"), what="rental cancelled")
    await rig.flow.drain()  # type: ignore[union-attr]
    assert st_a.core.spot(1).locked and st_a.counters.received["cmd-lock-spot"] == 1
    assert rig.store.vehicle(1)["trip_id"] is None
    assert rig.events("rental.cancelled")[0]["reason"] == "not_undocked"


async def test_station_power_and_alarm_and_vehicle_events(rig: Rig) -> None:
    await rig.start_gateway()
    rig.consume()
    st_a = await rig.station("ST01", {})
    scooter = await rig.scooter("SXB002", SITE_A, 60)
    st_a.cut_power()
    await until(lambda: rig.events("alert.raised"), what="power alert")
    assert rig.store.outages(1)[-1]["ended_at"] is None
    st_a.restore_power()
    await until(lambda: rig.events("alert.cleared"), what="power alert cleared")
    assert rig.store.outages(1)[-1]["ended_at"] is not None
    st_a.trigger_alarm("tamper")
    scooter.fall()
    await until(lambda: len(rig.events("alert.raised")) >= 3, what="alarm and fall alerts")
    crit = [e for e in rig.outbox.read(0, 10_000) if e.kind == "alert.raised"]
    assert {e.payload["alert_type"] for e in crit} == {
        "station-power-cut",
        "station-alarm-triggered",
        "vehicle-fallen",
    }
    assert all(e.priority.name == "CRITICAL" for e in crit)
