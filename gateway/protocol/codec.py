"""Decoding and encoding on the wire, with every check the gateway applies to device input.

`decode` is the one gate for inbound device messages: size limit, topic shape, schema,
device id against the topic, device clock against the gateway's. It raises
:class:`ProtocolError` with a stable machine-readable `code`; it never lets a pydantic or
JSON error escape. The validators (`TypeAdapter`) are built once at import.
"""

from __future__ import annotations

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
    SpotEvent,
    StationStatus,
    Telemetry,
    VehicleEvent,
)
from dockgate.gateway.protocol.topics import DeviceRef, TopicError, parse_topic

MAX_PAYLOAD: Final = 8192  # bytes; the largest legitimate one (a full 64-spot status) ~4.6 KiB
MAX_FUTURE_MS: Final = 5 * 60 * 1000  # device clocks may run ahead by this much, not more

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
    so a device can never set it.
    """

    device: DeviceRef
    channel: Channel
    payload: Any  # one of the payload models, by channel
    received_at: float
    retained: bool = False


def _schema_detail(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{len(errs)} error(s); first at {loc or '(root)'}: {first['msg']}"[:200]


def decode(
    topic: str,
    payload: bytes | bytearray,
    *,
    received_at: float | None = None,
    retained: bool = False,
    max_future_ms: int = MAX_FUTURE_MS,
) -> DeviceMessage:
    """Check and decode one device message; raise :class:`ProtocolError` if it is refused."""
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
    if model.ts > received_at * 1000 + max_future_ms:
        raise ProtocolError(
            "future-timestamp", f"ts is {model.ts - received_at * 1000:.0f} ms ahead"
        )
    return DeviceMessage(info.device, info.channel, model, received_at, retained)


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
