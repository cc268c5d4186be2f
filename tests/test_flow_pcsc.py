"""A simulated NTAG 424 DNA card at the real pcscd reader, through PcscDriver, TapHandler and
RideFlow: the spot opens over real MQTT and the trip starts when the vehicle leaves."""

# ruff: noqa: F811  (the shared `rig` fixture is imported from tests.test_flow)

from __future__ import annotations

import asyncio

from dockgate.drivers.readers.pcsc import PcscDriver
from dockgate.sim.ntag424 import card
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.transports import VpcdCard
from tests.test_flow import Rig, rig, until  # noqa: F401
from tests.test_taps import FILE, META


async def test_card_at_pcsc_reader_unlocks_and_starts_trip(
    rig: Rig, pcscd_service: PcscdService
) -> None:
    reader = pcscd_service.readers[0]
    flow = await rig.start_gateway()
    flow.readers[reader] = 1
    rig.consume()
    await flow.recover()
    st_a = await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    tag = card(meta_read_key=META, file_read_key=FILE)
    rig.store.upsert_rider(40, credit=500, first_purchase_done=True)
    product = rig.store.create_product("iso card")
    rig.store.create_record(product, uid=tag.uid.hex(), token_encryption="aes-128")
    rig.store.pair_product(product, 40)

    async with PcscDriver([reader]) as driver:
        vpcd = VpcdCard(tag, port=pcscd_service.port)
        vpcd.insert()
        try:
            event = await asyncio.wait_for(anext(driver.taps()), 6.0)
        finally:
            vpcd.remove()
    tap = rig.handler.handle(event)
    assert tap.accepted, tap.reason
    decision = await flow.on_tap(tap)
    assert (decision.status, decision.rider_id, decision.spot) == ("unlocked", 40, 1), decision
    trip_vehicle = await until(lambda: rig.store.vehicle(1)["trip_id"], what="trip started")
    assert rig.store.trip(trip_vehicle)["rider_id"] == 40
    assert st_a.counters.received["cmd-unlock-spot"] == 1
    assert rig.store.record(rig.store.records(product)[0]["id"])["scan_count"] == 1
