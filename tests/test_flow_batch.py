"""A driver batch handled at once gives what the same messages give one by one.

No broker: the messages are built with ``dockgate.gateway.protocol.encode``/``decode`` as the
driver would hand them over, the fake command port (``tests/plugins/flow.py``) records what it
is given, every clock is frozen. The batch has vehicles reporting several times, two trips of
one rider, a vehicle that docks (ending its trip) between two of its reports, an unknown
serial and a vehicle event.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from dockgate.gateway.flow import RideFlow
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.protocol import (
    Channel,
    DeviceMessage,
    DeviceRef,
    SpotDocked,
    Telemetry,
    VehicleEvent,
    decode,
    encode,
)
from dockgate.gateway.rules import RulesEngine, load_bundle
from dockgate.gateway.store import Store
from tests.plugins.flow import BUNDLE, FakePort
from tests.support.stores import open_test_database

pytestmark = pytest.mark.engines("sqlite", "postgresql")

SITE_A = (45.4642, 9.2015)  # outside the "Centro storico" speed zone
SITE_B = (45.4642, 9.1960)  # inside it (15 km/h)
AWAY = (45.6500, 9.6000)  # outside the network's border
SERIALS = [f"SXB{v:03d}" for v in range(1, 9)]
T0 = time.time()


def clock() -> float:
    return T0


def world(store: Store) -> None:
    store.topology.upsert_network(1, "Milano", "Europe/Rome")
    store.topology.upsert_cluster(1, 1, "Centro", *SITE_A)
    store.topology.upsert_station(1, 1, "A", *SITE_A)
    store.topology.upsert_spot(11, 1, 1)
    for vid, serial in enumerate(SERIALS, start=1):
        store.vehicles.upsert(vid, 1, serial, battery=80, lat=SITE_A[0], lon=SITE_A[1])
    store.riders.upsert(1, credit=5000, first_purchase_done=True)
    store.riders.upsert(2, credit=30, first_purchase_done=True)
    store.trips.start(1, 1)
    store.trips.start(1, 2)  # one rider, two vehicles: never in one chunk
    store.trips.start(2, 3)


def messages() -> list[DeviceMessage]:
    rng = random.Random(7)
    places = [SITE_A, SITE_B, AWAY]
    out: list[tuple[str, Any]] = []
    for i in range(80):
        serial = rng.choice(SERIALS[:6]) if i % 3 else SERIALS[i % len(SERIALS)]
        lat, lng = rng.choice(places)
        out.append(
            (
                serial,
                Telemetry(
                    ts=round(T0 * 1000) - 20_000 + i * 10,
                    device_id=serial,
                    lat=lat + rng.uniform(-1e-4, 1e-4),
                    lng=lng + rng.uniform(-1e-4, 1e-4),
                    gps_accuracy=rng.choice([3.0, 8.0, 500.0]),
                    speed=rng.choice([0.0, 3.0, 14.0, 24.0]),
                    battery=rng.randint(5, 100),
                    lock=rng.choice(["locked", "unlocked"]),
                    speed_mode=2,
                    max_speed=25,
                    odometer=i,
                ),
            )
        )
        if i == 30:
            out.append(
                (
                    "ST01",
                    SpotDocked(
                        ts=round(T0 * 1000),
                        device_id="ST01",
                        type="spot-docked",
                        spot=1,
                        vehicle_id="SXB002",
                    ),
                )
            )
        if i == 50:
            out.append(
                (
                    "SXB004",
                    VehicleEvent(ts=round(T0 * 1000), device_id="SXB004", type="vehicle-fallen"),
                )
            )
        if i == 60:
            out.append(("SXB999", Telemetry(**{**out[-1][1].model_dump(), "device_id": "SXB999"})))
    decoded = []
    for device_id, payload in out:
        if device_id.startswith("ST"):
            ref = DeviceRef.station(1, device_id)
            channel = Channel.SPOT
        else:
            ref = DeviceRef.vehicle(1, device_id)
            channel = Channel.TELEMETRY if isinstance(payload, Telemetry) else Channel.EVENT
        decoded.append(decode(ref.topic(channel), encode(payload)))
    return decoded


async def run(path: Path, msgs: list[DeviceMessage], batch: int | None) -> dict[str, Any]:
    """Feed ``msgs`` one by one (``batch=None``) or in batches; everything the flow left."""
    db = open_test_database(path)
    store = Store(db, clock=clock)
    outbox = Outbox(db, clock=clock, limits={Priority.STATE: 4}, max_pending=25)
    world(store)
    port = FakePort()  # every command acked

    engine = RulesEngine(load_bundle(BUNDLE), clock=clock)
    flow = RideFlow(
        store,
        outbox,
        engine,
        port,
        clock=clock,
        network_id=1,
        readers={},
        station_devices={1: "ST01"},
    )
    if batch is None:
        for m in msgs:
            await flow.on_device_message(m)
    else:
        for i in range(0, len(msgs), batch):
            await flow.on_device_messages(msgs[i : i + batch])
    await flow.drain()

    def table(sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in db.conn.execute(sql).fetchall()]

    state = {
        "vehicles": table("SELECT * FROM vehicles ORDER BY id"),
        "trips": table("SELECT * FROM trips ORDER BY id"),
        "riders": table("SELECT * FROM riders ORDER BY id"),
        "spots": table("SELECT * FROM spots ORDER BY id"),
        "journal": table("SELECT * FROM command_journal ORDER BY id"),
        "alerts": table("SELECT * FROM fleet_alerts ORDER BY id"),
        "events": table("SELECT * FROM outbox_events ORDER BY cursor"),
        "stats": table("SELECT * FROM outbox_stats ORDER BY priority"),
        "ignored": dict(flow.ignored),
        "sent": [(d.device_id, c.model_dump(mode="json", exclude={"ts"})) for d, c in port.sent],
        "memory": dict(db.cache.get("outbox.pending", {})),
    }
    for v in state["vehicles"]:
        v.pop("gbfs_id")  # random, redrawn at every trip start and end
    await flow.aclose()
    db.close()
    return state


@pytest.mark.parametrize("size", [1000, 7, 2])
async def test_batch_equals_one_by_one(tmp_path: Path, size: int) -> None:
    msgs = messages()
    one = await run(tmp_path / "one.db", msgs, None)
    many = await run(tmp_path / "many.db", msgs, size)
    assert one["journal"] and one["alerts"] and one["sent"]  # the rules did act
    assert any(t["status"] == "finished" for t in one["trips"])
    assert one["ignored"]["unknown-vehicle"] == 1
    assert one["ignored"]["max-speed-already-set"] > 0  # reports already at 25 km/h
    assert one["stats"][Priority.STATE]["dropped"] > 0  # the class bound was reached
    for what in one:
        assert many[what] == one[what], what
    pending = {r["priority"]: r["pending"] for r in one["stats"]}
    assert {int(p): n for p, n in many["memory"].items()} == pending


async def test_a_cap_the_vehicle_already_reports_is_not_sent_again(tmp_path: Path) -> None:
    """The engine sets a cap on first sight; a vehicle that reports that cap gets no command."""

    def report(serial: str, lat_lng: tuple[float, float], max_speed: int) -> DeviceMessage:
        t = Telemetry(
            ts=round(T0 * 1000),
            device_id=serial,
            lat=lat_lng[0],
            lng=lat_lng[1],
            gps_accuracy=3.0,
            speed=0.0,
            battery=80,
            lock="locked",
            speed_mode=2,
            max_speed=max_speed,
            odometer=0,
        )
        return decode(DeviceRef.vehicle(1, serial).topic(Channel.TELEMETRY), encode(t))

    msgs = [report("SXB004", SITE_B, 15), report("SXB005", SITE_B, 25)]  # zone cap: 15 km/h
    state = await run(tmp_path / "cap.db", msgs, None)
    caps = [(d, c["max_speed"]) for d, c in state["sent"] if c["cmd"] == "set-max-speed"]
    assert caps == [("SXB005", 15)]
    assert state["ignored"]["max-speed-already-set"] == 1
