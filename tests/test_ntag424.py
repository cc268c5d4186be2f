"""The simulated NTAG 424 DNA: file system, status words, GetVersion, counter, faults."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.drivers.readers.ndef_type4 import read_ndef_url
from dockgate.sim.ntag424 import (
    CARD_UID,
    Faults,
    Ntag424Tag,
    StaticNdef,
    TagRemovedError,
    card,
    clone_of,
    ring,
)
from tests.support.taps import CLONE_REASONS, FILE, META, make_verifier

SELECT_APP = bytes.fromhex("00A4040007D276000085010100")
SELECT_CC = bytes.fromhex("00A4000C02E103")
SELECT_NDEF = bytes.fromhex("00A4000C02E104")


@pytest.fixture
def tag() -> Ntag424Tag:
    return Ntag424Tag(CARD_UID, StaticNdef("https://example.com/plain"))


def sw(response: bytes) -> str:
    return response[-2:].hex().upper()


def test_select_and_read_capability_container(tag: Ntag424Tag) -> None:
    assert sw(tag.transceive(SELECT_APP)) == "9000"
    assert sw(tag.transceive(SELECT_CC)) == "9000"
    cc = tag.transceive(bytes.fromhex("00B000000F"))
    assert cc.hex().upper() == "001720010000FF0406E10401000000" + "9000"
    assert len(tag.transceive(bytes.fromhex("00B0000000"))) == 32 + 2  # Le 00: up to 256


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        ("00A4040007D2760000850102", "6A82"),  # another AID
        ("00A4000C02E104", "6A82"),  # an EF before the application
        ("00A4080C02E104", "6A86"),  # P1 not supported
        ("00A4040000", "6700"),  # SELECT by name without a name
        ("00A4000C03E10400", "6700"),  # FID of 3 bytes
        ("00B0000002", "6986"),  # READ BINARY with no EF selected
        ("00B0", "6700"),  # too short
        ("00B000000202", "6700"),  # data in READ BINARY
        ("00C0000000", "6D00"),  # unknown INS
        ("80A4040007D2760000850101", "6E00"),  # unknown CLA
        ("01A4040007D2760000850101", "6881"),  # logical channel
        ("FFCA050000", "6A81"),  # GET DATA of an unknown kind
        ("90AF000000", "911C"),  # continuation with nothing pending
        ("9060010000", "917E"),  # wrapped native with P1 set
        ("905A000000", "911C"),  # a native command the model does not know
    ],
)
def test_wrong_commands_get_the_right_status(tag: Ntag424Tag, apdu: str, expected: str) -> None:
    assert sw(tag.transceive(bytes.fromhex(apdu))) == expected


def test_offset_and_access_errors(tag: Ntag424Tag) -> None:
    tag.transceive(SELECT_APP)
    tag.transceive(SELECT_CC)
    assert sw(tag.transceive(bytes.fromhex("00B0002002"))) == "6B00"  # beyond 32 bytes
    short = tag.transceive(bytes.fromhex("00B0001E08"))  # 2 bytes left
    assert len(short) == 4 and sw(short) == "6282"
    assert sw(tag.transceive(bytes.fromhex("00A4000C02E105"))) == "9000"
    assert sw(tag.transceive(bytes.fromhex("00B0000010"))) == "6982"  # key 2 needed
    assert sw(tag.transceive(bytes.fromhex("00D6000001AA"))) == "6982"  # write-protected


def test_short_file_id_read(tag: Ntag424Tag) -> None:
    tag.transceive(SELECT_APP)
    assert tag.transceive(bytes.fromhex("00B081000F"))[:2] == b"\x00\x17"  # SFI 1 = CC
    assert sw(tag.transceive(bytes.fromhex("00B0840002"))) == "6A82"


def test_get_version_wrapped_and_native(tag: Ntag424Tag) -> None:
    first = tag.transceive(bytes.fromhex("9060000000"))
    assert first.hex().upper() == "0404023000110591AF"
    second = tag.transceive(bytes.fromhex("90AF000000"))
    assert second.hex().upper() == "0404020102110591AF"
    third = tag.transceive(bytes.fromhex("90AF000000"))
    assert third[:7] == CARD_UID and third[-2:] == b"\x91\x00" and len(third) == 16
    native = tag.transceive(b"\x60")
    assert native[0] == 0xAF and native[1:] == bytes.fromhex("04040230001105")


def test_get_uid_and_activation_data(tag: Ntag424Tag) -> None:
    assert tag.transceive(bytes.fromhex("FFCA000000")) == CARD_UID + b"\x90\x00"
    assert tag.atqa == bytes.fromhex("4403") and tag.sak == b"\x20"
    assert tag.ats[0] == len(tag.ats) and tag.atr.hex().upper() == "3B8180018080"


def test_counter_once_per_session_and_consistent_chunks(tmp_path: Path) -> None:
    t = card(meta_read_key=META, file_read_key=FILE)
    verifier = make_verifier(tmp_path / "replay.db")
    small = read_ndef_url(t.transceive, max_le=13)  # many chunks in one session
    assert small.error is None and small.apdus > 10
    assert t.source.read_ctr == 1
    result = verifier.verify_url(small.url, reader_uid=CARD_UID)
    assert result.valid and result.read_ctr == 1
    again = read_ndef_url(t.transceive)
    assert t.source.read_ctr == 2 and again.url != small.url
    assert verifier.verify_url(again.url).read_ctr == 2


def test_ring_preset_reads_as_platform_play(tmp_path: Path) -> None:
    r = ring(meta_read_key=META, file_read_key=FILE)
    read = read_ndef_url(r.transceive)
    assert read.url.startswith("https://api.senzu.app/play/1044@")
    result = make_verifier(tmp_path / "r.db").verify_url(read.url, reader_uid=r.uid)
    assert result.valid and result.record == "1044"


def test_removed_mid_read_then_works_after_reset() -> None:
    t = card(meta_read_key=META, file_read_key=FILE)
    t.faults.remove_after = 4
    with pytest.raises(TagRemovedError):
        for apdu in (SELECT_APP, SELECT_CC, SELECT_CC, SELECT_NDEF, SELECT_NDEF):
            t.transceive(apdu)
    with pytest.raises(TagRemovedError):
        t.transceive(SELECT_APP)  # still out of the field
    t.reset()
    assert read_ndef_url(t.transceive).error is None


def test_corrupted_bytes_fail_verification(tmp_path: Path) -> None:
    t = card(meta_read_key=META, file_read_key=FILE)
    t.faults = Faults(corrupt_at=60)  # inside the hex of the URL
    read = read_ndef_url(t.transceive)
    verdict = make_verifier(tmp_path / "c.db").verify_url(read.url or "")
    assert not verdict.valid
    t.faults = Faults(corrupt_at=2)  # the record header
    assert read_ndef_url(t.transceive).error == "bad_ndef"


def test_replay_fault_serves_the_previous_message() -> None:
    t = card(meta_read_key=META, file_read_key=FILE)
    first = read_ndef_url(t.transceive).url
    t.faults.replay = True
    assert read_ndef_url(t.transceive).url == first
    assert t.source.read_ctr == 1


def test_clone_has_same_uid_other_keys(tmp_path: Path) -> None:
    genuine = card(meta_read_key=META, file_read_key=FILE)
    fake = clone_of(genuine)
    assert fake.uid == genuine.uid
    verdict = make_verifier(tmp_path / "k.db").verify_url(read_ndef_url(fake.transceive).url)
    assert not verdict.valid and verdict.reason in CLONE_REASONS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_never_an_exception(apdu: bytes) -> None:
    t = Ntag424Tag(CARD_UID, StaticNdef("https://example.com/x"))
    response = t.transceive(apdu)
    assert len(response) >= 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=12))
def test_reader_survives_any_responses(responses: list[bytes]) -> None:
    answers = iter(responses)

    def hostile(apdu: bytes) -> bytes:
        return next(answers, b"\x90\x00")

    read = read_ndef_url(hostile)
    assert (read.url is None) == (read.error is not None)
