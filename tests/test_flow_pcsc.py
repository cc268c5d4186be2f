"""A simulated NTAG 424 DNA card at the real pcscd reader, through PcscDriver, TapHandler and
RideFlow: the spot's unlock goes to the flow's command port (the fake one of
``tests/plugins/flow.py``) and the trip starts when the vehicle leaves."""

from __future__ import annotations

import asyncio

from dockgate.drivers.readers.pcsc import PcscDriver
from dockgate.sim.ntag424 import card
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.transports import VpcdCard
from tests.plugins.flow import FlowRig
from tests.support.taps import FILE, META


async def test_card_at_pcsc_reader_unlocks_and_starts_trip(
    rig: FlowRig, pcscd_service: PcscdService
) -> None:
    reader = pcscd_service.readers[0]
    flow = await rig.start_gateway()
    flow.readers[reader] = 1
    await flow.recover()
    tag = card(meta_read_key=META, file_read_key=FILE)
    rig.store.riders.upsert(40, credit=500, first_purchase_done=True)
    product = rig.store.products.create("iso card")
    rig.store.records.create(product, uid=tag.uid.hex(), token_encryption="aes-128")
    rig.store.products.pair(product, 40)

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
    assert len(rig.port.commands("unlock-spot", "ST01")) == 1
    await rig.undock("ST01", 1, "SXB001")
    trip_vehicle = rig.store.vehicles.get(1).trip_id
    assert trip_vehicle is not None
    assert rig.store.trips.get(trip_vehicle).rider_id == 40
    await flow.drain()
    assert rig.store.records.get(rig.store.records.all(product)[0].id).scan_count == 1
