"""Pre-packed MQTT v5 PUBLISH properties for commands.

paho builds a :class:`~paho.mqtt.properties.Properties` object by filling a dict of every
property name on each construction and packs it by scanning those names: about 80 us per
command publish. A command's properties are always the same three (Message Expiry Interval,
Response Topic, Correlation Data), so they are packed here directly, in paho's order, and
handed to ``Client.publish`` as an object whose ``pack()`` returns the bytes. The bytes are
identical to paho's own packing (``tests/test_mqtt_driver.py`` checks it).
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def _vbi(n: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def pack_publish_properties(expiry_s: int, reply_prop: bytes, correlation: bytes) -> bytes:
    """Message Expiry Interval (id 2), the packed Response Topic (id 8, ``reply_prop``) and
    Correlation Data (id 9), with the properties' length in front, as paho packs them."""
    body = (
        b"\x02"
        + expiry_s.to_bytes(4, "big")
        + reply_prop
        + b"\x09"
        + len(correlation).to_bytes(2, "big")
        + correlation
    )
    return _vbi(len(body)) + body


def pack_response_topic(topic: str) -> bytes:
    """The Response Topic property (id 8) of ``topic``, packed."""
    raw = topic.encode()
    return b"\x08" + len(raw).to_bytes(2, "big") + raw


class PackedProperties(Properties):
    """PUBLISH properties already packed: paho only calls ``pack()`` on them."""

    __slots__ = ()

    def __init__(self, packed: bytes) -> None:  # no super().__init__: that is the cost
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_packed", packed)

    def pack(self) -> bytes:
        return self._packed  # type: ignore[attr-defined, no-any-return]

    def __str__(self) -> str:
        return f"PackedProperties({self._packed.hex()})"  # type: ignore[attr-defined]

    __repr__ = __str__
