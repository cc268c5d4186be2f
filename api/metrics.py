"""Prometheus metrics of the gateway, on a registry of its own (one per app).

Most figures are counters the parts already keep (the MQTT driver's, the tap handler's, the
rules engine's tally, the flow's); :class:`Readings` collects them at scrape time, so the hot
paths pay nothing for being observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dockgate.gateway.outbox import Outbox


class _OutboxCollector(Collector):
    """Reads queue depths and drop counts at scrape time (a row per class, however deep)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.outbox.stats()
        depth = GaugeMetricFamily(
            "dockgate_outbox_pending", "Unacknowledged outbox events", labels=["class"]
        )
        dropped = CounterMetricFamily(
            "dockgate_outbox_dropped", "Outbox events dropped under pressure", labels=["class"]
        )
        compacted = CounterMetricFamily(
            "dockgate_outbox_compacted", "Outbox events replaced by newer state", labels=["class"]
        )
        for priority, s in stats.items():
            name = priority.name.lower()
            depth.add_metric([name], s.pending)
            dropped.add_metric([name], s.dropped)
            compacted.add_metric([name], s.compacted)
        oldest = self.outbox.oldest_pending()
        age = GaugeMetricFamily(
            "dockgate_outbox_oldest_unsent_seconds", "Age of the oldest unacknowledged event"
        )
        age.add_metric([], 0.0 if oldest is None else max(0.0, time.time() - oldest))
        yield from (depth, dropped, compacted, age)


@dataclass(frozen=True, slots=True)
class Readings:
    """What the daemon's parts have counted so far, read at each scrape."""

    mqtt: Mapping[str, Any] = field(default_factory=dict)  # ``MqttDriver.status()``
    taps: Mapping[str, int] = field(default_factory=dict)  # ``TapHandler.counters``
    # (kind, name) -> count: ("command", "lock"), ("alert", "vehicle-out-of-network-area:raise")
    decisions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    alerts_raised: Mapping[str, int] = field(default_factory=dict)  # by alert type
    alerts_cleared: Mapping[str, int] = field(default_factory=dict)
    # device messages by what became of them in the flow: stale, duplicate, clock-skew, ...
    device_messages: Mapping[str, int] = field(default_factory=dict)
    ignored: Mapping[str, int] = field(default_factory=dict)  # messages the flow could not place
    clock_skewed_devices: int = 0  # devices whose clock is off, heard at the receive time
    storage: Mapping[str, Any] = field(default_factory=dict)  # the daemon's ``storage_status()``
    background_failures: int = 0  # the flow's background tasks that ended with an exception


