"""The reader-side publisher on a real Mosquitto, heard by an independent paho subscriber.

Taps go out at QoS 1 with a Message Expiry Interval and are kept (bounded) through a broker
blip; a tap that waited longer than it is worth, or the oldest of a full queue, is dropped and
counted. The broker's ACL keeps a reader account to its own tap topic. ``dockgate reader
publish`` runs as a process reading a simulated NTAG 424 DNA over nfcpy's ``udp:`` device.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.drivers.readers.broker_tap import PublisherSettings, TapPublisher
from dockgate.gateway.protocol import ReaderTap, decode
from dockgate.gateway.readers import TapEvent
from dockgate.sim.ntag424 import card
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag
from tests.support.broker_login import NOT_AUTHORIZED, Session
from tests.support.reader_taps import tap_bytes, tap_topic
from tests.support.taps import FILE, META, make_verifier

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parent.parent


class Listener:
    """A paho subscriber to every reader's taps: (topic, payload, QoS, expiry) as received.

    ``persistent``: its session outlives a broker restart (the broker's persistence), so
    taps published while it reconnects are queued for it.
    """

    def __init__(
        self,
        broker: Mosquitto,
        *,
        user: str | None = None,
        password: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.got: list[tuple[str, bytes, int, int | None]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=user or "tap-listener", protocol=paho.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # back soon after a blip
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe("dockgate/+/reader/+/tap", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300 if persistent else 0
        self.client.connect(broker.host, broker.port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        expiry = getattr(msg.properties, "MessageExpiryInterval", None)
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload), msg.qos, expiry))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> list[ReaderTap]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return [decode(t, p).payload for t, p, _, _ in self.got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings(broker: Mosquitto, reader: str = "R01", **kw: Any) -> PublisherSettings:
    return PublisherSettings(reader_id=reader, port=broker.port, reconnect_max=0.2, **kw)


def read(tag: Any) -> TapEvent:
    """The event a reader driver hands over for one read of ``tag`` (an SdmTag)."""
    now = time.monotonic()
    return TapEvent("pcsc name", tag.uid, tag.next_url(), now - 0.03, now, time.time() - 0.03)


@pytest.fixture
def sdm_card() -> Any:
    return card(meta_read_key=META, file_read_key=FILE).source


async def test_taps_go_out_at_qos1_with_an_expiry_and_verify_at_the_gateway(
    mosquitto: Mosquitto, sdm_card: Any, tmp_path: Path
) -> None:
    listener = Listener(mosquitto)
    try:
        async with TapPublisher(settings(mosquitto, max_age=20.0)) as publisher:
            assert publisher.wait_connected(5)
            first = publisher.submit(read(sdm_card))
            second = publisher.submit(read(sdm_card))
            taps = listener.wait(2)
            assert await publisher.drain(5)
            status = publisher.status()
        assert [t.seq for t in taps] == [first, second] and second == first + 1
        assert {(topic, qos) for topic, _, qos, _ in listener.got} == {(tap_topic("R01"), 1)}
        assert all(expiry is not None and 1 <= expiry <= 20 for *_, expiry in listener.got)
        assert taps[0].device_id == "R01" and taps[0].uid == sdm_card.uid.hex()
        assert taps[0].read_ms == 30
        verifier = make_verifier(tmp_path / "replay.db")  # the keys are only on this side
        assert [verifier.verify_url(t.url).valid for t in taps if t.url] == [True, True]
        assert (status["acked"], status["queued"], status["refused"]) == (2, 0, 0)
    finally:
        listener.close()


async def test_taps_wait_through_a_broker_blip(mosquitto: Mosquitto, sdm_card: Any) -> None:
    listener = Listener(mosquitto, persistent=True)
    try:
        async with TapPublisher(settings(mosquitto)) as publisher:
            assert publisher.wait_connected(5)
            mosquitto.stop()
            seqs = [publisher.submit(read(sdm_card)) for _ in range(3)]
            await asyncio.sleep(0.3)  # reconnects fail meanwhile
            assert publisher.queued == 3
            mosquitto.start()
            taps = listener.wait(3, timeout=15)
            assert await publisher.drain(5)
            status = publisher.status()
        assert [t.seq for t in taps] == seqs
        assert status["connects"] >= 2 and status["connect_failures"] >= 1
        assert (status["acked"], status["expired"], status["dropped"]) == (3, 0, 0)
    finally:
        listener.close()


async def test_a_tap_in_flight_when_the_broker_dies_is_sent_again(
    mosquitto: Mosquitto, sdm_card: Any
) -> None:
    listener = Listener(mosquitto, persistent=True)
    try:
        async with TapPublisher(settings(mosquitto)) as publisher:
            assert publisher.wait_connected(5)
            mosquitto.restart()  # a clean stop saves the listener's session with the broker
            await until_status(publisher, lambda s: s["connects"] == 2 and s["connected"])
            assert mosquitto.pid is not None
            os.kill(mosquitto.pid, signal.SIGSTOP)  # the broker hangs: no PUBACK comes
            seq = publisher.submit(read(sdm_card))
            await until_status(publisher, lambda s: s["published"] == 1)
            await asyncio.sleep(0.2)
            assert (publisher.status()["acked"], publisher.queued) == (0, 1)
            mosquitto.kill()  # dies with the PUBLISH unacknowledged (and not persisted)
            mosquitto.start()
            [tap] = listener.wait(1, timeout=15)
            assert await publisher.drain(5)
            status = publisher.status()
        assert tap.seq == seq
        assert (status["published"], status["resent"], status["acked"]) == (2, 1, 1)
    finally:
        listener.close()


async def until_status(publisher: TapPublisher, pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred(publisher.status()):
        assert time.monotonic() < deadline, publisher.status()
        await asyncio.sleep(0.02)


async def test_a_tap_that_waited_longer_than_it_is_worth_is_dropped(
    mosquitto: Mosquitto, sdm_card: Any
) -> None:
    listener = Listener(mosquitto, persistent=True)
    try:
        async with TapPublisher(settings(mosquitto, max_age=1.0)) as publisher:
            assert publisher.wait_connected(5)
            mosquitto.stop()
            publisher.submit(read(sdm_card))  # the rider walks away meanwhile
            await asyncio.sleep(1.3)
            mosquitto.start()
            assert await asyncio.to_thread(publisher.wait_connected, 10)
            fresh = publisher.submit(read(sdm_card))
            [tap] = listener.wait(1, timeout=10)
            assert await publisher.drain(5)
            status = publisher.status()
        assert tap.seq == fresh and len(listener.got) == 1
        assert (status["expired"], status["acked"]) == (1, 1)
    finally:
        listener.close()


async def test_a_full_queue_drops_its_oldest_tap(mosquitto: Mosquitto, sdm_card: Any) -> None:
    listener = Listener(mosquitto, persistent=True)
    try:
        async with TapPublisher(settings(mosquitto, max_queue=2)) as publisher:
            assert publisher.wait_connected(5)
            mosquitto.stop()
            seqs = [publisher.submit(read(sdm_card)) for _ in range(3)]
            mosquitto.start()
            taps = listener.wait(2, timeout=15)
            assert await publisher.drain(5)
            status = publisher.status()
        assert [t.seq for t in taps] == seqs[1:]
        assert (status["dropped"], status["acked"]) == (1, 2)
    finally:
        listener.close()


async def test_a_reader_account_cannot_publish_another_readers_taps(
    mosquitto_auth: Mosquitto, sdm_card: Any
) -> None:
    users = mosquitto_auth.users  # type: ignore[attr-defined]
    listener = Listener(mosquitto_auth, user="gateway", password=users["gateway"])
    r01 = ("reader-1-R01", users["reader-1-R01"])
    try:
        with Session(mosquitto_auth, *r01) as session:
            assert session.accepted
            assert session.publish(tap_topic("R02"), tap_bytes("R02", 1, "x", None)) == (
                NOT_AUTHORIZED
            )
            assert session.publish("dockgate/1/station/ST01/spot", b"{}") == NOT_AUTHORIZED
            assert session.publish(tap_topic("R01"), tap_bytes("R01", 1, "x", None)) == 0
        # the publisher logged in as R01 but naming R02: the broker refuses, it counts it
        impostor = settings(mosquitto_auth, "R02", username=r01[0], password=r01[1])
        async with TapPublisher(impostor) as publisher:
            assert publisher.wait_connected(5)
            publisher.submit(read(sdm_card))
            assert await publisher.drain(5)
            status = publisher.status()
        assert (status["refused"], status["acked"]) == (1, 0)
        await asyncio.sleep(0.3)
        assert [topic for topic, *_ in listener.got] == [tap_topic("R01")]
    finally:
        listener.close()


async def test_reader_publish_reads_a_tag_and_publishes_its_tap(
    mosquitto_auth: Mosquitto, tmp_path: Path
) -> None:
    users = mosquitto_auth.users  # type: ignore[attr-defined]
    password = users["reader-1-R01"]
    secret = tmp_path / "R01.secret"
    secret.write_text(password + "\n")
    listener = Listener(mosquitto_auth, user="gateway", password=users["gateway"])
    tag = card(meta_read_key=META, file_read_key=FILE)
    with NfcpyUdpTag() as radio:
        command = [sys.executable, "-m", "dockgate.gateway.cli", "reader", "publish"]
        command += ["--reader", "R01", "--broker", f"127.0.0.1:{mosquitto_auth.port}"]
        command += ["--driver", "nfcpy", "--path", radio.path, "--password-file", str(secret)]
        command += ["--count", "1", "--timeout", "40", "--json"]
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ
        )
        try:
            deadline = time.monotonic() + 30
            while not radio.awaiting_tag:  # nfcpy polls once the process is up
                assert proc.poll() is None and time.monotonic() < deadline, "reader never polled"
                await asyncio.sleep(0.05)
            radio.present(tag)
            [tap] = listener.wait(1, timeout=20)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            listener.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0] == {"reader": "R01", "seq": tap.seq, "error": None}
    assert lines[-1]["summary"]["acked"] == 1
    assert tap.uid == tag.uid.hex() and tap.url is not None
    assert make_verifier(tmp_path / "replay.db").verify_url(tap.url).valid
    assert password not in out.decode() + err.decode()
