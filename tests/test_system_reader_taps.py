"""Taps through the broker: `dockgate run` as a process verifies what readers publish.

A private Mosquitto with accounts and the generated ACL, the daemon logged in as the gateway
with two ``broker`` readers (``R01``, ``R02``) at station ``ST01``, a station and two scooter
simulators, and each reader played by an independent paho client logged in as that reader's
account. A valid tap unlocks a spot; a clone's or a replayed tap is refused and the station
told; a malformed tap is refused, counted and logged while the daemon carries on; a reader
cannot publish another reader's taps (the broker refuses it); and a tap delivered again after
the daemon was killed and restarted (a failover's redelivery) is applied once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from dockgate.sim.device_base import Broker
from dockgate.sim.ntag424 import card, clone_of
from dockgate.sim.reader import SimReaderController
from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.broker_login import NOT_AUTHORIZED, Session
from tests.support.reader_taps import tap_bytes, tap_topic
from tests.support.system_harness import (
    Backend,
    DaemonProcess,
    ReaderConf,
    RecordingScooter,
    RecordingStation,
    StationConf,
    until,
)
from tests.support.taps import CLONE_REASONS, FILE, META

pytestmark = pytest.mark.timeout(120)

SITE = (45.4642, 9.2015)
SERIALS = ("SXB001", "SXB002")  # accounts of the mosquitto_auth fleet


@dataclass
class Site:
    broker: Mosquitto
    daemon: DaemonProcess
    backend: Backend
    station: RecordingStation
    tag: Any  # the rider's card (an Ntag424Tag; its SUN messages: ``tag.source``)

    def reader(self, reader_id: str) -> Session:
        """An independent MQTT client logged in as the reader's own account."""
        user = f"reader-1-{reader_id}"
        session = Session(self.broker, user, self.broker.users[user])  # type: ignore[attr-defined]
        assert session.accepted
        return session

    def unlocks(self) -> list[str]:
        rows = self.daemon.query("SELECT state FROM command_journal WHERE command='unlock-spot'")
        return [r[0] for r in rows]

    def executed_unlocks(self) -> int:
        return sum(1 for c in self.station.executed_cmds.values() if c == "unlock-spot")

    def events(self, kind: str) -> list[dict[str, Any]]:
        self.backend.drain()
        return self.backend.of_kind(kind)

    def refused_at_station(self) -> list[tuple[str | None, str, str | None]]:
        return [(f.reader, f.result, f.reason) for f in self.station.feedback]


@pytest.fixture
async def site(tmp_path: Path, mosquitto_auth: Mosquitto) -> AsyncIterator[Site]:
    users = mosquitto_auth.users  # type: ignore[attr-defined]
    daemon = DaemonProcess(
        tmp_path,
        mosquitto_auth.port,
        stations=[StationConf(1, "ST01", *SITE, spots=4)],
        readers=[ReaderConf("R01", 1, driver="broker"), ReaderConf("R02", 1, driver="broker")],
        extra={"mqtt": {"username": "gateway", "password": users["gateway"]}},
    )
    broker = Broker(mosquitto_auth.host, mosquitto_auth.port, users)
    station = RecordingStation("ST01", broker, spots=4, seed=1)
    scooters = [RecordingScooter(s, broker, start=SITE, battery=90) for s in SERIALS]
    tag = card(meta_read_key=META, file_read_key=FILE)
    try:
        daemon.start()
        daemon.seed_rider(7, tag.uid.hex())
        for scooter in scooters:
            await scooter.start()
        await until(lambda: len(daemon.get("/api/v1/vehicles")) == 2, what="vehicles learned")
        await station.start()
        for spot, serial in enumerate(SERIALS, start=1):
            station.dock(spot, serial)
        await until(
            lambda: sum(v.get("spot_id") is not None for v in daemon.get("/api/v1/vehicles")) == 2,
            what="vehicles docked",
        )
        yield Site(mosquitto_auth, daemon, Backend(daemon), station, tag)
    finally:
        await station.stop()
        for scooter in scooters:
            await scooter.stop()
        daemon.close()


async def test_a_valid_tap_via_the_broker_unlocks_a_spot_and_starts_a_trip(site: Site) -> None:
    with site.reader("R01") as r01:
        assert (
            r01.publish(
                tap_topic("R01"), tap_bytes("R01", 1, site.tag.source.next_url(), site.tag.uid)
            )
            == 0
        )
    await until(lambda: site.executed_unlocks() == 1, what="the station unlocked a spot")
    await until(
        lambda: site.daemon.scalar("SELECT count(*) FROM trips WHERE status='running'") == 1,
        what="the rider took the vehicle: a trip",
    )
    [accepted] = site.events("tap.accepted")
    assert (accepted["reader"], accepted["rider_id"], accepted["station_id"]) == ("R01", 7, 1)
    assert site.refused_at_station() == [] and site.events("tap.refused") == []
    assert site.daemon.health()["devices"]["inbound"].get("failed", 0) == 0


