"""Device clocks: state is only ever replaced by newer state, and a skewed clock is still heard.

A message's clock is its ``effective_ts`` (``codec.decode``): the device's own ``ts`` while
that is plausible, else the gateway's receive time (the clock is skewed: too far ahead or
behind). A state message (vehicle telemetry, station status) supersedes the state last
applied, whose clock (:class:`DeviceClock`) the store keeps, only if it is later; and a
restamped message never supersedes state a plausible clock set less than
``PLAUSIBLE_TRUST`` seconds before: a lone ``ts=0`` after fresh reports is an old message,
not news, while a clock that stays wrong is heard again once that trust has run out. A
future ``ts`` cannot pin a device's state: beyond the allowed skew it is restamped, within it
it holds for at most that skew.

Events (dock, undock, alarms) are not ordered: each counts once (the inbox's identities),
whatever its clock says.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Final

from dockgate.gateway.protocol import DeviceMessage, DeviceRef
from dockgate.gateway.store import DeviceClock

PLAUSIBLE_TRUST: Final = 300.0  # s a plausible clock's state outranks restamped messages
MAX_FLAGGED: Final = 10_000  # skewed devices remembered (the first ones stay)


def restamped(msg: DeviceMessage) -> DeviceMessage:
    """``msg`` with its payload's ``ts`` replaced by its effective ts (itself if plausible), so
    every later use of ``ts`` (rules, keys, events, settling) reads the effective one."""
    if msg.clock_offset_ms is None:
        return msg
    payload = msg.payload.model_copy(update={"ts": msg.effective_ts})
    return dataclasses.replace(msg, payload=payload)


def supersedes(msg: DeviceMessage, last: DeviceClock | None, *, or_same: bool = False) -> bool:
    """Does ``msg`` replace the state whose clock is ``last`` (None: no state yet)?

    ``or_same``: a message as old as the last applied one replaces it too (a snapshot that is
    safe to apply again).
    """
    if last is None:
        return True
    if msg.clock_offset_ms is not None and msg.received_at < last.trusted_until:
        return False
    return msg.effective_ts > last.ts or (or_same and msg.effective_ts == last.ts)


def clock_of(msg: DeviceMessage) -> DeviceClock:
    """The clock to keep for the state ``msg`` sets."""
    if msg.clock_offset_ms is not None:
        return DeviceClock(msg.effective_ts, 0.0)
    return DeviceClock(msg.effective_ts, msg.received_at + PLAUSIBLE_TRUST)


def device_name(device: DeviceRef) -> str:
    """``<network>/<kind>/<device id>``: how a device is named in counters and views."""
    return f"{device.network}/{device.kind.value}/{device.device_id}"


class SkewedClocks:
    """Devices whose last message had an implausible clock, with that clock's offset (ms,
    device minus gateway); ``counts["clock_skew"]`` counts such messages."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.offsets: dict[str, int] = {}

    def note(self, msg: DeviceMessage) -> None:
        """Flag the device of a skewed message; a plausible one clears its flag."""
        offset = msg.clock_offset_ms
        if offset is None:
            if self.offsets:
                self.offsets.pop(device_name(msg.device), None)
            return
        self.counts["clock_skew"] += 1
        name = device_name(msg.device)
        if name in self.offsets or len(self.offsets) < MAX_FLAGGED:
            self.offsets[name] = offset
