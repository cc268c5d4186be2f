"""Reader taps on the broker's wire format, and through the flow as the driver hands them over.

The protocol refuses a malformed tap with a stable code (as any device message) and names a
tap by its reader, ``seq`` and ``ts``; the flow verifies a published tap with the gateway's
own verifier and decides it as a direct reader's tap: unlock, refusal shown at the station,
and a tap delivered again (same reader and sequence) applied once, also after a restart.
The broker itself is in tests/test_tap_publisher.py and tests/test_system_reader_taps.py.
"""

from __future__ import annotations

import orjson
import pytest

from dockgate.gateway.protocol import (
    MAX_PAYLOAD,
    Channel,
    DeviceKind,
    DeviceRef,
    ProtocolError,
    ReaderTap,
    acl_text,
    decode,
    parse_topic,
    username,
)
from tests.plugins.flow import READER_A, READER_B, FlowRig, until
from tests.support.reader_taps import tap_bytes, tap_topic
from tests.support.taps import CLONE_REASONS, FILE, META, UID

URL = "https://t.example/t?picc_data=0011&enc=22&cmac=3344"


def refusal(topic: str, payload: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        decode(topic, payload)
    return caught.value.code


# --- the wire format ----------------------------------------------------------------------------
def test_a_tap_decodes_to_a_typed_message_of_its_reader() -> None:
    msg = decode(tap_topic("R01"), tap_bytes("R01", 7, URL, UID, error=None))
    assert msg.device == DeviceRef.reader(1, "R01") and msg.channel is Channel.TAP
    assert isinstance(msg.payload, ReaderTap)
    assert (msg.payload.seq, msg.payload.url, msg.payload.uid) == (7, URL, UID.hex())
    failed = decode(tap_topic("R01"), tap_bytes("R01", 8, None, None, error="removed"))
    assert failed.payload.error == "removed" and failed.payload.url is None


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        (tap_topic("R01"), b"not json", "bad-json"),
        (tap_topic("R01"), tap_bytes("R01", 1, URL, UID, keys="00" * 16), "schema"),  # unknown
        (
            tap_topic("R01"),
            tap_bytes("R01", 1, URL, UID, replace={"uid": "04A1B2"}),
            "schema",
        ),  # 3 bytes
        (tap_topic("R01"), tap_bytes("R01", 1, URL, UID, replace={"uid": "zz" * 7}), "schema"),
        (tap_topic("R01"), tap_bytes("R01", 1, "https://t.example/ä", UID), "schema"),
        (tap_topic("R01"), tap_bytes("R01", 1, "https://t.example/a b", UID), "schema"),
        (tap_topic("R01"), tap_bytes("R01", 1, "https://t/" + "a" * 1015, UID), "schema"),
        (tap_topic("R01"), tap_bytes("R01", 1, None, UID), "schema"),  # no url, no error
        (tap_topic("R01"), tap_bytes("R01", 1, None, UID, error="Bad Error"), "schema"),
        (tap_topic("R01"), tap_bytes("R01", -1, URL, UID), "schema"),
        (tap_topic("R01"), tap_bytes("R01", 2**53, URL, UID), "schema"),
        (
            tap_topic("R01"),
            tap_bytes("R01", 1, URL, UID, replace={"seq": "1"}),
            "schema",
        ),  # strict types
        (tap_topic("R01"), tap_bytes("R01", 1, URL, UID, read_ms=60_001), "schema"),
        (tap_topic("R01"), tap_bytes("R02", 1, URL, UID), "device-mismatch"),
        (tap_topic("Rü1"), tap_bytes("Rü1", 1, URL, UID), "bad-topic"),  # ids are ASCII
        (tap_topic("R" * 33), tap_bytes("R" * 33, 1, URL, UID), "bad-topic"),
        ("dockgate/1/reader/R01/spot", tap_bytes("R01", 1, URL, UID), "bad-topic"),
        ("dockgate/1/station/R01/tap", tap_bytes("R01", 1, URL, UID), "bad-topic"),
        (tap_topic("R01"), tap_bytes("R01", 1, URL, UID, pad="x" * MAX_PAYLOAD), "oversized"),
    ],
)
def test_a_malformed_tap_is_refused_with_a_code(topic: str, payload: bytes, code: str) -> None:
    assert refusal(topic, payload) == code


def test_a_tap_is_named_by_its_reader_sequence_and_read_time_not_its_bytes() -> None:
    ts = 1_800_000_000_000
    first = decode(tap_topic("R01"), tap_bytes("R01", 5, URL, UID, ts=ts)).identity
    body = orjson.loads(tap_bytes("R01", 5, URL, UID, ts=ts))
    reordered = orjson.dumps(dict(reversed(list(body.items()))), option=orjson.OPT_INDENT_2)
    assert decode(tap_topic("R01"), reordered).identity == first  # re-encoded: the same tap
    others = [
        decode(tap_topic("R01"), tap_bytes("R01", 6, URL, UID, ts=ts)).identity,
        decode(tap_topic("R01"), tap_bytes("R01", 5, URL, UID, ts=ts + 1)).identity,  # rebooted
        decode(tap_topic("R02"), tap_bytes("R02", 5, URL, UID, ts=ts)).identity,
        decode(tap_topic("R01", 2), tap_bytes("R01", 5, URL, UID, ts=ts)).identity,
    ]
    assert len({first, *others}) == 5


