"""The topic tree: `dockgate/{network}/{kind}/{device_id}/{channel}`, built and parsed.

A reader is a device of kind `reader` whose one channel is `tap`
(`dockgate/1/reader/R01/tap`), so its taps travel, and are refused, like any device message.

Parsing is a split and a few dict and regex look-ups, because it runs for every inbound
message; it refuses anything that is not exactly a known device topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from dockgate.gateway.protocol.enums import Channel, DeviceKind

ROOT = "dockgate"

VEHICLE_ID_RE = re.compile(r"[A-Za-z0-9]{6,10}")  # the dashboard's serial number
STATION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
READER_ID_RE = STATION_ID_RE  # ASCII letters, digits and dashes, as a station id
_NETWORK_RE = re.compile(r"[1-9][0-9]{0,8}")

_ID_RE = {
    DeviceKind.STATION: STATION_ID_RE,
    DeviceKind.VEHICLE: VEHICLE_ID_RE,
    DeviceKind.READER: READER_ID_RE,
}
_KINDS = {k.value: k for k in DeviceKind}

#: What each kind of device may publish (the ACLs grant exactly these).
DEVICE_CHANNELS: dict[DeviceKind, frozenset[Channel]] = {
    DeviceKind.STATION: frozenset(
        {Channel.ONLINE, Channel.STATUS, Channel.SPOT, Channel.POWER, Channel.ALARM, Channel.REPLY}
    ),
    DeviceKind.VEHICLE: frozenset(
        {Channel.ONLINE, Channel.TELEMETRY, Channel.EVENT, Channel.REPLY}
    ),
    DeviceKind.READER: frozenset({Channel.TAP}),  # takes no command: nothing to read
}
_CHANNELS = {kind: {c.value: c for c in chans} for kind, chans in DEVICE_CHANNELS.items()}


class TopicError(ValueError):
    """A topic that is not a device topic of this protocol."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """One device: its network, kind and id (a station id or a vehicle serial number)."""

    network: int
    kind: DeviceKind
    device_id: str

    def __post_init__(self) -> None:
        if not (1 <= self.network < 10**9):
            raise TopicError(f"network id out of range: {self.network}")
        if not _ID_RE[self.kind].fullmatch(self.device_id):
            raise TopicError(f"invalid {self.kind.value} id: {self.device_id!r}")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.network}/{self.kind.value}/{self.device_id}"

    def topic(self, channel: Channel) -> str:
        """The topic of ``channel`` for this device."""
        return f"{self.base}/{channel.value}"

    @classmethod
    def station(cls, network: int, station_id: str) -> DeviceRef:
        return cls(network, DeviceKind.STATION, station_id)

    @classmethod
    def vehicle(cls, network: int, serial: str) -> DeviceRef:
        return cls(network, DeviceKind.VEHICLE, serial)

    @classmethod
    def reader(cls, network: int, reader_id: str) -> DeviceRef:
        return cls(network, DeviceKind.READER, reader_id)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A parsed device topic."""

    device: DeviceRef
    channel: Channel


@lru_cache(maxsize=16384)  # a fleet repeats the same few thousand topics; errors aren't cached
def parse_topic(topic: str) -> TopicInfo:
    """Parse a device-published topic; raise :class:`TopicError` for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT:
        raise TopicError("not a device topic")
    _, net, kind_s, device_id, chan_s = parts
    kind = _KINDS.get(kind_s)
    if kind is None:
        raise TopicError(f"unknown device kind {kind_s[:16]!r}")
    chan = _CHANNELS[kind].get(chan_s)
    if chan is None:
        raise TopicError(f"unknown {kind.value} channel {chan_s[:16]!r}")
    if not _NETWORK_RE.fullmatch(net):
        raise TopicError("invalid network id")
    if not _ID_RE[kind].fullmatch(device_id):
        raise TopicError(f"invalid {kind.value} id")
    return TopicInfo(DeviceRef(int(net), kind, device_id), chan)


def subscriptions(network: int | None = None) -> list[str]:
    """Topic filters the gateway subscribes to (all networks when ``network`` is None)."""
    net = "+" if network is None else str(network)
    chans = sorted({c.value for cs in DEVICE_CHANNELS.values() for c in cs})
    return [f"{ROOT}/{net}/+/+/{c}" for c in chans]
