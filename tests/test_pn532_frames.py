"""The PN532 frame codec: round trips, checksums, and resynchronisation after line noise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dockgate.drivers.readers import pn532_frames as pf


def test_encode_matches_the_user_manual_example() -> None:
    # UM0701-02 §7.2.2: GetFirmwareVersion is 00 00 FF 02 FE D4 02 2A 00.
    assert pf.encode_frame(pf.TFI_HOST, b"\x02") == bytes.fromhex("0000ff02fed4022a00")


def test_extended_frame_round_trip() -> None:
    body = bytes(range(256)) * 2
    frame = pf.encode_frame(pf.TFI_PN532, body)
    assert frame[3:5] == b"\xff\xff"
    decoder = pf.FrameDecoder(max_body=1024)
    assert decoder.feed(frame) == [pf.Frame(pf.TFI_PN532, body)]


def test_ack_nack_error_frames() -> None:
    items = pf.FrameDecoder().feed(pf.ACK + pf.NACK + pf.ERROR_FRAME)
    assert items == [pf.Ack(), pf.Nack(), pf.ErrorFrame()]


def test_bad_checksums_are_counted_and_the_next_frame_still_decodes() -> None:
    good = pf.encode_frame(pf.TFI_PN532, b"\x03\x32\x01\x06\x07")
    bad_dcs = good[:-2] + bytes(((good[-2] + 1) & 0xFF,)) + good[-1:]
    bad_lcs = good[:4] + bytes(((good[4] + 1) & 0xFF,)) + good[5:]
    decoder = pf.FrameDecoder()
    items = decoder.feed(bad_dcs + bad_lcs + good)
    assert items[0] == pf.BadFrame("bad_checksum")
    assert pf.BadFrame("bad_length") in items
    assert items[-1] == pf.Frame(pf.TFI_PN532, b"\x03\x32\x01\x06\x07")
    assert decoder.bad_checksum == 1 and decoder.bad_length == 1


def test_garbage_is_counted_but_wakeup_bytes_are_not() -> None:
    decoder = pf.FrameDecoder()
    frame = pf.encode_frame(pf.TFI_HOST, b"\x02")
    assert decoder.feed(pf.WAKEUP + b"\x13\x37\xde\xad" + frame) == [pf.Frame(pf.TFI_HOST, b"\x02")]
    assert decoder.garbage_bytes == 4


def test_byte_by_byte_feeding() -> None:
    decoder = pf.FrameDecoder()
    frame = pf.encode_frame(pf.TFI_PN532, b"\x41\x00\x90\x00")
    items = [item for b in frame for item in decoder.feed(bytes((b,)))]
    assert items == [pf.Frame(pf.TFI_PN532, b"\x41\x00\x90\x00")]


@given(st.binary(max_size=300), st.binary(min_size=1, max_size=200))
def test_noise_never_crashes_and_a_following_frame_survives(noise: bytes, data: bytes) -> None:
    decoder = pf.FrameDecoder()
    decoder.feed(noise)
    decoder.reset()  # what the driver does after a timeout: forget any half frame
    frame = pf.encode_frame(pf.TFI_PN532, data)
    assert decoder.feed(frame)[-1] == pf.Frame(pf.TFI_PN532, data)


@given(st.binary(max_size=600))
def test_arbitrary_input_yields_only_known_items(noise: bytes) -> None:
    decoder = pf.FrameDecoder()
    for item in decoder.feed(noise):
        assert isinstance(item, pf.Ack | pf.Nack | pf.ErrorFrame | pf.Frame | pf.BadFrame)
    assert decoder.pending <= len(noise)
