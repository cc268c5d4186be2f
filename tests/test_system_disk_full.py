"""A full disk is a state, not a death: ingest pauses, reads go on, and it all resumes by itself.

`dockgate run` as its own process, its data directory on a small tmpfs, on a private
Mosquitto; an independent plain-paho publisher sends countable QoS 1 events (each vehicle one
``vehicle-fallen``, which raises one alert) and counts the broker's PUBACKs. Meanwhile the test
fills the filesystem with a file of its own until the daemon reports the disk full in
``/health`` and ``/metrics``, checks that the daemon keeps serving reads and takes no device
message (its driver queue fills and the broker keeps the rest), then deletes the file. Ingest
resumes without a restart, and every broker-acknowledged event is stored exactly once.

Two ways to a full disk: the free-space watermark (``[storage] min_free_bytes``), which stops
ingest before SQLite meets the end of the disk, and no watermark, where SQLite's own ``database
or disk is full`` stops a batch's commit (the batch is kept, unacknowledged, and retried).
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.publisher import PacedPublisher
from tests.support.system_harness import Backend, DaemonProcess, StationConf, until

# an SQLite file filling its own disk: on PostgreSQL the disk is the server's
pytestmark = [pytest.mark.timeout(240), pytest.mark.engines("sqlite")]

DISK = "16m"  # the tmpfs under the data directory
VEHICLES = 2000  # one countable event each
RATE = 400.0  # messages per second: the publisher is still at it while the disk is full
QUEUE = 200  # the driver's queue: full while ingest pauses, the rest stays at the broker
MIB = 1024 * 1024


def serial(i: int) -> str:
    return f"DSK{i:05d}"


def backlog() -> list[tuple[str, bytes]]:
    """One ``vehicle-fallen`` per vehicle."""
    now = int(time.time() * 1000)
    return [
        (
            f"dockgate/1/vehicle/{serial(i)}/event",
            orjson.dumps({"v": 1, "ts": now, "device_id": serial(i), "type": "vehicle-fallen"}),
        )
        for i in range(VEHICLES)
    ]


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left (ENOSPC); the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written, size = 0, 1 << 20
    try:
        while size >= 512:
            try:
                written += os.write(fd, b"\xa5" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return written


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/state`` on a tmpfs of its own (unmounted after)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _metric(text: str, name: str) -> float | None:
    """The value of one sample (``name`` with its labels) in Prometheus text, if there."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return None


def fallen_alerts(backend: Backend) -> Counter[int]:
    return Counter(
        p["vehicle_id"]
        for p in backend.of_kind("alert.raised")
        if p["alert_type"] == "vehicle-fallen"
    )


@pytest.fixture
async def daemon(
    request: pytest.FixtureRequest, small_disk: Path, mosquitto: Mosquitto
) -> AsyncIterator[DaemonProcess]:
    watermark = request.param
    process = DaemonProcess(
        small_disk.parent,  # its data directory, "state", is the tmpfs
        mosquitto.port,
        stations=[StationConf(1, "ST01", 45.46, 9.20)],
        extra={
            "storage": {"min_free_bytes": watermark, "probe_interval": 0.25},
            "mqtt": {"queue_size": QUEUE},
        },
        log_level="WARNING",
    )
    try:
        yield process
    finally:
        process.close()