async def test_a_simulated_station_reader_taps_through_the_broker(site: Site) -> None:
    users = site.broker.users  # type: ignore[attr-defined]
    broker = Broker(site.broker.host, site.broker.port, users)
    async with SimReaderController("R02", broker) as reader:  # its own account, reader-1-R02
        reader.fail("removed")  # the card left the field mid-read
        reader.present(site.tag.source)
        assert await reader.settled()
        status = reader.status()
    await until(lambda: site.executed_unlocks() == 1, what="the station unlocked a spot")
    await until(lambda: len(site.station.feedback) == 1, what="the failed read shown")
    assert site.refused_at_station() == [("R02", "refused", "invalid_tag")]
    assert [e["reader"] for e in site.events("tap.accepted")] == ["R02"]
    assert (status["acked"], status["refused"]) == (2, 0)


async def test_a_clone_and_a_replayed_tap_are_refused_and_the_station_told(site: Site) -> None:
    genuine = site.tag.source.next_url()
    fake = clone_of(site.tag).source.next_url()  # the card's UID, keys the attacker made up
    with site.reader("R01") as r01, site.reader("R02") as r02:
        assert r01.publish(tap_topic("R01"), tap_bytes("R01", 1, fake, site.tag.uid)) == 0
        assert r01.publish(tap_topic("R01"), tap_bytes("R01", 2, genuine, site.tag.uid)) == 0
        await until(lambda: site.executed_unlocks() == 1, what="the genuine tap unlocked")
        # the genuine message copied and sent again, from another reader (a new tap to it)
        assert r02.publish(tap_topic("R02"), tap_bytes("R02", 1, genuine, site.tag.uid)) == 0
    await until(lambda: len(site.station.feedback) == 2, what="both refusals shown")
    assert site.refused_at_station() == [
        ("R01", "refused", "invalid_tag"),
        ("R02", "refused", "invalid_tag"),
    ]
    refused = [(e["reader"], e["reason"], e["detail"]) for e in site.events("tap.refused")]
    assert refused[0][:2] == ("R01", "invalid_tag") and refused[0][2] in CLONE_REASONS
    assert refused[1] == ("R02", "invalid_tag", "replayed")
    await until(lambda: site.unlocks() == ["acked"], what="the one unlock acknowledged")
    assert site.executed_unlocks() == 1


async def test_a_malformed_tap_is_refused_counted_and_logged_and_the_daemon_goes_on(
    site: Site,
) -> None:
    url, uid = site.tag.source.next_url(), site.tag.uid
    bad = {
        "bad-json": b'{"v":1,"ts":',
        "schema": tap_bytes("R01", 1, url, uid, replace={"uid": "not-hex"}),
        "device-mismatch": tap_bytes("R02", 1, url, uid),  # on R01's topic
    }
    with site.reader("R01") as r01:
        for payload in bad.values():
            assert r01.publish(tap_topic("R01"), payload) == 0  # the broker takes it
        assert r01.publish(tap_topic("R01"), tap_bytes("R01", 2, url, uid, extra=1)) == 0
        await until(lambda: site.daemon.health()["broker"]["rejected_total"] == 4, what="4 refused")
        rejected = site.daemon.health()["broker"]["rejected"]
        assert rejected == {"bad-json": 1, "schema": 2, "device-mismatch": 1}
        assert r01.publish(tap_topic("R01"), tap_bytes("R01", 3, url, uid)) == 0
    await until(lambda: site.executed_unlocks() == 1, what="a valid tap still unlocks")
    health = site.daemon.health()
    assert site.daemon.alive and all(p["state"] == "running" for p in health["parts"])
    log = site.daemon.log_tail(20_000)
    assert log.count("rejected message on") == 4 and "reader/R01/tap" in log
    assert site.events("tap.refused") == []  # refused by the protocol, never a tap


async def test_a_reader_cannot_publish_another_readers_taps(site: Site) -> None:
    before = site.daemon.health()["broker"]["received"]
    with site.reader("R01") as r01:
        spoofed = tap_bytes("R02", 1, site.tag.source.next_url(), site.tag.uid)
        assert r01.publish(tap_topic("R02"), spoofed) == NOT_AUTHORIZED
        assert r01.publish("dockgate/1/station/ST01/spot", b"{}") == NOT_AUTHORIZED
    await asyncio.sleep(0.5)
    assert site.daemon.health()["broker"]["received"] == before  # never reached the gateway
    assert site.unlocks() == [] and site.events("tap.refused") == []


async def test_a_tap_redelivered_after_a_failover_is_applied_once(site: Site) -> None:
    payload = tap_bytes("R01", 41, site.tag.source.next_url(), site.tag.uid)
    with site.reader("R01") as r01:
        assert r01.publish(tap_topic("R01"), payload) == 0
        await until(lambda: site.unlocks() == ["acked"], what="the unlock acknowledged")
    site.daemon.restart()  # SIGKILL, then a new process on the same state
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(payload).items()))))
    with site.reader("R01") as r01:
        assert r01.publish(tap_topic("R01"), payload) == 0  # the broker's redelivery
        assert r01.publish(tap_topic("R01"), reordered) == 0  # the reader sending it again
    await until(
        lambda: site.daemon.health()["devices"]["inbound"].get("duplicate") == 2,
        what="both recognised",
    )
    await asyncio.sleep(0.5)
    assert site.unlocks() == ["acked"] and site.executed_unlocks() == 1
    assert len(site.events("tap.accepted")) == 1
    assert site.events("tap.refused") == [] and site.refused_at_station() == []
