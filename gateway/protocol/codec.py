"""Decoding and encoding on the wire, with every check the gateway applies to device input.

`decode` is the one gate for inbound device messages: size limit, topic shape, schema,
device id against the topic, device clock against the gateway's. It raises
:class:`ProtocolError` with a stable machine-readable `code`; it never lets a pydantic or
JSON error escape. The validators (`TypeAdapter`) are built once at import.

Device clocks are unreliable: a message whose `ts` is implausible (further ahead of the
gateway than `max_future_ms`, or further behind than `max_past_ms`) is still accepted, with
the gateway's receive time as its `effective_ts` and its clock offset recorded, so that a
station whose clock runs fast keeps being heard. Only a `ts` beyond `FUTURE_LIMIT_MS` (no
clock that merely runs fast says that) is refused.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter, ValidationError

from dockgate.gateway.protocol.commands import COMMAND_KIND, Command, Reply
from dockgate.gateway.protocol.enums import Channel
from dockgate.gateway.protocol.messages import (
    AlarmEvent,
    Online,
    PowerEvent,
    ReaderTap,
    SpotEvent,
    StationStatus,
    Telemetry,
    VehicleEvent,
)
from dockgate.gateway.protocol.topics import DeviceRef, TopicError, parse_topic

MAX_PAYLOAD: Final = 8192  # bytes; the largest legitimate one (a full 64-spot status) ~4.6 KiB
MAX_FUTURE_MS: Final = 5 * 60 * 1000  # a device clock further ahead than this is skewed
MAX_PAST_MS: Final = 24 * 3600 * 1000  # a device clock further behind than this is skewed
FUTURE_LIMIT_MS: Final = 366 * 24 * 3600 * 1000  # further ahead: not a clock, refused
IDENTITY_BYTES: Final = 16  # blake2b digest of topic and payload: a redelivery's identity

ERROR_CODES: Final = (
    "oversized",
    "bad-topic",
    "bad-json",
    "schema",
    "device-mismatch",
    "future-timestamp",
)

_ADAPTERS: dict[Channel, TypeAdapter[Any]] = {
    Channel.ONLINE: TypeAdapter(Online),
    Channel.STATUS: TypeAdapter(StationStatus),
    Channel.SPOT: TypeAdapter(SpotEvent),
    Channel.POWER: TypeAdapter(PowerEvent),
    Channel.ALARM: TypeAdapter(AlarmEvent),
    Channel.TELEMETRY: TypeAdapter(Telemetry),
    Channel.EVENT: TypeAdapter(VehicleEvent),
    Channel.REPLY: TypeAdapter(Reply),
    Channel.TAP: TypeAdapter(ReaderTap),
}
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class ProtocolError(ValueError):
    """Device input refused; `code` is one of :data:`ERROR_CODES`, `detail` is for logs."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One accepted inbound message: who sent it, on which channel, and when we got it.

    `received_at` is the gateway's wall clock (s since the epoch), stamped outside the payload
    so a device can never set it. `effective_ts` (ms) is the payload's `ts` when the device's
    clock is plausible, else the receive time; `clock_offset_ms` is then the device's offset
    (its `ts` minus the receive time; None while plausible). `identity` names the message
    (topic and payload bytes; a tap: its reader, `seq` and `ts`): a redelivery of it by the
    broker has the same identity.
    """

    device: DeviceRef
    channel: Channel
    payload: Any  # one of the payload models, by channel
    received_at: float
    effective_ts: int
    identity: bytes
    retained: bool = False
    clock_offset_ms: int | None = None


def _schema_detail(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{len(errs)} error(s); first at {loc or '(root)'}: {first['msg']}"[:200]


def message_identity(topic: str, payload: bytes | bytearray) -> bytes:
    """The identity of a message: a 16-byte blake2b of its topic and payload bytes."""
    digest = hashlib.blake2b(topic.encode(), digest_size=IDENTITY_BYTES)
    digest.update(b"\0")  # a topic never holds NUL: topic and payload cannot run together
    digest.update(payload)
    return digest.digest()


def tap_identity(topic: str, tap: ReaderTap) -> bytes:
    """The identity of a reader's tap: its reader (the topic), `seq` and `ts`, not its bytes.

    A redelivery, or the reader sending the tap again (re-encoded or not), repeats all three;
    a reader whose `seq` restarted after a reboot still names new taps apart by `ts`.
    """
    digest = hashlib.blake2b(topic.encode(), digest_size=IDENTITY_BYTES)
    digest.update(f"\0tap:{tap.seq}:{tap.ts}".encode())
    return digest.digest()


def decode(
    topic: str,
    payload: bytes | bytearray,
    *,
    received_at: float | None = None,
    retained: bool = False,
    max_future_ms: int = MAX_FUTURE_MS,
    max_past_ms: int = MAX_PAST_MS,
) -> DeviceMessage:
    """Check and decode one device message; raise :class:`ProtocolError` if it is refused.

    A `ts` more than ``max_future_ms`` ahead of ``received_at`` or ``max_past_ms`` behind it
    is a skewed clock: the message is accepted with the receive time as its `effective_ts`.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        info = parse_topic(topic)
    except TopicError as exc:
        raise ProtocolError("bad-topic", str(exc)) from None
    try:
        model = _ADAPTERS[info.channel].validate_json(payload, strict=True)
    except ValidationError as exc:
        code = "bad-json" if exc.errors()[0]["type"] == "json_invalid" else "schema"
        raise ProtocolError(code, _schema_detail(exc)) from None
    if model.device_id != info.device.device_id:
        raise ProtocolError("device-mismatch", "payload device_id differs from the topic's")
    if received_at is None:
        received_at = time.time()
    received_ms = round(received_at * 1000)
    offset = model.ts - received_ms
    if offset > FUTURE_LIMIT_MS:
        raise ProtocolError("future-timestamp", f"ts is {offset} ms ahead")
    if info.channel is Channel.TAP:
        identity = tap_identity(topic, model)
    else:
        identity = message_identity(topic, payload)
    skewed = offset > max_future_ms or -offset > max_past_ms
    return DeviceMessage(
        info.device,
        info.channel,
        model,
        received_at,
        received_ms if skewed else model.ts,
        identity,
        retained,
        offset if skewed else None,
    )


def encode(model: BaseModel) -> bytes:
    """Serialise a payload or command to compact JSON bytes (None fields left out)."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=True)


def decode_command(topic: str, payload: bytes, *, device: DeviceRef) -> Command:
    """For devices: check and decode a command addressed to ``device``.

    Raises :class:`ProtocolError` (codes as for :func:`decode`) for an oversized or malformed
    command, a command on another device's topic, or one meant for the other device kind.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    if topic != device.topic(Channel.CMD):
        raise ProtocolError("bad-topic", "not this device's command topic")
    try:
        cmd = COMMAND_ADAPTER.validate_json(payload, strict=True)
    except ValidationError as exc:
        code = "bad-json" if exc.errors()[0]["type"] == "json_invalid" else "schema"
        raise ProtocolError(code, _schema_detail(exc)) from None
    if COMMAND_KIND[cmd.cmd] is not device.kind:
        raise ProtocolError("schema", f"{cmd.cmd} is not a {device.kind.value} command")
    return cmd
