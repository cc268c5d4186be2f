"""The vpcd transport: the simulated tag answers the real pcscd through vsmartcard-vpcd."""

from __future__ import annotations

import time

from smartcard.System import readers

from dockgate.sim.ntag424 import CARD_UID, Ntag424Tag, StaticNdef
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.transports import VpcdCard


def _reader(service: PcscdService, index: int):
    name = service.readers[index]
    return next(r for r in readers() if str(r) == name)


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _card_present(reader) -> bool:
    conn = reader.createConnection()
    try:
        conn.connect()
    except Exception:
        return False
    conn.disconnect()
    return True


def test_atr_uid_and_get_version_through_pcscd(pcscd_service: PcscdService) -> None:
    tag = Ntag424Tag(CARD_UID, StaticNdef("https://example.com/v"))
    reader = _reader(pcscd_service, 1)
    with VpcdCard(tag, port=pcscd_service.port_of(str(reader))) as card:
        assert _wait(lambda: _card_present(reader))
        conn = reader.createConnection()
        conn.connect()
        try:
            assert bytes(conn.getATR()) == tag.atr
            data, sw1, sw2 = conn.transmit(list(bytes.fromhex("FFCA000000")))
            assert bytes(data) == CARD_UID and (sw1, sw2) == (0x90, 0x00)
            data, sw1, sw2 = conn.transmit(list(bytes.fromhex("9060000000")))
            assert bytes(data) == bytes.fromhex("04040230001105") and (sw1, sw2) == (0x91, 0xAF)
            data, sw1, sw2 = conn.transmit(list(bytes.fromhex("00C0000000")))
            assert (sw1, sw2) == (0x6D, 0x00)
        finally:
            conn.disconnect()
        assert card.apdus == 3
    assert _wait(lambda: not _card_present(reader))


def test_insert_refused_when_nothing_listens() -> None:
    from dockgate.sim.services.process import free_port

    card = VpcdCard(Ntag424Tag(CARD_UID, StaticNdef("https://e.x/")), port=free_port())
    try:
        card.insert(timeout=1.0)
    except OSError:
        assert not card.present
    else:  # pragma: no cover - a listener appeared on a port we just found free
        card.remove()
        raise AssertionError("insert should have failed")
