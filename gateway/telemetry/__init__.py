"""The telemetry sink: batched, bounded, droppable writes with influxdb-client."""

from dockgate.gateway.telemetry._sink import SinkCounters, SinkPolicy, TelemetrySink

__all__ = ["SinkCounters", "SinkPolicy", "TelemetrySink"]
