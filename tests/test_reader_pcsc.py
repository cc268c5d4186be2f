"""PC/SC driver end to end: simulated card and ring through vpcd, the real pcscd and pyscard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockgate.drivers.readers.pcsc import PcscDriver, pcsc_reader_names
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.taps import TapHandler
from dockgate.sim.ntag424 import Ntag424Tag, card, clone_of, ring
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.transports import VpcdCard
from tests.support.taps import CLONE_REASONS, FILE, META, make_verifier

TIMEOUT = 6.0


async def present(tag: Ntag424Tag, port: int, taps: AsyncIterator[TapEvent]) -> TapEvent:
    """Put the tag on the reader, wait for its tap event, take it away again."""
    vpcd = VpcdCard(tag, port=port)
    vpcd.insert()
    try:
        return await asyncio.wait_for(anext(taps), TIMEOUT)
    finally:
        vpcd.remove()
        await asyncio.sleep(1.0)  # pcscd polls vpcd every ~0.44 s: let it see the removal


@pytest.fixture
async def driver(pcscd_service: PcscdService) -> AsyncIterator[PcscDriver]:
    async with PcscDriver([pcscd_service.readers[0]]) as drv:
        yield drv


def test_reader_list_shows_vpcd_readers(pcscd_service: PcscdService) -> None:
    assert set(pcscd_service.readers) <= set(pcsc_reader_names())


async def test_card_and_ring_accepted(
    pcscd_service: PcscdService, driver: PcscDriver, tmp_path: Path
) -> None:
    handler = TapHandler(make_verifier(tmp_path / "replay.db"))
    taps = driver.taps()
    for tag in (
        card(meta_read_key=META, file_read_key=FILE),
        ring(meta_read_key=META, file_read_key=FILE),
    ):
        event = await present(tag, pcscd_service.port, taps)
        assert event.uid == tag.uid and event.error is None and event.apdus == 7
        assert 0 < event.stack_seconds < event.read_at - event.presented_at + 1e-3
        tap = handler.handle(event)
        assert tap.accepted, tap.reason
        assert tap.read_ctr == 1
    assert handler.counters["accepted"] == 2
    (status,) = driver.status()
    assert status.state == "up" and status.taps == 2 and status.errors == 0


async def test_removed_mid_read_is_counted_then_next_tap_works(
    pcscd_service: PcscdService, driver: PcscDriver, tmp_path: Path
) -> None:
    handler = TapHandler(make_verifier(tmp_path / "replay.db"))
    tag = card(meta_read_key=META, file_read_key=FILE)
    taps = driver.taps()
    tag.faults.remove_after = 4  # FF CA, SELECT app, SELECT CC, READ CC, then gone
    event = await present(tag, pcscd_service.port, taps)
    tap = handler.handle(event)
    assert event.error == "removed" and not tap.accepted and tap.reason == "removed"
    assert driver.status()[0].counters == {"removed": 1}
    again = handler.handle(await present(tag, pcscd_service.port, taps))
    assert again.accepted


async def test_clone_and_replay_are_rejected(
    pcscd_service: PcscdService, driver: PcscDriver, tmp_path: Path
) -> None:
    handler = TapHandler(make_verifier(tmp_path / "replay.db"), window=0.05)
    genuine = ring(meta_read_key=META, file_read_key=FILE)
    taps = driver.taps()
    assert handler.handle(await present(genuine, pcscd_service.port, taps)).accepted
    fake = handler.handle(await present(clone_of(genuine), pcscd_service.port, taps))
    assert not fake.accepted and fake.reason in CLONE_REASONS
    genuine.faults.replay = True
    replay = handler.handle(await present(genuine, pcscd_service.port, taps))
    assert not replay.accepted and replay.reason == "replayed" and not replay.duplicate
    assert handler.counters["replayed"] == 1


async def test_pcscd_restart_reconnects(
    pcscd_service: PcscdService, driver: PcscDriver, tmp_path: Path
) -> None:
    if not pcscd_service.dockgate_started:
        pytest.fail("this test restarts pcscd, so it needs one dockgate started (not a stock one)")
    handler = TapHandler(make_verifier(tmp_path / "replay.db"))
    tag = card(meta_read_key=META, file_read_key=FILE)
    taps = driver.taps()
    assert handler.handle(await present(tag, pcscd_service.port, taps)).accepted
    await asyncio.to_thread(pcscd_service.restart, 0.8)
    for _ in range(60):
        (status,) = driver.status()
        if status.state == "up" and status.reconnects >= 1:
            break
        await asyncio.sleep(0.1)
    assert status.state == "up" and status.reconnects >= 1, status
    assert handler.handle(await present(tag, pcscd_service.port, taps)).accepted
