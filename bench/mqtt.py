"""MQTT benchmark: (a) telemetry ingest through the gateway's driver (validation and a
latest-state-per-vehicle update) beside a raw paho-mqtt callback subscriber that only counts,
same run, same broker, same publisher; (b) command round trip gateway -> broker -> simulated
scooter (dockgate.sim.scooter, in its own process) -> ack, p50 and p99.

Ingest is measured by draining a backlog: each subscriber's persistent session is created,
the subscriber goes away, the publisher puts N QoS 1 messages in its queue, and the
subscriber comes back and is timed from connect to the N-th message. So the publisher's own
speed never caps the figure. ``--json`` prints one JSON object with the same figures.

    .venv/bin/python bench/mqtt.py --messages 30000 --commands 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.gateway.protocol import Channel, DeviceRef, SetLight, Telemetry, encode, now_ms
from dockgate.sim.services.mosquitto import Mosquitto

FLEET = [DeviceRef.vehicle(1, f"SXB{i:05d}") for i in range(500)]


def payloads(n: int) -> list[tuple[str, bytes]]:
    """N telemetry messages spread over the fleet; odometer carries the sequence number."""
    out = []
    ts = now_ms()
    for i in range(n):
        dev = FLEET[i % len(FLEET)]
        t = Telemetry(
            ts=ts,
            device_id=dev.device_id,
            lat=48.58 + (i % 100) * 1e-4,
            lng=7.75,
            gps_accuracy=4.0,
            speed=15.5,
            battery=80,
            lock="unlocked",
            speed_mode=2,
            max_speed=25,
            odometer=i,
        )
        out.append((dev.topic(Channel.TELEMETRY), encode(t)))
    return out


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> None:
    """The one publisher of both phases: paho, QoS 1, TCP_NODELAY, waits for every PUBACK."""
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(2000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 65535
    return props


def open_session(port: int, client_id: str, topic: str = "dockgate/+/+/+/telemetry") -> None:
    """Create a persistent session subscribed to ``topic`` (QoS 1), then leave it: the broker
    queues what is published next for it."""
    subscribed = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.loop_start()
    c.subscribe(topic, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("the session's subscription was not acknowledged")
    c.disconnect()
    c.loop_stop()


def end_session(port: int, client_id: str) -> None:
    """Drop a persistent session so later rounds do not queue messages for it."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port, clean_start=True)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


def raw_paho_rate(port: int, msgs: list[tuple[str, bytes]], cid: str) -> tuple[float, int]:
    """Baseline: a paho callback subscriber that only counts."""
    n = len(msgs)
    count = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(c, u, m) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    def make() -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        return c

    c = make()
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.subscribe("dockgate/+/+/+/telemetry", qos=1)
    c.loop_start()
    subscribed.wait(10)
    c.disconnect()
    c.loop_stop()
    publish_all(port, msgs)
    c = make()
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.loop_start()
    done.wait(120)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    end_session(port, cid)
    return count / elapsed, n - count


async def driver_rate(port: int, msgs: list[tuple[str, bytes]], cid: str) -> tuple[float, int, int]:
    """The gateway's driver: validation, then a latest-state-per-vehicle map."""
    n = len(msgs)
    settings = MqttSettings(port=port, client_id=cid, session_expiry=600)
    async with MqttDriver(settings):
        pass
    await asyncio.to_thread(publish_all, port, msgs)
    latest: dict[str, Telemetry] = {}
    seen: set[int] = set()
    t0 = time.perf_counter()
    async with MqttDriver(settings) as driver:
        while len(seen) < n:
            try:
                batch = await asyncio.wait_for(driver.get_batch(4096), 10)
            except TimeoutError:
                break
            for m in batch:
                latest[m.device.device_id] = m.payload
                seen.add(m.payload.odometer)
            driver.acknowledge_delivered()
        elapsed = time.perf_counter() - t0
        rejected = driver.status()["rejected_total"]
    await asyncio.to_thread(end_session, port, cid)
    return len(seen) / elapsed, n - len(seen), rejected


DEVICE_CODE = """
import asyncio, sys
from dockgate.sim.scooter import ScooterSim
async def main():
    sim = ScooterSim(sys.argv[1], sys.argv[2])
    await sim.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await sim.stop()
asyncio.run(main())
"""


async def command_rtt(port: int, n: int) -> list[float]:
    """Sequential set-light commands to a simulated scooter in another process."""
    device = FLEET[0]
    proc = subprocess.Popen(
        [sys.executable, "-c", DEVICE_CODE, device.device_id, f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        if line.strip() != b"ready":
            raise RuntimeError("the simulated scooter did not start")
        settings = MqttSettings(port=port, client_id="bench-cmd", command_retries=0)
        async with MqttDriver(settings) as driver:

            async def drain() -> None:
                async for _ in driver.messages():
                    pass

            drainer = asyncio.create_task(drain())
            rtts = []
            for i in range(n + 20):
                out = await driver.send_command(device, SetLight(on=bool(i % 2)))
                if not out.ok:
                    raise RuntimeError(f"command failed: {out.status}")
                if i >= 20:  # warm-up
                    rtts.append(out.ack_ms)
            drainer.cancel()
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rtts


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1, help="ingest rounds; medians reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.messages <= 150_000:
        parser.error("--messages must be in 1..150000 (broker queue limit)")
    msgs = payloads(args.messages)
    with Mosquitto(persistence=False) as broker:
        raw, ours, lost, raw_lost, rejected = [], [], 0, 0, 0
        for i in range(args.rounds):
            r, rl = raw_paho_rate(broker.port, msgs, f"bench-raw-{i}")
            o, ol, rej = asyncio.run(driver_rate(broker.port, msgs, f"bench-gw-{i}"))
            raw.append(r)
            ours.append(o)
            lost, raw_lost, rejected = lost + ol, raw_lost + rl, rejected + rej
        rtts = asyncio.run(command_rtt(broker.port, args.commands))
    figures = {
        "messages": args.messages,
        "rounds": args.rounds,
        "ingest_rate": round(statistics.median(ours)),
        "raw_paho_rate": round(statistics.median(raw)),
        "ingest_ratio": round(statistics.median(ours) / statistics.median(raw), 3),
        "lost": lost,
        "raw_lost": raw_lost,
        "rejected": rejected,
        "commands": len(rtts),
        "rtt_p50_ms": round(pct(rtts, 50), 3),
        "rtt_p99_ms": round(pct(rtts, 99), 3),
        "rtt_max_ms": round(max(rtts), 3),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"ingest, {args.messages} telemetry msgs at QoS 1, {args.rounds} round(s), median")
    print(f"  gateway driver (validate + state) {figures['ingest_rate']:>9,} msg/s  lost {lost}")
    print(
        f"  raw paho callback (count only)    {figures['raw_paho_rate']:>9,} msg/s  lost {raw_lost}"
    )
    print(f"  ratio                             {figures['ingest_ratio']:>9.1%}   (target >= 50%)")
    print(f"command round trip to dockgate.sim.scooter, {len(rtts)} commands")
    print(
        f"  p50 {figures['rtt_p50_ms']:.3f} ms   p99 {figures['rtt_p99_ms']:.3f} ms"
        f"   max {figures['rtt_max_ms']:.3f} ms   (target p99 < 5 ms)"
    )


if __name__ == "__main__":
    main()
