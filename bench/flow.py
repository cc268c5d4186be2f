"""Tap-to-unlock benchmark: the gateway's own time from a verified tap to the unlock-spot
command on the wire, beside a baseline (the same command sent bare through the same driver).

A private Mosquitto, the real MQTT driver, store, outbox, rules engine and RideFlow on a
temporary database; a paho "station" in its own thread stamps each command's arrival and
acks it (with a done outcome). Each tap is a fresh SUN message verified by the real
TapHandler just before ``on_tap``; time starts at ``tap.verified_at``. Rounds of 64 taps
empty the 64-spot station; the vehicles then leave and dock again (real trips) between rounds.

    .venv/bin/python bench/flow.py --taps 1000 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.gateway.flow import RideFlow, command_id_for, tap_key
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.protocol import (
    PHYSICAL_COMMANDS,
    Ack,
    AckStatus,
    DeviceKind,
    DeviceRef,
    Outcome,
    OutcomeStatus,
    SpotDocked,
    SpotUndocked,
    UnlockSpot,
    decode,
    decode_command,
    encode,
    now_ms,
)
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.rules import RulesEngine, load_bundle
from dockgate.gateway.store import Database, Store
from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import TapHandler
from dockgate.sim.sdm import SdmTag
from dockgate.sim.services.mosquitto import Mosquitto

META = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
FILE = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
SPOTS = 64
SITE = (45.4642, 9.2015)
BUNDLE = Path(__file__).resolve().parent.parent / "config" / "rules" / "demo-milano.json"


class Devices:
    """Every device at once: stamps each command's arrival, acks it, reports 'done'."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-devices", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(6, 1, 1)  # NODELAY
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("dockgate/1/+/+/cmd", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = time.monotonic()
        _, net, kind, device_id, _ = msg.topic.split("/")
        device = DeviceRef(int(net), DeviceKind(kind), device_id)
        cmd = decode_command(msg.topic, msg.payload, device=device)
        self.arrived.setdefault(cmd.cmd_id, t)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        base = {"ts": now_ms(), "device_id": device_id, "cmd_id": cmd.cmd_id}
        topic = msg.properties.ResponseTopic
        client.publish(topic, encode(Ack(status=AckStatus.ACCEPTED, **base)), 1, properties=props)
        if cmd.cmd in PHYSICAL_COMMANDS:
            client.publish(
                topic, encode(Outcome(status=OutcomeStatus.DONE, **base)), 1, properties=props
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def world(store: Store) -> list[SdmTag]:
    store.topology.upsert_network(1, "Milano", "Europe/Rome")
    store.topology.upsert_cluster(1, 1, "Centro", *SITE)
    store.topology.upsert_station(1, 1, "A", *SITE, badge_reader=True)
    tags = []
    for n in range(1, SPOTS + 1):
        store.topology.upsert_spot(n, 1, n)
        store.vehicles.upsert(n, 1, f"SXB{n:05d}", battery=50 + n % 40)
        store.vehicles.dock(n, n)
        uid = bytes([0x04, 0xB0, 0, 0, 0, 0, n])
        store.riders.upsert(n, credit=10_000_000, first_purchase_done=True)
        product = store.products.create(f"card {n}")
        store.records.create(product, uid=uid.hex(), token_encryption="aes-128")
        store.products.pair(product, n)
        tags.append(
            SdmTag(uid=uid, meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac")
        )
    return tags


def stats(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50_ms": round(q[49], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(max(ms), 3),
    }


async def cycle_vehicles(flow: RideFlow, serials: dict[int, str]) -> None:
    """Every unlocked vehicle leaves (trip starts) and docks again (trip ends)."""
    for (_station, spot), rental in list(flow.rentals.items()):
        topic = "dockgate/1/station/ST01/spot"
        for model in (
            SpotUndocked(
                ts=now_ms(),
                device_id="ST01",
                type="spot-undocked",
                spot=spot,
                vehicle_id=rental.serial,
            ),
            SpotDocked(
                ts=now_ms(),
                device_id="ST01",
                type="spot-docked",
                spot=spot,
                vehicle_id=rental.serial,
            ),
        ):
            await flow.on_device_message(decode(topic, encode(model)))
    await flow.drain()


async def run(taps: int, baseline: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    broker = Mosquitto(persistence=False)
    broker.start()
    devices = Devices(broker.port)
    db = Database(tmp / "gw.db")
    store = Store(db)
    outbox = Outbox(db)
    tags = world(store)
    engine = RulesEngine(load_bundle(BUNDLE), clock=time.time)
    handler = TapHandler(
        SunVerifier(
            SunSettings.model_validate(
                {
                    "key_sets": {
                        "default": {"meta_read_key": META.hex(), "file_read_key": FILE.hex()}
                    }
                }
            ),
            ReplayStore(tmp / "replay.db"),
        ),
        window=0.0,
    )
    settings = MqttSettings(port=broker.port, client_id="bench-gw", command_timeout=2.0)
    publish_at: dict[str, float] = {}
    try:
        async with MqttDriver(settings) as driver:

            async def send(device: DeviceRef, command: Any) -> Any:
                publish_at.setdefault(command.cmd_id, time.monotonic())
                return await driver.send_command(device, command)

            flow = RideFlow(
                store,
                outbox,
                engine,
                send,
                network_id=1,
                readers={"r1": 1},
                station_devices={1: "ST01"},
                undock_timeout=600,
            )
            await flow.recover()
            to_publish: list[float] = []
            to_wire: list[float] = []
            for i in range(taps):
                if i and i % SPOTS == 0:
                    await cycle_vehicles(flow, {})
                tag = tags[i % SPOTS]
                now = time.monotonic()
                tap = handler.handle(TapEvent("r1", tag.uid, tag.next_url(), now, now, time.time()))
                decision = await flow.on_tap(tap)
                if decision.status != "unlocked":
                    raise SystemExit(f"tap {i} not unlocked: {decision}")
                cmd_id = command_id_for(tap_key(tap))
                for _ in range(200):
                    if cmd_id in devices.arrived:
                        break
                    await asyncio.sleep(0.001)
                to_publish.append((publish_at[cmd_id] - tap.verified_at) * 1000)
                to_wire.append((devices.arrived[cmd_id] - tap.verified_at) * 1000)
            await cycle_vehicles(flow, {})
            bare: list[float] = []
            station = DeviceRef.station(1, "ST01")
            for _ in range(baseline):
                cmd = UnlockSpot(spot=1)
                t0 = time.monotonic()
                await driver.send_command(station, cmd)
                bare.append((devices.arrived[cmd.cmd_id] - t0) * 1000)
            await flow.aclose()
            trips = len(store.trips.page(limit=100_000))
    finally:
        devices.close()
        broker.cleanup()
        db.close()
    return {
        "taps": taps,
        "tap_to_publish_call": stats(to_publish),
        "tap_to_wire": stats(to_wire),
        "baseline_bare_send_to_wire": stats(bare),
        "target_p99_ms": 10.0,
        "trips": trips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.taps, args.baseline))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['taps']} taps, {result['trips']} trips (64-spot station, real MQTT)")
    for name in ("tap_to_publish_call", "tap_to_wire", "baseline_bare_send_to_wire"):
        s = result[name]
        print(
            f"  {name:28s} p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms"
            f"  max {s['max_ms']:7.3f} ms"
        )
    print(f"  target: tap_to_wire p99 < {result['target_p99_ms']} ms")


if __name__ == "__main__":
    main()
