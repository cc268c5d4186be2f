"""Vehicle and station telemetry to a time-series database with influxdb-client.

Telemetry is plentiful and perishable: it goes through a bounded queue of its own (never the
outbox), which drops the oldest points when full and counts them. A writer thread sends the
queue in batches with the client's synchronous write API and retries a failed batch with
exponential backoff, so the caller never waits on the network.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from dockgate.gateway.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SinkCounters:
    """What happened to the points handed to the sink."""

    queued: int = 0
    written: int = 0
    dropped: int = 0
    failed_batches: int = 0
    retries: int = 0


# A failed batch is tried again after 0.2 s, then 0.4, 0.8 ... up to 10 s.
WRITE_RETRY = Backoff(initial=0.2, cap=10.0)


@dataclass(frozen=True, slots=True)
class SinkPolicy:
    """How much the sink holds and how it sends.

    At most ``max_queue`` points wait (the oldest go first when full); a batch of up to
    ``batch_size`` leaves when that many wait or every ``flush_interval`` seconds; a failed
    batch is tried ``max_retries`` more times, ``retry`` apart, then counted as lost.
    """

    max_queue: int = 100_000
    batch_size: int = 5_000
    flush_interval: float = 0.5
    max_retries: int = 5
    retry: Backoff = WRITE_RETRY


class TelemetrySink:
    """A bounded, droppable queue of telemetry points written in batches.

    Use as a context manager or call ``start``/``close``. ``close`` flushes what it can within
    ``flush_timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        org: str = "dockgate",
        bucket: str = "telemetry",
        timeout_ms: int = 10_000,
        policy: SinkPolicy = SinkPolicy(),
    ) -> None:
        if policy.max_queue < 1 or policy.batch_size < 1:
            raise ValueError("max_queue and batch_size must be positive")
        self.bucket, self.org = bucket, org
        self.policy = policy
        self.batch_size = policy.batch_size
        self.counters = SinkCounters()
        self._queue: collections.deque[str] = collections.deque(maxlen=policy.max_queue)
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        # Imported here: influxdb-client takes a tenth of a second to import, which every
        # daemon start would pay with the sink disabled (the default).
        from influxdb_client import InfluxDBClient, Point, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._point, self._ms = Point, WritePrecision.MS
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:  # no token in any repr
        return f"TelemetrySink(bucket={self.bucket!r}, queued={len(self._queue)})"

    # -- producer side ----------------------------------------------------------------------
    def write(
        self,
        measurement: str,
        tags: Mapping[str, str | int],
        fields: Mapping[str, float | int | bool | str],
        ts: float | None = None,
    ) -> None:
        """Queue one point (``ts`` in seconds; now if omitted). Never blocks on the network."""
        if not fields:
            raise ValueError("a telemetry point needs at least one field")
        point = self._point(measurement)
        for key, tag in tags.items():
            point.tag(key, str(tag))
        for key, value in fields.items():
            point.field(key, value)
        point.time(int((time.time() if ts is None else ts) * 1000), self._ms)
        self.write_line(point.to_line_protocol())

    def write_line(self, line: str) -> None:
        """Queue one line of line protocol with a millisecond timestamp."""
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.counters.dropped += 1  # the deque drops the oldest on append
            self._queue.append(line)
            self.counters.queued += 1
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- writer thread ----------------------------------------------------------------------
    def start(self) -> TelemetrySink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="telemetry-sink", daemon=True)
            self._thread.start()
        return self

    def _take(self) -> list[str]:
        with self._cond:
            if not self._closing and len(self._queue) < self.batch_size:
                self._cond.wait(self.policy.flush_interval)
            n = min(len(self._queue), self.batch_size)
            return [self._queue.popleft() for _ in range(n)]

    def _send(self, batch: list[str]) -> bool:
        retries = self.policy.max_retries
        for attempt in range(retries + 1):
            try:
                self._write.write(
                    bucket=self.bucket,
                    org=self.org,
                    record=batch,
                    write_precision=self._ms,
                )
                self.counters.written += len(batch)
                return True
            except Exception as exc:  # network, HTTP 4xx/5xx: retry, then count as lost
                log.warning(
                    "telemetry batch failed (%s), attempt %d", type(exc).__name__, attempt + 1
                )
                if attempt == retries or (self._closing and attempt >= 1):
                    break
                self.counters.retries += 1
                time.sleep(self.policy.retry.delay(attempt))
        self.counters.failed_batches += 1
        self.counters.dropped += len(batch)
        return False

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._send(batch)
            elif self._closing:
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
        while self._queue or self._in_flight():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _in_flight(self) -> bool:
        c = self.counters
        return c.written + c.dropped < c.queued

    def close(self, flush_timeout: float = 10.0) -> None:
        if self._thread is not None:
            self.flush(flush_timeout)
            with self._cond:
                self._closing = True
                self._cond.notify()
            self._thread.join(timeout=flush_timeout)
            self._thread = None
        self._client.close()

    def __enter__(self) -> TelemetrySink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
