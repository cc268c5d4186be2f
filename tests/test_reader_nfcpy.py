"""The nfcpy driver end to end: nfcpy's ContactlessFrontend on ``udp:`` reads the simulated tag.

Taps go through ``dockgate.gateway.taps`` with the real SUN verifier.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockgate.drivers.readers.nfcpy_reader import NfcpyReader
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.sun import KeySetSettings, ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import TapHandler
from dockgate.sim.ntag424 import Ntag424Tag, card, clone_of, ring
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag

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
def radio() -> Iterator[NfcpyUdpTag]:
    with NfcpyUdpTag() as server:
        yield server


@pytest.fixture
async def reader(radio: NfcpyUdpTag) -> AsyncIterator[NfcpyReader]:
    async with NfcpyReader(radio.path, reader_id="dock-2") as driver:
        yield driver


async def tap(reader: NfcpyReader, radio: NfcpyUdpTag, tag: Ntag424Tag) -> TapEvent:
    """Present ``tag``, wait for its event, take it away and let the driver notice."""
    radio.present(tag)
    try:
        return await asyncio.wait_for(anext(aiter(reader.taps())), 10)
    finally:
        radio.remove()
        await asyncio.sleep(0.15)


def genuine_card() -> Ntag424Tag:
    return card(meta_read_key=META, file_read_key=FILE)


async def test_card_and_ring_are_read_and_verified(
    reader: NfcpyReader, radio: NfcpyUdpTag, handler: TapHandler
) -> None:
    the_card = genuine_card()
    the_ring = ring(meta_read_key=META, file_read_key=FILE)
    first = handler.handle(await tap(reader, radio, the_card))
    second = handler.handle(await tap(reader, radio, the_card))
    by_ring = handler.handle(await tap(reader, radio, the_ring))
    assert (first.accepted, first.read_ctr, first.uid) == (True, 1, the_card.uid.hex())
    assert (second.accepted, second.read_ctr) == (True, 2)
    assert by_ring.accepted and by_ring.record == "1044"
    assert first.event.uid == the_card.uid and first.event.reader == "dock-2"
    assert 0 < first.event.stack_seconds <= first.event.read_at - first.event.presented_at
    [status] = reader.status()
    assert (status.state, status.taps, status.errors) == ("up", 3, 0)


async def test_one_tap_left_on_the_antenna_is_one_event(
    reader: NfcpyReader, radio: NfcpyUdpTag
) -> None:
    radio.present(genuine_card())
    taps = aiter(reader.taps())
    assert (await asyncio.wait_for(anext(taps), 10)).error is None
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(taps), 0.5)


async def test_removal_mid_read_is_a_counted_rejection(
    reader: NfcpyReader, radio: NfcpyUdpTag, handler: TapHandler
) -> None:
    tag = genuine_card()
    tag.faults.remove_after = 4
    verdict = handler.handle(await tap(reader, radio, tag))
    assert (verdict.accepted, verdict.reason) == (False, "removed")
    assert reader.status()[0].counters["read_removed"] == 1
    assert handler.handle(await tap(reader, radio, tag)).accepted


async def test_clone_is_read_but_rejected(
    reader: NfcpyReader, radio: NfcpyUdpTag, handler: TapHandler
) -> None:
    genuine = genuine_card()
    assert handler.handle(await tap(reader, radio, genuine)).accepted
    verdict = handler.handle(await tap(reader, radio, clone_of(genuine)))
    assert verdict.event.error is None and verdict.event.url is not None
    assert not verdict.accepted and verdict.reason not in (None, "removed", "io")


async def test_replayed_message_is_rejected(
    reader: NfcpyReader, radio: NfcpyUdpTag, handler: TapHandler
) -> None:
    tag = genuine_card()
    assert handler.handle(await tap(reader, radio, tag)).accepted
    tag.faults.replay = True
    verdict = handler.handle(await tap(reader, radio, tag))
    assert (verdict.accepted, verdict.reason) == (False, "replayed")


async def test_radio_gone_and_back_no_hang(
    reader: NfcpyReader, radio: NfcpyUdpTag, handler: TapHandler
) -> None:
    assert handler.handle(await tap(reader, radio, genuine_card())).accepted
    radio.stop()  # the radio link vanishes: nothing answers any more
    await asyncio.sleep(1.2)
    [status] = reader.status()  # nfcpy udp cannot tell a silent radio from an empty one
    assert status.state == "up" and status.taps == 1  # still watching, nothing invented
    radio.start()  # back on the same port
    verdict = handler.handle(await tap(reader, radio, genuine_card()))
    assert verdict.event.error is None


async def test_unopenable_reader_is_down_and_retried() -> None:
    driver = NfcpyReader("usb:ffff:ffff", reconnect=Backoff(initial=0.01, cap=0.05))
    async with driver:
        await asyncio.sleep(0.3)
        [status] = driver.status()
        assert status.state == "down" and status.errors >= 2
        assert status.last_error is not None and "open failed" in status.last_error
