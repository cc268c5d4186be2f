"""The wire format: every device payload and command round-trips; every bad input is refused
with its code, and nothing but ProtocolError ever escapes `decode`."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.gateway.protocol import (
    ALERT_OF_EVENT,
    COMMAND_KIND,
    DEVICE_CHANNELS,
    ERROR_CODES,
    MAX_PAYLOAD,
    Ack,
    AckStatus,
    AlertType,
    Channel,
    DeviceKind,
    DeviceRef,
    LockSpot,
    LockVehicle,
    Outcome,
    OutcomeStatus,
    PlaySound,
    ProtocolError,
    SetLight,
    SetMaxSpeed,
    SetSpeedMode,
    SpeedMode,
    SpotStatus,
    StationFeedback,
    StationStatus,
    TopicError,
    UnlockSpot,
    UnlockVehicle,
    VehicleEventType,
    acl_text,
    decode,
    decode_command,
    encode,
    now_ms,
    parse_topic,
    subscriptions,
    username,
)
from tests.support.protocol import station_payloads, telemetry, vehicle_payloads

STATION = DeviceRef.station(7, "ST-01")
VEHICLE = DeviceRef.vehicle(7, "SXB123")


@pytest.mark.parametrize(
    ("device", "channel", "model"),
    [(STATION, c, m) for c, m in station_payloads()]
    + [(VEHICLE, c, m) for c, m in vehicle_payloads()],
)
def test_every_device_payload_round_trips(device: DeviceRef, channel: Channel, model) -> None:
    before = time.time()
    msg = decode(device.topic(channel), encode(model))
    assert msg.device == device
    assert msg.channel is channel
    assert msg.payload == model
    assert type(msg.payload) is type(model)
    assert before <= msg.received_at <= time.time()


def test_every_spot_and_vehicle_event_type_is_covered() -> None:
    spot_types = {m.type for c, m in station_payloads() if c is Channel.SPOT}
    assert spot_types == {
        "spot-docked",
        "spot-undocked",
        "spot-identify-fail",
        "spot-temperature",
        "spot-fault",
        "unexpected-unlock",
    }
    event_types = {m.type for c, m in vehicle_payloads() if c is Channel.EVENT}
    assert event_types == set(VehicleEventType)
    assert set(ALERT_OF_EVENT) >= spot_types | {t.value for t in VehicleEventType}


def test_alert_names_follow_the_dashboard() -> None:
    assert ALERT_OF_EVENT["vehicle-illegal-moving"] is AlertType.VEHICLE_ILLEGAL_MOVING
    assert ALERT_OF_EVENT["station-power-cut"] is AlertType.STATION_POWER_CUT
    assert {a.value for a in AlertType} >= {
        v.value for v in ALERT_OF_EVENT.values() if v is not None
    }
    assert [m.value for m in SpeedMode] == [1, 2, 3]


ALL_COMMANDS = [
    (STATION, UnlockSpot(spot=3)),
    (STATION, LockSpot(spot=3)),
    (VEHICLE, LockVehicle(trip_on_hold=True)),
    (VEHICLE, UnlockVehicle(light=True)),
    (VEHICLE, SetMaxSpeed(max_speed=15)),
    (VEHICLE, SetSpeedMode(speed_mode=SpeedMode.ECO)),
    (VEHICLE, PlaySound(sound="geofencing")),
    (VEHICLE, SetLight(on=False)),
    (STATION, StationFeedback(reader="r1", result="refused", reason="blocked")),
]


@pytest.mark.parametrize(("device", "command"), ALL_COMMANDS)
def test_every_command_round_trips_for_its_kind(device: DeviceRef, command) -> None:
    assert COMMAND_KIND[command.cmd] is device.kind
    got = decode_command(device.topic(Channel.CMD), encode(command), device=device)
    assert got == command
    other = VEHICLE if device.kind is DeviceKind.STATION else STATION
    with pytest.raises(ProtocolError) as err:
        decode_command(other.topic(Channel.CMD), encode(command), device=other)
    assert err.value.code == "schema"


def test_commands_cover_every_kind_and_get_fresh_ids() -> None:
    assert {c.cmd for _, c in ALL_COMMANDS} == set(COMMAND_KIND)
    assert UnlockSpot(spot=1).cmd_id != UnlockSpot(spot=1).cmd_id


def test_command_on_another_devices_topic_is_refused() -> None:
    cmd = encode(SetLight(on=True))
    other = DeviceRef.vehicle(7, "SXB999")
    with pytest.raises(ProtocolError) as err:
        decode_command(other.topic(Channel.CMD), cmd, device=VEHICLE)
    assert err.value.code == "bad-topic"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{" + b" " * MAX_PAYLOAD + b"}", "oversized"),
        (b"not json", "bad-json"),
        (b"", "bad-json"),
        (b"[]", "schema"),
        (b'{"v":1}', "schema"),
        (b"\xff\xfe\x00", "bad-json"),
    ],
)
def test_malformed_commands_are_refused(payload: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_command(VEHICLE.topic(Channel.CMD), payload, device=VEHICLE)
    assert err.value.code == code


GOOD = encode(telemetry())
TOPIC = VEHICLE.topic(Channel.TELEMETRY)


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        (TOPIC, GOOD + b" " * MAX_PAYLOAD, "oversized"),
        ("other/7/vehicle/SXB123/telemetry", GOOD, "bad-topic"),
        ("dockgate/7/vehicle/SXB123/telemetry/x", GOOD, "bad-topic"),
        ("dockgate/7/vehicle/SXB123/status", GOOD, "bad-topic"),  # a station channel
        ("dockgate/7/vehicle/SXB123/cmd", GOOD, "bad-topic"),  # devices never publish cmd
        ("dockgate/7/scooter/SXB123/telemetry", GOOD, "bad-topic"),
        ("dockgate/0/vehicle/SXB123/telemetry", GOOD, "bad-topic"),
        ("dockgate/07/vehicle/SXB123/telemetry", GOOD, "bad-topic"),
        ("dockgate/7/vehicle/SX/telemetry", GOOD, "bad-topic"),
        ("dockgate/7/vehicle/SXB-123/telemetry", GOOD, "bad-topic"),
        ("dockgate/7/vehicle/+/telemetry", GOOD, "bad-topic"),
        (TOPIC, b"{not json", "bad-json"),
        (TOPIC, b'{"v":1,"ts":1}', "schema"),
        (TOPIC, GOOD.replace(b'"v":1', b'"v":2'), "schema"),
        (TOPIC, GOOD.replace(b'"battery":77', b'"battery":101'), "schema"),
        (TOPIC, GOOD.replace(b'"speed_mode":2', b'"speed_mode":4'), "schema"),
        (TOPIC, GOOD.replace(b'"lat":48.85', b'"lat":91'), "schema"),
        (TOPIC, GOOD[:-1] + b',"extra":1}', "schema"),
        (TOPIC, GOOD.replace(b'"battery":77', b'"battery":"77x"'), "schema"),
        (
            "dockgate/7/vehicle/SXB124/telemetry",
            GOOD,
            "device-mismatch",
        ),
        # more than a year ahead is no clock running fast (a skewed clock is restamped)
        (TOPIC, encode(telemetry(ts=now_ms() + 400 * 86_400_000)), "future-timestamp"),
    ],
)
def test_bad_input_is_refused_with_its_code(topic: str, payload: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(topic, payload)
    assert err.value.code == code


def test_small_clock_skew_is_accepted_and_limit_is_configurable() -> None:
    ts = now_ms() + 60_000
    ahead = encode(telemetry(ts=ts))
    msg = decode(TOPIC, ahead)
    assert msg.payload.battery == 77
    assert (msg.effective_ts, msg.clock_offset_ms) == (ts, None)
    # beyond the limit the clock is skewed: still heard, stamped with the receive time
    restamped = decode(TOPIC, ahead, max_future_ms=1_000, received_at=(ts - 60_000) / 1000)
    assert restamped.payload.ts == ts
    assert (restamped.effective_ts, restamped.clock_offset_ms) == (ts - 60_000, 60_000)


def test_spoofed_reply_for_another_device_is_refused() -> None:
    ack = Ack(ts=now_ms(), device_id="SXB999", cmd_id="c", status=AckStatus.ACCEPTED)
    with pytest.raises(ProtocolError) as err:
        decode(VEHICLE.topic(Channel.REPLY), encode(ack))
    assert err.value.code == "device-mismatch"
    out = Outcome(ts=now_ms(), device_id="SXB123", cmd_id="c", status=OutcomeStatus.DONE)
    assert decode(VEHICLE.topic(Channel.REPLY), encode(out)).payload.phase == "outcome"


def test_docked_vehicle_id_must_be_a_serial() -> None:
    bad = b'{"v":1,"ts":1,"device_id":"ST-01","type":"spot-docked","spot":1,"vehicle_id":"../../x"}'
    with pytest.raises(ProtocolError) as err:
        decode(STATION.topic(Channel.SPOT), bad)
    assert err.value.code == "schema"


@settings(max_examples=300, deadline=None)
@given(
    topic=st.one_of(
        st.text(max_size=60),
        st.sampled_from([TOPIC, STATION.topic(Channel.SPOT), STATION.topic(Channel.STATUS)]),
    ),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats()
            | st.text(max_size=10),
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids),
            max_leaves=12,
        ).map(lambda v: orjson.dumps(v) if _jsonable(v) else b"{}"),
    ),
)
def test_hostile_input_only_ever_raises_protocol_error(topic: str, payload: bytes) -> None:
    try:
        decode(topic, payload)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
        assert len(str(exc)) < 300


def _jsonable(value: object) -> bool:
    import math

    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(_jsonable(v) for v in value.values())
    return True


def test_topics_parse_and_build() -> None:
    info = parse_topic("dockgate/12/station/ST-01/spot")
    assert info.device == DeviceRef.station(12, "ST-01")
    assert info.channel is Channel.SPOT
    with pytest.raises(TopicError):
        DeviceRef.vehicle(1, "bad id!")
    with pytest.raises(TopicError):
        DeviceRef.station(0, "ST")
    subs = subscriptions(3)
    assert "dockgate/3/+/+/telemetry" in subs
    assert all(s.startswith("dockgate/3/") for s in subs)
    assert not any(s.endswith("/cmd") for s in subscriptions())


def test_acl_grants_each_device_only_its_own_topics() -> None:
    text = acl_text([VEHICLE, STATION])
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in text.split("\n\n") if "user" in b}
    veh = blocks[f"user {username(VEHICLE)}"]
    assert f"topic read {VEHICLE.topic(Channel.CMD)}" in veh
    writes = {line.split()[-1] for line in veh if line.startswith("topic write")}
    assert writes == {VEHICLE.topic(c) for c in DEVICE_CHANNELS[DeviceKind.VEHICLE]}
    assert all("#" not in line and "+" not in line for line in veh)
    assert "topic readwrite dockgate/#" in blocks["user gateway"]


def test_the_largest_legitimate_station_status_fits_the_size_limit() -> None:
    """A 64-spot station, every spot full with a 10-character serial, must not be refused."""
    status = StationStatus(
        ts=now_ms(),
        device_id="ST-" + "9" * 29,
        spots=[
            SpotStatus(spot=n, state="occupied", locked=True, vehicle_id=f"SXB{n:07d}")
            for n in range(1, 65)
        ],
        mains=False,
        battery=100,
    )
    payload = encode(status)
    assert len(payload) <= MAX_PAYLOAD
    topic = DeviceRef.station(1, status.device_id).topic(Channel.STATUS)
    assert len(decode(topic, payload).payload.spots) == 64


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("battery", "80", "battery"),  # a number in a string is not a number
        ("ts", "1700000000000", "ts"),
        ("light", "yes", "light"),
        ("light", 1, "light"),  # nor is 1 a boolean
        ("odometer", True, "odometer"),  # nor is true a count
    ],
)
def test_wire_types_are_strict_no_coercion(field: str, value: object, where: str) -> None:
    body = telemetry().model_dump(mode="json", exclude_none=True)
    body[field] = value
    with pytest.raises(ProtocolError) as refused:
        decode(DeviceRef.vehicle(1, "SXB123").topic(Channel.TELEMETRY), orjson.dumps(body))
    assert refused.value.code == "schema"
    assert where in refused.value.detail
