"""Devices on a real broker for the MQTT tests: wire-ready messages and a scripted device."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.gateway.protocol import (
    PHYSICAL_COMMANDS,
    Ack,
    AckStatus,
    Channel,
    DeviceRef,
    Outcome,
    OutcomeStatus,
    Telemetry,
    decode_command,
    encode,
    now_ms,
)
from dockgate.sim.services.mosquitto import Mosquitto

__all__ = ["ScriptedDevice", "telemetry", "wait_subscribed"]


def telemetry(device_id: str = "SXB123", odometer: int = 0) -> bytes:
    """Encoded telemetry from vehicle ``device_id``; ``odometer`` tells messages apart."""
    return encode(
        Telemetry(
            ts=now_ms(),
            device_id=device_id,
            lat=48.0,
            lng=2.0,
            gps_accuracy=3.0,
            speed=10.0,
            battery=50,
            lock="unlocked",
            speed_mode=2,
            max_speed=25,
            odometer=odometer,
        )
    )


class ScriptedDevice:
    """A device on the real broker whose replies a test scripts exactly (a paho client).

    ``behaviour`` per command: ``ack`` (accept), ``reject``, ``silent`` (never answer),
    ``ignore-first`` (drop the first delivery of each cmd_id, ack repeats), ``dup`` (send the
    ack twice); ``outcome`` is ``done``, ``failed`` or None (no outcome reply). Commands past
    their ``expires_at`` are answered ``expired``. A repeated cmd_id is never re-executed:
    the device re-sends its replies, as the protocol asks.
    """

    def __init__(
        self,
        broker: Mosquitto,
        device: DeviceRef,
        *,
        behaviour: str = "ack",
        outcome: str | None = "done",
        user: tuple[str, str] | None = None,
    ) -> None:
        self.device = device
        self.behaviour = behaviour
        self.outcome = outcome
        self.deliveries: list[tuple[str, Any]] = []  # (cmd_id, properties) per delivery
        self.executed: list[str] = []
        self._replies: dict[str, list[tuple[str, bytes]]] = {}
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{device.device_id}", protocol=paho.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(*user)
        if broker.tls is not None:  # a TLS listener: trust its CA
            self.client.tls_set(ca_certs=str(broker.tls.cafile))
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(device.topic(Channel.CMD), qos=1)
        self.client.loop_start()
        wait_subscribed(self.client, device.topic(Channel.CMD))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        cmd = decode_command(msg.topic, msg.payload, device=self.device)
        with self._lock:
            self.deliveries.append((cmd.cmd_id, msg.properties))
            first = cmd.cmd_id not in self._replies
            if first:
                self._replies[cmd.cmd_id] = []
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        response_topic = msg.properties.ResponseTopic
        if not first:
            if self.behaviour == "silent":
                return
            for topic, payload in list(self._replies[cmd.cmd_id]):
                client.publish(topic, payload, qos=1, properties=props)
            if self.behaviour == "ignore-first" and not self._replies[cmd.cmd_id]:
                self._answer(client, cmd, response_topic, props)
            return
        if self.behaviour in ("silent", "ignore-first"):
            return
        self._answer(client, cmd, response_topic, props)

    def _answer(self, client: Any, cmd: Any, topic: str, props: Any) -> None:
        def send(model: Any) -> None:
            payload = encode(model)
            self._replies[cmd.cmd_id].append((topic, payload))
            client.publish(topic, payload, qos=1, properties=props)

        base = {"ts": now_ms(), "device_id": self.device.device_id, "cmd_id": cmd.cmd_id}
        if cmd.expires_at < now_ms() or self.behaviour == "expired":
            send(Ack(status=AckStatus.EXPIRED, **base))
            return
        if self.behaviour == "reject":
            send(Ack(status=AckStatus.REJECTED, reason="busy", **base))
            return
        self.executed.append(cmd.cmd_id)
        send(Ack(status=AckStatus.ACCEPTED, **base))
        if self.behaviour == "dup":
            client.publish(topic, self._replies[cmd.cmd_id][-1][1], qos=1, properties=props)
        if cmd.cmd in PHYSICAL_COMMANDS and self.outcome is not None:
            reason = "lock-jammed" if self.outcome == "failed" else None
            send(Outcome(status=OutcomeStatus(self.outcome), reason=reason, **base))

    def publish(self, channel: Channel, payload: bytes, qos: int = 1) -> Any:
        return self.client.publish(self.device.topic(channel), payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_subscribed(client: Any, topic: str, timeout: float = 5.0) -> None:
    """Block until a SUBACK for ``topic`` arrived (paho gives no per-call wait)."""
    done = {"ok": False}
    previous = client.on_subscribe

    def on_subscribe(c: Any, u: Any, mid: int, rcs: Any, props: Any) -> None:
        done["ok"] = True

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + timeout
    while not done["ok"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SUBACK for {topic}")
        time.sleep(0.005)
    client.on_subscribe = previous
