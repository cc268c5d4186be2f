"""The flow's site configuration and timings, given to ``RideFlow`` as keyword arguments.

``FlowOptions`` types those keyword arguments (``RideFlow(..., network_id=1, readers={...})``),
``FlowSettings`` is the checked, immutable result every part of the flow reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Required, TypedDict


class FlowOptions(TypedDict, total=False):
    """The keyword arguments of ``RideFlow`` that configure the site (see ``FlowSettings``)."""

    network_id: Required[int]
    readers: Required[Mapping[str, int]]
    station_devices: Mapping[int, str] | None
    undock_timeout: float
    resend_max_age: float
    settle_margin: float
    outcome_timeout: float
    tombstone_ttl: float


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """The site and the flow's timings (seconds).

    ``readers`` maps a reader id to its station id; ``station_devices`` a station id to its
    MQTT device id (default: the id as text). ``undock_timeout``: how long an opened spot waits
    for its vehicle to leave; ``resend_max_age``: how old a never-sent command may be and still
    be sent after a restart; ``settle_margin``, ``outcome_timeout`` and ``tombstone_ttl``: how a
    rental whose unlock may have reached the station is settled after a restart (docs/flow.md).
    """

    network_id: int
    readers: Mapping[str, int]
    station_devices: Mapping[int, str] | None = field(default=None)
    undock_timeout: float = 60.0
    resend_max_age: float = 30.0
    settle_margin: float = 2.0
    outcome_timeout: float = 15.0
    tombstone_ttl: float = 300.0
