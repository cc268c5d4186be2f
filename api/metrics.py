"""Prometheus metrics of the gateway, on a registry of its own (one per app)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dockgate.gateway.outbox import Outbox


class _OutboxCollector(Collector):
    """Reads queue depths and drop counts at scrape time (four rows, however deep the queue)."""

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
        self.rule_bundle_version = Gauge(
            "dockgate_rule_bundle_version",
            "Version of the active rule bundle",
            registry=self.registry,
        )
