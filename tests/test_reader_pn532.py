"""The PN532 driver end to end: pyserial, a real socat pty, the simulated PN532 and NTAG 424 DNA.

Taps go through ``dockgate.gateway.taps`` with the real SUN verifier, so a clone or a replay is
rejected for the reason the verifier gives, not by the test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockgate.drivers.readers.pn532 import Pn532Reader
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.sun import KeySetSettings, ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import TapHandler
from dockgate.sim.ntag424 import Ntag424Tag, card, clone_of, ring
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.transports.pn532_serial import Pn532Simulator

META, FILE = os.urandom(16), os.urandom(16)


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[TapHandler]:
    settings = SunSettings(
        key_sets={"default": KeySetSettings(meta_read_key=META, file_read_key=FILE)}
    )
    store = ReplayStore(tmp_path / "replay.db")
    try:
        yield TapHandler(SunVerifier(settings, store), window=0.0)
    finally:
        store.close()


@pytest.fixture
def sim(serial_pty: SocatPty) -> Iterator[Pn532Simulator]:
    with Pn532Simulator(serial_pty.device_path) as simulator:
        yield simulator


@pytest.fixture
async def reader(serial_pty: SocatPty, sim: Pn532Simulator) -> AsyncIterator[Pn532Reader]:
    async with Pn532Reader(str(serial_pty.host_path), reader_id="dock-1") as driver:
        yield driver


async def tap(reader: Pn532Reader, sim: Pn532Simulator, tag: Ntag424Tag) -> TapEvent:
    """Present ``tag``, wait for its event, take it away again and let the driver see that."""
    sim.present(tag)
    try:
        return await asyncio.wait_for(anext(aiter(reader.taps())), 10)
    finally:
        sim.remove()
        await asyncio.sleep(0.1)


def genuine_card() -> Ntag424Tag:
    return card(meta_read_key=META, file_read_key=FILE)


async def test_card_and_ring_are_read_and_verified(
    reader: Pn532Reader, sim: Pn532Simulator, handler: TapHandler
) -> None:
    the_card = genuine_card()
    the_ring = ring(meta_read_key=META, file_read_key=FILE)
    first = handler.handle(await tap(reader, sim, the_card))
    second = handler.handle(await tap(reader, sim, the_card))
    by_ring = handler.handle(await tap(reader, sim, the_ring))
    assert (first.accepted, first.read_ctr, first.uid) == (True, 1, the_card.uid.hex())
    assert (second.accepted, second.read_ctr) == (True, 2)
    assert by_ring.accepted and by_ring.record == "1044" and by_ring.uid == the_ring.uid.hex()
    assert by_ring.event.url is not None and "/play/1044@" in by_ring.event.url
    assert first.event.reader == "dock-1" and first.event.apdus >= 6
    assert first.event.presented_at <= first.event.read_at
    assert 0 < first.event.stack_seconds <= first.event.read_at - first.event.presented_at
    [status] = reader.status()
    assert (status.state, status.taps, status.errors) == ("up", 3, 0)


async def test_one_tap_left_on_the_antenna_is_one_event(
    reader: Pn532Reader, sim: Pn532Simulator
) -> None:
    sim.present(genuine_card())
    taps = aiter(reader.taps())
    first = await asyncio.wait_for(anext(taps), 10)
    assert first.error is None
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(taps), 0.5)
    assert sim.stats.commands[0x00] >= 3  # the driver kept testing presence meanwhile


async def test_removal_mid_read_is_a_counted_rejection(
    reader: Pn532Reader, sim: Pn532Simulator, handler: TapHandler
) -> None:
    tag = genuine_card()
    tag.faults.remove_after = 3
    verdict = handler.handle(await tap(reader, sim, tag))
    assert (verdict.accepted, verdict.reason) == (False, "removed")
    assert reader.status()[0].counters["read_removed"] == 1
    again = handler.handle(await tap(reader, sim, tag))  # the rider taps again
    assert again.accepted


async def test_clone_is_read_but_rejected(
    reader: Pn532Reader, sim: Pn532Simulator, handler: TapHandler
) -> None:
    genuine = genuine_card()
    assert handler.handle(await tap(reader, sim, genuine)).accepted
    verdict = handler.handle(await tap(reader, sim, clone_of(genuine)))
    assert verdict.event.error is None and verdict.event.url is not None
    assert not verdict.accepted and verdict.reason not in (None, "removed", "io")
    assert handler.counters[verdict.reason] == 1


async def test_replayed_message_is_rejected(
    reader: Pn532Reader, sim: Pn532Simulator, handler: TapHandler
) -> None:
    tag = genuine_card()
    assert handler.handle(await tap(reader, sim, tag)).accepted
    tag.faults.replay = True  # the tag serves its previous SUN message again
    verdict = handler.handle(await tap(reader, sim, tag))
    assert (verdict.accepted, verdict.reason) == (False, "replayed")


async def test_garbage_and_broken_checksums_are_counted_and_survived(
    reader: Pn532Reader, sim: Pn532Simulator, handler: TapHandler
) -> None:
    sim.send_garbage(b"\x42\x13\x37\x00\xff\x09\x00\x99")  # noise with a false start code
    sim.corrupt_next = 3
    verdict = handler.handle(await tap(reader, sim, genuine_card()))
    assert verdict.accepted
    counters = reader.status()[0].counters
    assert counters["bad_checksum"] == 3 and counters["nacks_sent"] == 3
    assert counters["garbage_bytes"] >= 5 and counters["bad_length"] >= 1


async def test_line_pulled_and_plugged_back_reconnects(
    reader: Pn532Reader, sim: Pn532Simulator, serial_pty: SocatPty, handler: TapHandler
) -> None:
    assert handler.handle(await tap(reader, sim, genuine_card())).accepted
    serial_pty.stop()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if reader.status()[0].state == "down":
            break
    status = reader.status()[0]
    assert status.state == "down" and status.errors >= 1 and status.last_error
    serial_pty.start()
    sim.ready.wait(5)
    verdict = handler.handle(await tap(reader, sim, genuine_card()))
    assert verdict.event.error is None
    status = reader.status()[0]
    assert status.state == "up" and status.reconnects == 1


async def test_missing_port_is_down_not_a_crash(tmp_path: Path) -> None:
    driver = Pn532Reader(str(tmp_path / "no-such-tty"), reconnect=Backoff(initial=0.01, cap=2.0))
    async with driver:
        await asyncio.sleep(0.2)
        [status] = driver.status()
        assert status.state == "down" and status.errors >= 2
        assert status.last_error is not None and "open failed" in status.last_error