def _counter(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def _mqtt_metrics(m: Mapping[str, Any]) -> Iterator[Metric]:
    if not m:
        return
    for key, doc in (
        ("received", "MQTT messages received from devices"),
        ("accepted", "MQTT messages that passed validation"),
        ("takeovers", "Times the broker said another client took the gateway's session"),
        ("sessions_lost", "Reconnects that found the gateway's session gone"),
        ("connects", "Connections to the broker"),
        ("disconnects", "Connections to the broker lost"),
    ):
        yield _counter(f"dockgate_mqtt_{key}", doc, [], [([], float(m.get(key, 0)))])
    yield _counter(
        "dockgate_mqtt_refused",
        "MQTT messages refused, by code",
        ["code"],
        ((([code]), float(n)) for code, n in sorted(m.get("rejected", {}).items())),
    )
    for key, doc in (
        ("unacked", "Messages received and not yet acknowledged to the broker"),
        ("queue_depth", "Accepted messages waiting for the flow"),
        ("pending_commands", "Commands waiting for their ack or outcome"),
    ):
        gauge = GaugeMetricFamily(f"dockgate_mqtt_{key}", doc)
        gauge.add_metric([], float(m.get(key, 0)))
        yield gauge
    yield _counter(
        "dockgate_commands",
        "Commands sent to devices, by kind and final status",
        ["cmd", "status"],
        (([r["cmd"], r["status"]], float(r["count"])) for r in m.get("results", [])),
    )
    latency = HistogramMetricFamily(
        "dockgate_command_ack_seconds",
        "First publish of a command to its ack, by kind",
        labels=["cmd"],
    )
    for cmd, h in sorted(m.get("ack_latency", {}).items()):
        running, buckets = 0, []
        for bound, count in zip([*h["le"], float("inf")], h["counts"], strict=True):
            running += count
            buckets.append((str(bound) if bound != float("inf") else "+Inf", running))
        latency.add_metric([cmd], buckets, sum_value=h["sum"])
    yield latency


_STORAGE_STATES = ("ok", "low", "failing")


def _storage_metrics(storage: Mapping[str, Any], background_failures: int) -> Iterator[Metric]:
    """The disk under the state: free space, refused writes, whether ingest is paused."""
    if not storage:
        return
    yield _counter(
        "dockgate_store_write_failures",
        "Writes the disk refused (full, or an I/O error); each was rolled back",
        [],
        [([], float(storage.get("write_failures", 0)))],
    )
    yield _counter(
        "dockgate_store_batches_retried",
        "Device message batches the disk refused, kept unacknowledged and tried again",
        [],
        [([], float(storage.get("batches_retried", 0)))],
    )
    state = GaugeMetricFamily(
        "dockgate_store_state",
        "1 for the store's current state: ok, low (free space below the watermark: device"
        " ingest paused) or failing (writes refused: ingest paused)",
        labels=["state"],
    )
    for name in _STORAGE_STATES:
        state.add_metric([name], float(storage.get("state") == name))
    yield state
    for key, doc in (
        ("free_bytes", "Free bytes on the filesystem of the database"),
        ("min_free_bytes", "The free-space watermark below which device ingest pauses"),
    ):
        gauge = GaugeMetricFamily(f"dockgate_store_{key}", doc)
        gauge.add_metric([], float(storage.get(key) or 0))
        yield gauge
    yield _counter(
        "dockgate_background_task_failures",
        "Background tasks of the flow (commands, timers, taps) that ended with an exception",
        [],
        [([], float(background_failures))],
    )


def _tap_rows(taps: Mapping[str, int]) -> Iterator[tuple[list[str], float]]:
    for key, n in sorted(taps.items()):
        if key in ("accepted", "duplicate"):
            yield [key, ""], float(n)
        else:
            yield ["refused", key], float(n)


class _ReadingsCollector(Collector):
    """Turns the parts' own counters into metric families at scrape time."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        r = self.read()
        yield from _mqtt_metrics(r.mqtt)
        yield from _storage_metrics(r.storage, r.background_failures)
        yield _counter(
            "dockgate_taps",
            "Taps by result, and by the SUN or reader reason of a refusal",
            ["result", "reason"],
            _tap_rows(r.taps),
        )
        yield _counter(
            "dockgate_rule_decisions",
            "Decisions of the rules engine: commands, alert actions, notifications",
            ["kind", "name"],
            (([kind, name], float(n)) for (kind, name), n in sorted(r.decisions.items())),
        )
        yield _counter(
            "dockgate_alerts_raised",
            "Fleet alerts the gateway opened, by type",
            ["type"],
            (([t], float(n)) for t, n in sorted(r.alerts_raised.items())),
        )
        yield _counter(
            "dockgate_alerts_cleared",
            "Fleet alerts the gateway resolved, by type",
            ["type"],
            (([t], float(n)) for t, n in sorted(r.alerts_cleared.items())),
        )
        yield _counter(
            "dockgate_device_messages",
            "Device messages by what the flow made of them (stale, duplicate, clock-skew, ...)",
            ["outcome"],
            (([k], float(n)) for k, n in sorted(r.device_messages.items())),
        )
        skewed = GaugeMetricFamily(
            "dockgate_devices_clock_skewed", "Devices whose clock is implausible right now"
        )
        skewed.add_metric([], float(r.clock_skewed_devices))
        yield skewed
        yield _counter(
            "dockgate_device_messages_ignored",
            "Device messages the flow could not place, by why",
            ["reason"],
            (([k], float(n)) for k, n in sorted(r.ignored.items())),
        )


class GatewayMetrics:
    """The gauges and histograms other parts update (the flow, the drivers, the rules)."""

    def __init__(self, outbox: Outbox) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_OutboxCollector(outbox))
        self.tap_to_unlock = Histogram(
            "dockgate_tap_to_unlock_seconds",
            "Gateway time from a verified tap to the unlock command on the wire",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.reader_up = Gauge(
            "dockgate_reader_up",
            "1 when a badge reader is connected",
            ["reader"],
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "dockgate_broker_up", "1 when the MQTT broker is connected", registry=self.registry
        )
        self._readings: _ReadingsCollector | None = None
        self.rule_bundle_version = Gauge(
            "dockgate_rule_bundle_version",
            "Version of the active rule bundle",
            registry=self.registry,
        )

    def watch(self, read: Callable[[], Readings]) -> None:
        """Export what ``read`` returns at every scrape (the daemon passes its parts' counters)."""
        if self._readings is not None:
            self.registry.unregister(self._readings)
        self._readings = _ReadingsCollector(read)
        self.registry.register(self._readings)