@pytest.mark.parametrize(
    ("daemon", "paused_state"),
    [(1 * MIB, "low"), (0, "failing")],
    ids=["watermark", "sqlite-full"],
    indirect=["daemon"],
)
async def test_a_full_disk_pauses_ingest_and_it_resumes_when_space_is_freed(
    daemon: DaemonProcess, small_disk: Path, mosquitto: Mosquitto, paused_state: str
) -> None:
    backend = Backend(daemon)
    daemon.start()
    publisher = PacedPublisher(
        mosquitto.port, backlog(), rate=RATE, client_id="disk-full-publisher"
    )
    publisher.start()
    filler = small_disk / "filler"
    try:

        def flowing() -> bool:
            backend.pull()
            return len(fallen_alerts(backend)) >= 200

        await until(flowing, 20, "ingest under way")

        # -- the disk fills up: the daemon says so, in /health and /metrics --------------------
        filled = await asyncio.to_thread(fill, filler)

        def disk_full() -> dict[str, Any] | None:
            health = daemon.health()
            return health if health["storage"]["state"] == paused_state else None

        health = await until(disk_full, 30, f"/health: storage {paused_state}")
        storage = health["storage"]
        assert health["status"] == "degraded", health
        assert storage["ingest"] == "paused" and "disk full" in storage["cause"], storage
        assert any(p.startswith(f"storage {paused_state}: disk full") for p in health["problems"])
        assert {p["state"] for p in health["parts"]} == {"running"}  # a state, not a death
        assert storage["free_bytes"] < max(storage["min_free_bytes"], MIB)
        metrics = daemon.http.get("/metrics").text
        assert _metric(metrics, f'dockgate_store_state{{state="{paused_state}"}}') == 1.0
        assert _metric(metrics, 'dockgate_store_state{state="ok"}') == 0.0
        assert _metric(metrics, "dockgate_store_free_bytes") is not None
        assert _metric(metrics, "dockgate_store_write_failures_total") is not None
        assert "broker not connected" not in " ".join(health["problems"])  # nothing blamed

        # -- paused: reads are served, nothing is taken in, the broker keeps the rest ----------
        await until(lambda: daemon.health()["broker"]["queue_blocked"] > 0, 30, "driver queue full")
        backend.pull(ack=False)
        stored = len(fallen_alerts(backend))
        await asyncio.sleep(1.0)
        backend.pull(ack=False)
        assert len(fallen_alerts(backend)) == stored, "device messages taken while paused"
        await asyncio.to_thread(publisher.join, 120)  # all of it published meanwhile
        assert publisher.error is None, publisher.error
        assert publisher.acked == VEHICLES
        backend.pull(ack=False)
        assert len(fallen_alerts(backend)) == stored < VEHICLES
        paused = daemon.health()
        assert paused["broker"]["queue_depth"] == QUEUE
        assert paused["storage"]["state"] == paused_state

        # -- space is freed: ingest resumes by itself, within seconds -------------------------
        os.remove(filler)
        freed = time.monotonic()
        await until(lambda: daemon.health()["storage"]["state"] == "ok", 15, "storage ok")
        resumed_s = time.monotonic() - freed

        def complete() -> bool:
            backend.pull()
            return len(fallen_alerts(backend)) >= VEHICLES

        await until(complete, 60, "every acknowledged event stored")
        complete_s = time.monotonic() - freed
        backend.drain()
        after = daemon.health()
        metrics = daemon.http.get("/metrics").text
    finally:
        if filler.exists():
            filler.unlink()

    # -- 0 lost, 0 duplicated; the backend was told; the daemon is whole -----------------------
    alerts = fallen_alerts(backend)
    assert len(alerts) == VEHICLES and set(alerts.values()) == {1}
    assert backend.duplicates() == {}
    site = [e["kind"] for e in backend.events if e["kind"].startswith("site.storage")]
    assert site == ["site.storage-degraded", "site.storage-restored"], site
    [degraded] = backend.of_kind("site.storage-degraded")
    assert degraded["state"] in ("low", "failing") and "disk full" in degraded["cause"]
    assert after["status"] == "ok", after
    assert {p["restarts"] for p in after["parts"]} == {0}  # no part failed, none restarted
    assert after["storage"]["alarms_unsent"] == 0 and after["background_failures"] == 0
    [restored] = backend.of_kind("site.storage-restored")
    assert restored["since"] == degraded["since"] <= restored["at"]
    if paused_state == "failing":
        assert after["storage"]["write_failures"] >= restored["write_failures"] > 0
        assert after["storage"]["batches_retried"] > 0  # the refused batch, kept and retried
    raised = _metric(metrics, 'dockgate_alerts_raised_total{type="vehicle-fallen"}')
    assert raised == VEHICLES  # the metric counts committed alerts, once each
    assert _metric(metrics, 'dockgate_store_state{state="ok"}') == 1.0
    assert daemon.terminate() == 0
    assert daemon.scalar("PRAGMA integrity_check") == "ok"
    rows = daemon.scalar("SELECT count(*) FROM fleet_alerts WHERE alert_type='vehicle-fallen'")
    assert rows == VEHICLES
    print(
        f"\ndisk full ({paused_state}): filler {filled / MIB:.1f} MiB; stored before the pause"
        f" {stored}/{VEHICLES}; ingest resumed {resumed_s:.2f} s after the space was freed,"
        f" every event stored {complete_s:.2f} s after; write failures"
        f" {after['storage']['write_failures']}, batches retried"
        f" {after['storage']['batches_retried']}, probes {after['storage']['probes']}"
    )


def test_a_refused_commit_leaves_the_database_as_it_was(small_disk: Path) -> None:
    """SQLite rolls a transaction the disk refuses back whole; the ``Database`` ends in a
    known state (no transaction open, counters reloaded, no hook of the undone work run),
    ``StoreHealth`` names the refusal, and writes work again once space is freed."""
    from dockgate.gateway.outbox import Outbox, Priority
    from dockgate.gateway.store import Database, StoreHealth, refused_write

    db = Database(small_disk / "store.sqlite3")
    box = Outbox(db)
    health = StoreHealth(db, min_free_bytes=0)
    filler = small_disk / "filler"
    fill(filler)
    ran: list[int] = []
    refused: BaseException | None = None
    for n in range(1000):  # until the WAL has no reusable room left
        try:
            with db.transaction():
                box.append("e", "x" * 4000, idempotency_key=f"k{n}", priority=Priority.OUTCOME)
                db.after_commit(lambda n=n: ran.append(n))
        except Exception as exc:
            refused = exc
            break
    assert refused is not None and refused_write(refused) is not None, refused
    assert db.depth == 0 and not db.conn.in_transaction
    assert health.refused(refused) and health.state == "failing"
    assert "disk full" in (health.cause or "")
    assert not health.probe()  # nothing is tried without room
    filler.unlink()
    assert health.probe() and health.state == "ok"
    box.append("e", "after", idempotency_key="after", priority=Priority.OUTCOME)
    assert ran == list(range(n))  # the hooks of the committed ones, never the refused one's
    rows = db.conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0]
    assert box.pending()[Priority.OUTCOME] == rows == n + 1
    assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
