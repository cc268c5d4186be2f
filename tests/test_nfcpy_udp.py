"""The nfcpy ``udp:`` radio link: nfcpy's own frontend and Type 4 tag code read the sim tag."""

from __future__ import annotations

import binascii
import os
import socket
from collections.abc import Iterator

import ndef
import nfc
import nfc.clf
import nfc.tag.tt4
import pytest

from dockgate.sim.ntag424 import Ntag424Tag, StaticNdef, card, ring
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag, cascade_levels

META, FILE = os.urandom(16), os.urandom(16)


@pytest.fixture
def radio() -> Iterator[NfcpyUdpTag]:
    with NfcpyUdpTag() as server:
        yield server


@pytest.fixture
def clf(radio: NfcpyUdpTag) -> Iterator[nfc.ContactlessFrontend]:
    frontend = nfc.ContactlessFrontend(radio.path)
    try:
        yield frontend
    finally:
        frontend.close()


def test_nfcpy_connect_reads_card_and_ring(
    radio: NfcpyUdpTag, clf: nfc.ContactlessFrontend
) -> None:
    for tag in (card(meta_read_key=META, file_read_key=FILE), ring()):
        radio.present(tag)
        seen: list[nfc.tag.Tag] = []
        records: list[ndef.Record] = []

        def on_connect(
            found: nfc.tag.Tag,
            records: list[ndef.Record] = records,
            seen: list[nfc.tag.Tag] = seen,
        ) -> bool:
            seen.append(found)
            records.extend(found.ndef.records)
            return False  # do not wait for removal

        assert clf.connect(rdwr={"on-connect": on_connect, "iterations": 3, "interval": 0.05})
        [found] = seen
        assert isinstance(found, nfc.tag.tt4.Type4ATag)
        assert found.identifier == tag.uid
        [record] = records
        assert isinstance(record, ndef.UriRecord)
        assert record.iri.startswith(("https://tap.dockgate.example/t?", "https://api.senzu.app"))
        radio.remove()
    assert radio.stats.apdus >= 12


def test_activation_data_is_the_ntag424s(radio: NfcpyUdpTag, clf: nfc.ContactlessFrontend) -> None:
    tag = card(meta_read_key=META, file_read_key=FILE)
    radio.present(tag)
    target = clf.sense(nfc.clf.RemoteTarget("106A"))
    assert target is not None
    assert (bytes(target.sens_res), bytes(target.sel_res)) == (b"\x44\x03", b"\x20")
    assert bytes(target.sdd_res) == tag.uid
    found = nfc.tag.activate(clf, target)
    assert found is not None and found._dep.miu == 125  # FSCI 7 in the ATS: 128-byte frames
    assert found.is_present
    radio.remove()
    assert not found.is_present


def test_no_tag_no_answer(radio: NfcpyUdpTag, clf: nfc.ContactlessFrontend) -> None:
    assert clf.sense(nfc.clf.RemoteTarget("106A")) is None
    assert radio.stats.ignored >= 1


def test_tag_leaving_mid_read_breaks_nfcpys_read(
    radio: NfcpyUdpTag, clf: nfc.ContactlessFrontend
) -> None:
    tag = card(meta_read_key=META, file_read_key=FILE)
    tag.faults.remove_after = 3
    radio.present(tag)
    found = nfc.tag.activate(clf, clf.sense(nfc.clf.RemoteTarget("106A")))
    assert found.ndef is None  # nfcpy gives up after its ISO-DEP retries
    assert radio.tag is None


