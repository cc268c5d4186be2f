"""Hostile MQTT input against the real daemon, counted exactly in ``/metrics``.

`dockgate run` as its own process on a private Mosquitto; an independent plain-paho client
publishes a known number of messages of each class of bad input (oversized, not JSON, wrong
schema, wrong types, a payload naming another device) and of good ones. The daemon must stay
up, and ``/metrics`` (parsed with prometheus_client's own parser) must show each refusal code
with exactly the count sent, the good messages received and accepted, and the other
operator figures (commands, taps, decisions, alerts, outbox) present.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.system_harness import DaemonProcess, StationConf, until

pytestmark = pytest.mark.timeout(120)

VEHICLE = "HOST0001"
TOPIC = f"dockgate/1/vehicle/{VEHICLE}/telemetry"


def telemetry(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "v": 1,
        "ts": int(time.time() * 1000),
        "device_id": VEHICLE,
        "lat": 45.46,
        "lng": 9.2,
        "gps_accuracy": 4.0,
        "speed": 0.0,
        "battery": 80,
        "lock": "locked",
        "speed_mode": 2,
        "max_speed": 25,
        "odometer": 100,
    }
    body.update(over)
    return body


# code -> (how many, a payload of that class)
HOSTILE: dict[str, tuple[int, bytes]] = {
    "oversized": (7, b"{" + b" " * 9000 + b"}"),
    "bad-json": (11, b"{not json"),
    "schema": (13, orjson.dumps(telemetry(battery="80"))),  # no coercion
    "device-mismatch": (5, orjson.dumps(telemetry(device_id="HOST0002"))),
}
GOOD = 17
SKEWED = 3  # from a vehicle whose clock runs 10 minutes fast: heard, restamped, counted


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


async def test_every_refusal_is_counted_by_code_in_metrics(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    daemon = DaemonProcess(
        tmp_path, mosquitto.port, stations=[StationConf(1, "ST01", 45.46, 9.2)], log_level="ERROR"
    )
    daemon.start()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hostile", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = daemon.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return metric_samples(response.text)

    try:
        infos = []
        for count, payload in HOSTILE.values():
            infos += [client.publish(TOPIC, payload, qos=1) for _ in range(count)]
        for i in range(GOOD):
            body = orjson.dumps(telemetry(odometer=200 + i, ts=int(time.time() * 1000) + i))
            infos.append(client.publish(TOPIC, body, qos=1))
        now_ms = int(time.time() * 1000)
        fast = "HOST0003"
        for i in range(SKEWED):
            body = telemetry(device_id=fast, odometer=i, ts=now_ms + 600_000 + i)
            infos.append(
                client.publish(f"dockgate/1/vehicle/{fast}/telemetry", orjson.dumps(body), qos=1)
            )
            await asyncio.sleep(0.05)  # heard at the receive time: one report per instant
        for info in infos:
            info.wait_for_publish(10)
        await until(
            lambda: scraped().get(("dockgate_mqtt_accepted_total", ()), 0) >= GOOD + SKEWED,
            timeout=20,
            what="the good messages processed",
        )
        # older than what the vehicle already reported: history only, never its state
        stale = orjson.dumps(telemetry(odometer=1, ts=now_ms - 60_000))
        client.publish(TOPIC, stale, qos=1).wait_for_publish(10)
        sent = sum(count for count, _ in HOSTILE.values()) + GOOD + SKEWED + 1

        await until(
            lambda: scraped().get(("dockgate_mqtt_received_total", ()), 0) >= sent,
            timeout=20,
            what="every message received",
        )
        await asyncio.sleep(0.3)
        samples = scraped()
        assert daemon.alive
        assert samples["dockgate_mqtt_received_total", ()] == sent
        assert samples["dockgate_mqtt_accepted_total", ()] == GOOD + SKEWED + 1
        assert samples["dockgate_device_messages_total", (("outcome", "clock_skew"),)] == SKEWED
        assert samples["dockgate_device_messages_total", (("outcome", "stale"),)] == 1
        assert samples["dockgate_devices_clock_skewed", ()] == 1
        for code, (count, _) in HOSTILE.items():
            assert samples["dockgate_mqtt_refused_total", (("code", code),)] == count, code
        refused = {k for k in samples if k[0] == "dockgate_mqtt_refused_total"}
        assert len(refused) == len(HOSTILE), refused
        assert samples["dockgate_mqtt_unacked", ()] == 0  # all acknowledged once committed
        assert samples["dockgate_mqtt_takeovers_total", ()] == 0
        names = {name for name, _ in samples}
        for family in (
            "dockgate_outbox_pending",
            "dockgate_outbox_oldest_unsent_seconds",
            "dockgate_broker_up",
        ):
            assert family in names, family
        assert daemon.terminate() == 0
    finally:
        client.loop_stop()
        client.disconnect()
        daemon.close()
