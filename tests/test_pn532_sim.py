"""The PN532 simulator as a host sees it: real frames over a real socat pty pair."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from dockgate.drivers.readers import pn532_frames as pf
from dockgate.drivers.readers.pn532 import Pn532Error, Pn532Link, parse_target
from dockgate.sim.ntag424 import CARD_UID, Ntag424Tag, StaticNdef
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.transports.pn532_serial import Pn532Simulator


@pytest.fixture
def sim(serial_pty: SocatPty) -> Iterator[Pn532Simulator]:
    with Pn532Simulator(serial_pty.device_path) as simulator:
        yield simulator


@pytest.fixture
def link(serial_pty: SocatPty, sim: Pn532Simulator) -> Iterator[Pn532Link]:
    port = serial.Serial(str(serial_pty.host_path), 115200, timeout=0)
    try:
        yield Pn532Link(port, ack_timeout=0.5, answer_timeout=2.0)
    finally:
        port.close()


def test_firmware_version_and_sam_configuration(link: Pn532Link) -> None:
    link.wake()
    assert link.command(pf.CMD_GET_FIRMWARE_VERSION) == bytes.fromhex("32010607")
    assert link.command(pf.CMD_SAM_CONFIGURATION, b"\x01\x14\x01") == b""


def test_list_exchange_release(link: Pn532Link, sim: Pn532Simulator) -> None:
    tag = Ntag424Tag(CARD_UID, StaticNdef("https://example.com/a"))
    sim.present(tag)
    answer = link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
    sens_res, sel_res, uid, ats = parse_target(answer)
    assert sens_res == b"\x03\x44" and sel_res == 0x20 and uid == CARD_UID
    assert ats == tag.ats
    select = b"\x00\xa4\x04\x00\x07\xd2\x76\x00\x00\x85\x01\x01\x00"
    assert link.command(pf.CMD_IN_DATA_EXCHANGE, b"\x01" + select) == b"\x00\x90\x00"
    assert link.command(pf.CMD_DIAGNOSE, b"\x06") == b"\x00"
    assert link.command(pf.CMD_IN_RELEASE, b"\x01") == b"\x00"
    # After release the target is gone: exchanges are refused with "wrong context".
    assert link.command(pf.CMD_IN_DATA_EXCHANGE, b"\x01" + select) == b"\x27"


def test_no_tag_gives_zero_targets_after_the_configured_retries(link: Pn532Link) -> None:
    link.command(pf.CMD_RF_CONFIGURATION, b"\x05\xff\x01\x05")
    started = time.monotonic()
    assert link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00") == b"\x00"
    assert time.monotonic() - started < 1.0


def test_removed_tag_times_out_in_data_exchange(link: Pn532Link, sim: Pn532Simulator) -> None:
    sim.present(Ntag424Tag(CARD_UID, StaticNdef("https://example.com/a")))
    link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
    sim.remove()
    assert link.command(pf.CMD_IN_DATA_EXCHANGE, b"\x01\x00\xa4\x00\x0c\x02\xe1\x03") == b"\x01"
    assert link.command(pf.CMD_DIAGNOSE, b"\x06") == b"\x01"


def test_unknown_command_and_bad_parameters_get_the_error_frame(link: Pn532Link) -> None:
    with pytest.raises(Pn532Error, match="error frame"):
        link.command(0x60)  # InAutoPoll: not modelled
    with pytest.raises(Pn532Error, match="error frame"):
        link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x07\x00")  # MaxTg 7
    assert link.counters["error_frames"] == 2


def test_corrupt_answer_is_nacked_and_resent(link: Pn532Link, sim: Pn532Simulator) -> None:
    sim.corrupt_next = 2
    assert link.command(pf.CMD_GET_FIRMWARE_VERSION) == bytes.fromhex("32010607")
    assert link.decoder.bad_checksum == 2
    assert link.counters["nacks_sent"] == 2
    assert sim.stats.nacks_received == 2


def test_garbage_both_ways_is_counted_and_survived(link: Pn532Link, sim: Pn532Simulator) -> None:
    link.port.write(b"\xde\xad\xbe\xef\x00\xff\x05\x00garbage")  # host-side noise, bad LCS
    sim.send_garbage(b"\x13\x37\x42")
    time.sleep(0.05)
    assert link.command(pf.CMD_GET_FIRMWARE_VERSION) == bytes.fromhex("32010607")
    assert link.decoder.garbage_bytes == 3
    assert sim.stats.garbage_bytes > 0 and sim.stats.bad_frames >= 1


def test_swallowed_command_is_resent_after_the_ack_timeout(
    link: Pn532Link, sim: Pn532Simulator
) -> None:
    sim.silent_next = 1
    link.ack_timeout = 0.1
    assert link.command(pf.CMD_GET_FIRMWARE_VERSION) == bytes.fromhex("32010607")
    assert link.counters["ack_timeouts"] == 1
