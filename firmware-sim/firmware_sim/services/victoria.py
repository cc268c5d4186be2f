"""A private VictoriaMetrics (Debian's ``victoria-metrics``) on a free loopback port.

It speaks the InfluxDB v2 write API (``/api/v2/write``) that influxdb-client uses, and serves
the points back on ``/api/v1/export``; each instance has its own data directory.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

from dockgate.sim.services.process import (
    ManagedProcess,
    ServiceError,
    free_port,
    require_program,
    wait_for_port,
)


class VictoriaMetrics:
    """Start with ``start()`` (or ``with``); ``url`` is the base URL for clients."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.process = ManagedProcess("victoria-metrics", workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        binary = require_program("victoria-metrics")
        data = self.process.workdir / "data"
        data.mkdir(exist_ok=True)
        self.process.spawn(
            [
                binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={data}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ]
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except ServiceError:
            self.process.check_alive()
            raise
        self.process.check_alive()
        return self

    def flush(self) -> None:
        """Make recent writes visible to queries (VictoriaMetrics buffers them briefly)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass

    def export(self, match: str, *, wait: float = 5.0, expect: int = 1) -> list[dict[str, Any]]:
        """Series matching the PromQL selector ``match``, as /api/v1/export lines; waits up to
        ``wait`` seconds for at least ``expect`` series to appear."""
        deadline = time.monotonic() + wait
        query = urllib.parse.urlencode({"match[]": match})
        while True:
            self.flush()
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:
                lines = [json.loads(line) for line in r.read().splitlines() if line.strip()]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
