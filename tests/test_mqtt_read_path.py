"""The driver's own read path (whole packets taken from a 64 KiB read buffer, PUBLISH bodies
decoded without paho's per-message properties) against a scripted broker that cuts its byte
stream at random places: every message arrives once, in order, with its properties where it
has some, and the PUBACKs go back in arrival order only after the batch is acknowledged.

The scripted broker writes MQTT v5 packets byte for byte as the specification lays them out
(section 3.3 PUBLISH, 3.2 CONNACK, 3.9 SUBACK), independently of paho's encoder.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dockgate.drivers.mqtt import MqttDriver, MqttSettings
from dockgate.drivers.mqtt.paho_compat import BufferedSocket
from dockgate.gateway.protocol import Ack, Channel, DeviceRef, encode, now_ms
from tests.support.mqtt import telemetry

VEHICLE = DeviceRef.vehicle(7, "SXB123")
CONNACK = bytes([0x20, 3, 0, 0, 0])  # no session present, success, no properties
USER_PROPERTY = 0x26
CORRELATION_DATA = 0x09


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def publish(topic: str, mid: int, payload: bytes, *, properties: bytes = b"") -> bytes:
    body = utf8(topic) + struct.pack("!H", mid)
    body += remaining_length(len(properties)) + properties + payload
    return bytes([0x32]) + remaining_length(len(body)) + body  # PUBLISH, QoS 1


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    first = conn.recv(1)
    if not first:
        raise ConnectionError("closed")
    length, shift = 0, 0
    while True:
        byte = conn.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return first[0], body


class ScriptedBroker:
    """Accepts one client: CONNACK, SUBACK, then the given bytes in random cuts; records
    the packet ids of the PUBACKs it receives."""

    def __init__(self, stream: bytes, seed: int) -> None:
        self.stream = stream
        self.rng = random.Random(seed)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pubacks: list[int] = []
        self.puback_before_ack: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            kind, _ = read_packet(conn)
            assert kind >> 4 == 1  # CONNECT
            conn.sendall(CONNACK)
            kind, body = read_packet(conn)
            assert kind >> 4 == 8  # SUBSCRIBE
            (mid,) = struct.unpack_from("!H", body)
            filters = count_filters(body)
            granted = b"\1" * filters  # QoS 1 for each filter
            conn.sendall(bytes([0x90, 3 + filters]) + struct.pack("!H", mid) + b"\0" + granted)
            self._send_in_cuts(conn)
            conn.settimeout(10)
            while True:
                try:
                    kind, body = read_packet(conn)
                except (ConnectionError, OSError):
                    return
                if kind >> 4 == 4:  # PUBACK
                    self.pubacks.append(struct.unpack_from("!H", body)[0])

    def _send_in_cuts(self, conn: socket.socket) -> None:
        at = 0
        while at < len(self.stream):
            step = self.rng.choice([1, 2, 3, 7, 50, 333, 4096, 70_000])
            conn.sendall(self.stream[at : at + step])
            at += step


def count_filters(subscribe_body: bytes) -> int:
    at = 2
    length, shift = 0, 0
    while True:  # the properties' length
        byte = subscribe_body[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    at += length
    count = 0
    while at < len(subscribe_body):
        (n,) = struct.unpack_from("!H", subscribe_body, at)
        at += 2 + n + 1  # the filter and its options byte
        count += 1
    return count


@contextmanager
def scripted(stream: bytes, seed: int) -> Iterator[ScriptedBroker]:
    broker = ScriptedBroker(stream, seed)
    broker.thread.start()
    try:
        yield broker
    finally:
        broker.listener.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cut_stream_arrives_whole_in_order_and_acked_after_commit(seed: int) -> None:
    topic = VEHICLE.topic(Channel.TELEMETRY)
    user_property = bytes([USER_PROPERTY]) + utf8("k") + utf8("v")
    stream = b"".join(
        publish(
            topic,
            mid,
            telemetry(odometer=mid),
            properties=user_property if mid % 7 == 0 else b"",  # paho's own decoding
        )
        for mid in range(1, 2001)
    )
    with scripted(stream, seed) as broker:
        settings = MqttSettings(port=broker.port, client_id=f"gw-read-{seed}")
        async with MqttDriver(settings) as driver:
            seen: list[int] = []
            while len(seen) < 2000:
                batch = await asyncio.wait_for(driver.get_batch(), 10)
                seen += [m.payload.odometer for m in batch]
                await asyncio.sleep(0.05)
                assert len(broker.pubacks) <= len(seen) - len(batch), "acked before commit"
                driver.acknowledge_delivered()
            for _ in range(200):
                if len(broker.pubacks) == 2000:
                    break
                await asyncio.sleep(0.02)
    assert seen == list(range(1, 2001))
    assert broker.pubacks == list(range(1, 2001))


def test_take_packet_leaves_a_partial_packet_to_paho() -> None:
    left, right = socket.socketpair()
    with left, right:
        whole = publish("a/b", 1, b"x" * 300)
        left.sendall(whole + whole[:10])
        right.setblocking(False)
        sock = BufferedSocket(right)
        assert sock.recv(1) == whole[:1]  # paho's first read fills the buffer
        assert sock.recv(len(whole) - 1) == whole[1:]  # paho reads the packet it began
        assert sock.take_packet() is None  # ten bytes: less than a packet
        assert sock.pending() == 10
        left.sendall(whole[10:])
        assert sock.recv(10) == whole[:10]
        assert sock.take_packet() is None
        assert sock.recv(len(whole)) == whole[10:]


def test_take_packet_refuses_an_overlong_length() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) + b"\0" * 64)
        sock = BufferedSocket(right)
        sock.recv(0)  # fills the buffer, hands nothing
        assert sock.take_packet() is None  # five length bytes: paho reports the protocol error


def ack_reply(cmd_id: str) -> bytes:
    return encode(Ack(ts=now_ms(), device_id=VEHICLE.device_id, cmd_id=cmd_id, status="accepted"))


@pytest.mark.parametrize("seed", [4, 5])
async def test_replies_and_refusals_in_a_cut_stream_keep_the_puback_order(seed: int) -> None:
    """Replies are validated as they are read, with or without correlation data (paho's path
    and the bulk path); a refused report is refused when its batch is taken. Every PUBACK
    still leaves once, in arrival order, and only after what came before it is settled."""
    telemetry_topic, reply_topic = VEHICLE.topic(Channel.TELEMETRY), VEHICLE.topic(Channel.REPLY)
    packets, good, replies, refused = [], [], 0, 0
    for mid in range(1, 601):
        if mid % 50 == 0:  # a reply to a command nobody waits for: counted late
            corr = bytes([CORRELATION_DATA]) + struct.pack("!H", 2) + b"c9" if mid % 100 else b""
            packets.append(publish(reply_topic, mid, ack_reply("c9"), properties=corr))
            replies += 1
        elif mid % 13 == 0:
            packets.append(publish(telemetry_topic, mid, b"{garbage"))
            refused += 1
        else:
            packets.append(publish(telemetry_topic, mid, telemetry(odometer=mid)))
            good.append(mid)
    with scripted(b"".join(packets), seed) as broker:
        settings = MqttSettings(port=broker.port, client_id=f"gw-replies-{seed}")
        async with MqttDriver(settings) as driver:
            seen: list[int] = []
            while len(seen) < len(good):
                batch = await asyncio.wait_for(driver.get_batch(), 10)
                seen += [m.payload.odometer for m in batch]
                driver.acknowledge_delivered()
            for _ in range(200):
                if len(broker.pubacks) == 600:
                    break
                await asyncio.sleep(0.02)
            status = driver.status()
    assert seen == good
    assert broker.pubacks == list(range(1, 601))
    assert status["rejected"] == {"bad-json": refused}
    assert status["late_replies"] == replies
    assert status["accepted"] == len(good) + replies


def test_bulk_read_takes_plain_publishes_and_stops_before_anything_else() -> None:
    plain = publish("a/telemetry", 1, b"one")
    qos0_retained = bytes([0x31]) + remaining_length(6 + 3) + utf8("a/b") + b"\0" + b"two"
    with_properties = publish(
        "a/reply", 2, b"three", properties=bytes([CORRELATION_DATA]) + utf8("x")
    )
    puback = bytes([0x40, 2, 0, 3])
    left, right = socket.socketpair()
    with left, right:
        left.sendall(plain + qos0_retained + with_properties + puback + plain + plain[:5])
        sock = BufferedSocket(right)
        sock.recv(0)  # fills the buffer, hands nothing
        assert sock.take_bare_publishes(10) == [
            (b"a/telemetry", b"one", 1, 1, False),
            (b"a/b", b"two", 0, 0, True),
        ]
        assert sock.take_bare_publishes(10) == []  # properties: paho decodes it
        assert sock.take_packet() is not None
        assert sock.take_bare_publishes(10) == []  # a PUBACK
        assert sock.take_packet() == (0x40, bytes([0, 3]))
        assert sock.take_bare_publishes(1) == [(b"a/telemetry", b"one", 1, 1, False)]
        assert sock.take_bare_publishes(10) == []  # five bytes of a packet: paho reads on
        assert sock.pending() == 5


def test_bulk_read_leaves_a_malformed_publish_to_paho() -> None:
    overlong_topic = bytes([0x32, 6]) + struct.pack("!H", 200) + b"abcd"
    left, right = socket.socketpair()
    with left, right:
        left.sendall(overlong_topic)
        sock = BufferedSocket(right)
        sock.recv(0)
        assert sock.take_bare_publishes(10) == []
        assert sock.pending() == len(overlong_topic)
