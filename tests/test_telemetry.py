"""The telemetry sink against a real VictoriaMetrics: batches land, a full queue drops oldest,
an unreachable server is retried with backoff and then counted as lost."""

from __future__ import annotations

import time

from dockgate.gateway.backoff import Backoff
from dockgate.gateway.telemetry import SinkPolicy, TelemetrySink
from dockgate.sim.services.process import free_port


def test_points_written_and_read_back(victoria) -> None:
    now = time.time()
    with TelemetrySink(
        victoria.url, policy=SinkPolicy(batch_size=200, flush_interval=0.05)
    ) as sink:
        for i in range(1000):
            sink.write(
                "scooter",
                {"vehicle_id": i % 10, "network": 1},
                {"battery": 100 - i % 100, "speed_kmh": 12.5},
                ts=now - 1000 + i,
            )
        assert sink.flush(10)
        assert sink.counters.written == 1000 and sink.counters.dropped == 0
    series = victoria.export('scooter_battery{network="1"}', expect=10)
    assert len(series) == 10
    assert sum(len(s["values"]) for s in series) == 1000
    one = next(s for s in series if s["metric"]["vehicle_id"] == "3")
    assert one["timestamps"][0] == int((now - 1000 + 3) * 1000)
    assert one["values"][0] == 97


def test_full_queue_drops_oldest_and_counts(victoria) -> None:
    sink = TelemetrySink(victoria.url, policy=SinkPolicy(max_queue=100, batch_size=1000))
    for i in range(250):
        sink.write("station", {"station_id": 7}, {"power_w": i}, ts=time.time())
    assert sink.depth == 100 and sink.counters.dropped == 150
    sink.start()
    assert sink.flush(10) and sink.counters.written == 100
    sink.close()
    series = victoria.export('station_power_w{station_id="7"}')
    assert min(series[0]["values"]) == 150  # the oldest were the ones dropped


def test_unreachable_server_retries_then_counts_loss() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = SinkPolicy(batch_size=10, max_retries=2, retry=Backoff(initial=0.01, cap=10.0))
    sink = TelemetrySink(url, timeout_ms=500, policy=policy)
    with sink:
        for i in range(10):
            sink.write("scooter", {"vehicle_id": 1}, {"battery": i})
        assert sink.flush(10)
    assert sink.counters.retries == 2 and sink.counters.failed_batches == 1
    assert sink.counters.dropped == 10 and sink.counters.written == 0
    assert "token" not in repr(sink)
