"""Countable device traffic for the cluster's fault tests: every message leaves a trace.

A :class:`Flood` plays a fleet of vehicles the gateway has not met (serials ``<prefix>0001``
...), each sending, in turn, a ``vehicle-low-battery`` event and a telemetry report, device
times strictly increasing. Each event becomes exactly one ``vehicle.event`` in the feed, whose
idempotency key names the vehicle and the event's device time; each vehicle's last report is
its ``vehicle_clocks.report_ts``. So :meth:`Flood.tally` tells, from the feed and the
database, every message the broker accepted that left no trace (lost) or two (duplicated).

:class:`StreamPublisher` publishes a flood at a steady rate from a thread until stopped
(plain paho, QoS 1), then waits for the broker's PUBACK of each: what it returns is what the
broker took (tests/support/publisher.py's ``PacedPublisher`` on the endless flood).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.publisher import PacedPublisher

__all__ = ["Flood", "StreamPublisher", "Tally"]

EVENT = "vehicle-low-battery"


@dataclass
class Tally:
    """What became of a flood's messages."""

    events_expected: int
    events_seen: int
    lost_events: list[str]  # "<serial>:<device ts>"
    duplicated_events: dict[str, int]
    stale_reports: dict[str, tuple[int, int | None]]  # serial -> (last sent ts, committed ts)

    @property
    def complete(self) -> bool:
        return not self.lost_events and not self.stale_reports

    def __str__(self) -> str:
        return (
            f"events {self.events_seen}/{self.events_expected}, lost {len(self.lost_events)} "
            f"{self.lost_events[:5]}, duplicated {len(self.duplicated_events)}, stale reports "
            f"{len(self.stale_reports)} {list(self.stale_reports.items())[:3]}"
        )


@dataclass
class Flood:
    """Messages of ``vehicles`` new vehicles at ``site``, made on demand (:meth:`take`)."""

    prefix: str
    vehicles: int
    site: tuple[float, float]
    network: int = 1
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000) - 2000)
    events: list[str] = field(default_factory=list)  # "<serial>:<ts>" of each event made
    last_report: dict[str, int] = field(default_factory=dict)
    made: int = 0

    def serial(self, v: int) -> str:
        return f"{self.prefix}{v + 1:04d}"

    def _topic(self, serial: str, channel: str) -> str:
        return f"dockgate/{self.network}/vehicle/{serial}/{channel}"

    def next(self) -> tuple[str, bytes]:
        """The next message: vehicle ``n % vehicles``'s event, then its report, in turn."""
        n = self.made
        self.made += 1
        step, kind = divmod(n, 2)
        serial = self.serial(step % self.vehicles)
        ts = self.start_ms + n  # increasing, so never older than the state applied
        lat, lon = self.site
        if kind == 0:
            body: dict[str, Any] = {"type": EVENT, "battery": 9}
            self.events.append(f"{serial}:{ts}")
            channel = "event"
        else:
            body = {
                "lat": lat + (step % 7) * 1e-5,
                "lng": lon,
                "gps_accuracy": 5.0,
                "speed": 0.0,
                "battery": 80,
                "lock": "locked",
                "speed_mode": 2,
                "max_speed": 25,
                "odometer": step,
            }
            self.last_report[serial] = ts
            channel = "telemetry"
        body.update({"v": 1, "ts": ts, "device_id": serial})
        return self._topic(serial, channel), orjson.dumps(body)

    def take(self, count: int) -> list[tuple[str, bytes]]:
        return [self.next() for _ in range(count)]

    def tally(
        self,
        feed_events: list[dict[str, Any]],
        serial_of: dict[int, str],
        report_ts: dict[str, int],
    ) -> Tally:
        """Traces of this flood: ``feed_events`` (the backend's), the database's vehicle ids
        to serials and each vehicle's committed ``report_ts``."""
        seen: Counter[str] = Counter()
        for event in feed_events:
            if event["kind"] != "vehicle.event":
                continue
            # idempotency key: vehicle:<vehicle id>:<type>:<device ts>
            _, vid, kind, ts = event["idempotency_key"].split(":")
            serial = serial_of.get(int(vid), "")
            if kind == EVENT and serial.startswith(self.prefix):
                seen[f"{serial}:{ts}"] += 1
        expected = set(self.events)
        stale = {
            s: (ts, report_ts.get(s))
            for s, ts in self.last_report.items()
            if report_ts.get(s) != ts
        }
        return Tally(
            events_expected=len(expected),
            events_seen=len(expected & set(seen)),
            lost_events=sorted(expected - set(seen)),
            duplicated_events={k: n for k, n in seen.items() if n > 1},
            stale_reports=stale,
        )


class StreamPublisher(PacedPublisher):
    """Publishes ``flood`` at ``rate`` messages a second until :meth:`finish`; counts PUBACKs."""

    def __init__(self, port: int, flood: Flood, *, rate: float, client_id: str) -> None:
        endless = iter(flood.next, None)  # next() never returns None
        super().__init__(port, endless, rate=rate, client_id=client_id)