class RawReader:
    """A reader speaking nfcpy's datagram format by hand, for the corners nfcpy never visits."""

    def __init__(self, radio: NfcpyUdpTag) -> None:
        self.addr = (radio.host, radio.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)

    def send(self, frame: bytes, expect: bool = True) -> bytes | None:
        self.sock.sendto(b"106A " + binascii.hexlify(frame), self.addr)
        try:
            data, _ = self.sock.recvfrom(2048)
        except TimeoutError:
            assert not expect, f"no answer to {frame.hex()}"
            return None
        assert expect, f"unexpected answer to {frame.hex()}"
        brty, payload = data.split()
        assert brty == b"106A"
        return binascii.unhexlify(payload)

    def activate(self, tag: Ntag424Tag, rats: bytes = b"\xe0\x80") -> None:
        assert self.send(b"\x26") == tag.atqa
        for level, (code, answer) in enumerate(
            zip((0x93, 0x95), cascade_levels(tag.uid), strict=True)
        ):
            assert self.send(bytes((code, 0x20))) == answer
            sak = self.send(bytes((code, 0x70)) + answer)
            assert sak == (b"\x04" if level == 0 else b"\x20")
        assert self.send(rats) == tag.ats


def test_chaining_both_ways_and_block_rules(radio: NfcpyUdpTag) -> None:
    url = "https://example.com/" + "x" * 180
    tag = Ntag424Tag(bytes.fromhex("04112233445566"), StaticNdef(url))
    radio.present(tag)
    raw = RawReader(radio)
    raw.activate(tag, rats=b"\xe0\x50")  # FSD 64: the answers must be chained
    select = b"\x00\xa4\x04\x00\x07\xd2\x76\x00\x00\x85\x01\x01\x00"
    # Command chaining: the PICC acknowledges the first part with R(ACK) carrying block 0.
    assert raw.send(b"\x12" + select[:6]) == b"\xa2"
    assert raw.send(b"\x03" + select[6:]) == b"\x03\x90\x00"
    assert raw.send(b"\x02\x00\xa4\x00\x0c\x02\xe1\x04") == b"\x02\x90\x00"
    answer = bytearray()
    block = raw.send(b"\x03\x00\xb0\x00\x00\xc0")  # READ BINARY 192 bytes
    pni = 1
    while True:
        assert block is not None and block[0] & 0x01 == pni
        answer += block[1:]
        if not block[0] & 0x10:
            break
        assert len(block) == 64 - 2  # FSD minus the CRC the air frame would carry
        pni ^= 1
        block = raw.send(bytes((0xA2 | pni,)))
    assert answer[-2:] == b"\x90\x00" and len(answer) == 194
    # R(NAK) with the current block number: the last block again (a retransmission).
    assert raw.send(bytes((0xB2 | pni,))) == bytes(block)
    # R(NAK) with the other number (nfcpy's presence check): R(ACK).
    assert raw.send(bytes((0xB2 | pni ^ 1,))) == bytes((0xA2 | pni,))
    assert raw.send(b"\xc2") == b"\xc2"  # S(DESELECT): the tag halts
    raw.send(b"\x26", expect=False)  # REQA is ignored in HALT ...
    assert raw.send(b"\x52") == tag.atqa  # ... WUPA wakes it


def test_hostile_datagrams_are_ignored(radio: NfcpyUdpTag) -> None:
    tag = Ntag424Tag(bytes.fromhex("04112233445566"), StaticNdef("https://example.com/"))
    radio.present(tag)
    raw = RawReader(radio)
    for junk in (b"", b"106A", b"106A zz", b"106A 123", b"212F 0600ffff0100", b"\xff" * 900):
        raw.sock.sendto(junk, raw.addr)
    raw.send(b"\x93\x70" + b"\x00" * 5, expect=False)  # SELECT before REQA
    raw.activate(tag)
    raw.send(b"\x06\x00", expect=False)  # I-block with NAD: unsupported, silence
    raw.send(b"\xf2\x01", expect=False)  # S(WTX) from a reader makes no sense
    assert raw.send(b"\x02\x00\xa4\x04\x00\x07\xd2\x76\x00\x00\x85\x01\x01\x00") == b"\x02\x90\x00"
    assert radio.stats.malformed >= 3