def test_a_reader_account_may_write_only_its_own_tap_topic() -> None:
    reader = DeviceRef.reader(1, "R01")
    assert parse_topic(reader.topic(Channel.TAP)).device.kind is DeviceKind.READER
    text = acl_text([reader, DeviceRef.station(1, "ST01")])
    block = text.split(f"user {username(reader)}\n")[1].split("\n\n")[0].splitlines()
    assert block == ["topic write dockgate/1/reader/R01/tap"]


# --- through the flow ---------------------------------------------------------------------------
def published(reader: str, seq: int, url: str | None, uid: bytes | None, **extra: object):
    return decode(tap_topic(reader), tap_bytes(reader, seq, url, uid, **extra))


def unlocked_spot(rig: FlowRig) -> int:
    [command] = rig.port.commands("unlock-spot")
    return int(command.spot)  # type: ignore[union-attr]


async def test_a_published_tap_unlocks_a_spot_as_a_direct_one(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    flow.verify_reader_taps(rig.handler.handle)
    tag = rig.rider(30)
    await flow.on_device_messages([published(READER_A, 1, tag.next_url(), tag.uid)])
    await until(lambda: rig.port.commands("unlock-spot", "ST01"), what="unlock-spot sent")
    [accepted] = rig.events("tap.accepted")
    assert (accepted["rider_id"], accepted["station_id"], accepted["reader"]) == (30, 1, READER_A)
    assert [c.state for c in rig.commands("unlock-spot")] == ["acked"]
    assert rig.port.feedback("ST01") == []  # the spot opening is the answer, as today
    await rig.undock("ST01", unlocked_spot(rig), None)  # the rider takes the vehicle: a trip
    await flow.drain()
    assert rig.store.trips.open(30)


async def test_a_tap_delivered_again_is_applied_once_even_after_a_restart(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    flow.verify_reader_taps(rig.handler.handle)
    tag = rig.rider(31)
    url, ts = tag.next_url(), 1_800_000_000_000
    first = published(READER_A, 9, url, tag.uid, ts=ts)
    await flow.on_device_messages([first])
    await until(lambda: rig.port.commands("unlock-spot"), what="unlock-spot sent")
    await flow.on_device_messages([first])  # the broker's redelivery, in this run
    rig.handler._recent.clear()  # a new gateway: no tap in memory, the verifier's window gone
    flow = await rig.start_gateway()
    flow.verify_reader_taps(rig.handler.handle)
    body = dict(reversed(list(orjson.loads(tap_bytes(READER_A, 9, url, tag.uid, ts=ts)).items())))
    resent = decode(tap_topic(READER_A), orjson.dumps(body))  # re-encoded by the reader
    await flow.on_device_messages([first, resent])
    await flow.drain()
    assert len(rig.port.commands("unlock-spot")) == 1
    assert rig.events("tap.refused") == []  # not verified again: its counter would say replayed
    assert len(rig.events("tap.accepted")) == 1
    assert flow.inbound["duplicate"] == 2


async def test_refused_taps_are_recorded_and_shown_at_the_readers_station(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    flow.verify_reader_taps(rig.handler.handle)
    tag = rig.rider(32)
    url = tag.next_url()
    clone = tag.clone(meta_read_key=FILE, file_read_key=META)  # same UID, not the keys
    batch = [
        published(READER_A, 1, url, tag.uid),
        published(READER_A, 2, clone.next_url(), tag.uid),
        published(READER_B, 1, url, tag.uid),  # the accepted message replayed elsewhere
        published(READER_B, 2, None, None, error="removed"),
        published("R99", 1, tag.next_url(), tag.uid),  # a reader of no station
    ]
    await flow.on_device_messages(batch)
    await until(lambda: rig.port.commands("unlock-spot"), what="unlock-spot sent")
    await rig.undock("ST01", unlocked_spot(rig), None)
    await flow.drain()
    refused = [(e["reader"], e["reason"], e["detail"]) for e in rig.events("tap.refused")]
    assert refused[0][:2] == (READER_A, "invalid_tag") and refused[0][2] in CLONE_REASONS
    assert refused[1:] == [
        (READER_B, "invalid_tag", "replayed"),
        (READER_B, "invalid_tag", "removed"),
        ("R99", "unknown_reader", None),
    ]
    assert rig.port.feedback("ST01") == [(READER_A, "refused", "invalid_tag")]
    assert rig.port.feedback("ST02") == [(READER_B, "refused", "invalid_tag")] * 2
    assert len(rig.port.commands("unlock-spot")) == 1


async def test_taps_without_a_verifier_or_of_another_network_are_only_counted(
    rig: FlowRig,
) -> None:
    flow = await rig.start_gateway()
    tag = rig.rider(33)
    await flow.on_device_messages([published(READER_A, 1, tag.next_url(), tag.uid)])
    flow.verify_reader_taps(rig.handler.handle)
    other = decode(tap_topic(READER_A, 2), tap_bytes(READER_A, 2, tag.next_url(), tag.uid))
    await flow.on_device_messages([other])
    await flow.drain()
    assert flow.ignored["reader-tap-unverified"] == 1
    assert flow.ignored["reader-tap-network"] == 1
    assert rig.port.sent == [] and rig.events("tap.refused") == []
