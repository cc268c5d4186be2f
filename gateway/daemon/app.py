"""The daemon: builds every part from the settings and runs them under one supervisor.

Start order matters only for the state: the database, the replay store, the rule bundle and the
flow are built (and the command journal recovered) before any part runs, so a tap or a device
message never meets a half-built gateway. The parts (MQTT, each reader, the API, the telemetry
sink) then run side by side; one that fails is restarted with backoff and shown in ``/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from dockgate.api import ApiLimits, create_app, server_config
from dockgate.api.cluster import ClusterCollector
from dockgate.api.gbfs import GbfsSources
from dockgate.api.metrics import GatewayMetrics, Readings
from dockgate.api.ports import FlowCommandSender, SunPlayVerifier
from dockgate.api.status import status_router
from dockgate.drivers.mqtt import MqttClosed, MqttDriver
from dockgate.drivers.readers import ReaderSpec, make_reader
from dockgate.gateway.daemon.cluster import CurrentFlow, SiteRole
from dockgate.gateway.daemon.points import points
from dockgate.gateway.daemon.settings import DaemonSettings, ReaderSettings
from dockgate.gateway.daemon.snapshot import status_snapshot
from dockgate.gateway.daemon.state import open_state
from dockgate.gateway.daemon.storage import StorageAlarm
from dockgate.gateway.daemon.supervisor import PartRunner, Supervisor
from dockgate.gateway.flow import RideFlow
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.protocol import DeviceMessage
from dockgate.gateway.readers import ReaderDriver, ReaderStatus, TapEvent
from dockgate.gateway.rules import BundleHolder, RuleBundle, RulesEngine, load_bundle
from dockgate.gateway.store import StoreHealth
from dockgate.gateway.sun import SunVerifier
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.gateway.telemetry import SinkPolicy, TelemetrySink

log = logging.getLogger("dockgate.daemon")


def _reader_spec(settings: ReaderSettings) -> ReaderSpec:
    """A configured reader as the reader factory's spec."""
    return ReaderSpec(
        settings.driver,
        path=settings.path,
        reader_id=settings.id,
        pcsc_readers=tuple(settings.pcsc_readers),
    )


def _reader_status(status: ReaderStatus) -> dict[str, Any]:
    """A reader's status as a plain dict (``ReaderStatus`` is a slots dataclass: no ``vars``)."""
    return dataclasses.asdict(status)


def _numeric_version(version: object) -> float:
    """The bundle version as a gauge value (non-numeric versions show as -1)."""
    try:
        return float(str(version))
    except ValueError:
        return -1.0


#: Device messages per transaction. Small enough that a batch takes a few milliseconds of
#: the event loop (a tap or a command reply waits for at most one), large enough that a
#: transaction's fixed cost is spread (bench/ingest.py: the drain and its latency row).
INGEST_BATCH = 256


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    """One gateway: ``await Daemon(settings).run()`` until :meth:`stop` or a signal."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.supervisor = Supervisor()
        self.recent_taps: deque[Tap] = deque(maxlen=50)
        self.api_port: int | None = None
        self.started = asyncio.Event()
        self.readers: dict[str, ReaderDriver] = {}
        self.tap_failures = 0
        self.batches_retried = 0  # device batches the disk refused, kept and tried again
        self._build()

    # -- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.settings
        data_dir = Path(s.site.data_dir)
        self.store = open_state(data_dir, s.secrets, s.store)  # 0700 dir, 0600 files, KEK checked
        self.db = self.store.db
        self.outbox = Outbox(  # only STATE is ever dropped: alerts and outcomes never are
            self.db, limits={Priority.STATE: s.outbox.state}, max_pending=s.outbox.max_pending
        )
        for warning in s.outbox.deprecations():
            log.warning("configuration: %s", warning)
        self.storage = StoreHealth(self.db, min_free_bytes=s.storage.min_free_bytes)
        self.storage_alarm = StorageAlarm(self.storage, self.outbox)
        self.replay = self.store.replay  # a separate replay file of an earlier version: taken over
        self.replay.import_file(s.sun.replay_db or data_dir / "sun-replay.sqlite3")
        self.verifier = SunVerifier(s.sun, self.replay)
        self.taps = TapHandler(self.verifier)
        bundle = self._initial_bundle()
        self.bundles = BundleHolder(bundle)
        self.engine = RulesEngine(bundle)
        self.mqtt = MqttDriver(s.mqtt)
        self.metrics = GatewayMetrics(self.outbox)
        self.sink = self._make_sink()
        self._seed_topology()
        self.flow = self.make_flow()
        for reader in s.readers:
            if reader.local:  # a "broker" reader publishes its taps from elsewhere
                self.readers[reader.id] = make_reader(_reader_spec(reader))
        self.metrics.watch(self.readings)
        self.cluster = SiteRole(self, s)  # a cluster's node stands by until it leads
        self.metrics.registry.register(ClusterCollector(self.cluster.status))

    def make_flow(self) -> RideFlow:
        """A ride flow over the store, its in-memory state new (a cluster's leader makes one
        at the start of each term, from what the database holds)."""
        s = self.settings
        flow = RideFlow(
            self.store,
            self.outbox,
            self.engine,
            self.mqtt.send_command,
            network_id=s.site.network_id,
            readers={r.id: r.station_id for r in s.readers},
            station_devices={st.id: st.device_id for st in s.stations},
            metrics=self.metrics,
            # an unlock sent before a crash may still be executed until the driver gives up
            outcome_timeout=s.mqtt.command_timeout + s.mqtt.outcome_timeout,
            enroll_vehicles=True,  # a vehicle first heard of joins, in its message's transaction
        )
        flow.tasks.on_failure = self.storage.refused  # a command refused by the disk
        flow.verify_reader_taps(self._verify_published_tap)  # taps over the broker
        return flow

    def _make_sink(self) -> TelemetrySink | None:
        """The time-series sink, if enabled: its queue is bounded and apart from the outbox."""
        t = self.settings.telemetry
        if not t.enabled:
            return None
        return TelemetrySink(
            t.url,
            token=t.token.get_secret_value(),
            org=t.org,
            bucket=t.bucket,
            policy=SinkPolicy(max_queue=t.max_queue),
        )

    def _seed_topology(self) -> None:
        """The network, its stations and their spots, as configured (idempotent)."""
        s = self.settings
        net = s.site.network_id
        with self.store.transaction():
            self.store.topology.upsert_network(net, s.site.name)
            if s.stations:
                first = s.stations[0]
                self.store.topology.upsert_cluster(net, net, s.site.name, first.lat, first.lon)
            for st in s.stations:
                self.store.topology.upsert_station(
                    st.id,
                    net,
                    st.name or st.device_id,
                    st.lat,
                    st.lon,
                    badge_reader=st.badge_reader,
                    max_unlock_distance=st.max_unlock_distance,
                )
                for number in range(1, st.spots + 1):
                    self.store.topology.upsert_spot(st.id * 1000 + number, st.id, number)

    def _initial_bundle(self) -> RuleBundle:
        """The last bundle the backend pushed, else the configured one."""
        saved = self.store.bundles.current()
        self._applied_bundle = saved.version if saved is not None else None
        if saved is not None:
            with contextlib.suppress(Exception):
                return load_bundle(saved.body)
            log.warning("stored rule bundle no longer loads; using the configured one")
        return load_bundle(self.settings.rules.bundle)

    # -- parts --------------------------------------------------------------------------------
    async def _run_mqtt(self) -> None:
        """Device messages in batches, each one transaction, acknowledged once committed.

        While the store cannot take them (disk nearly full or refusing writes) no batch is
        pulled: the driver's bounded queue fills and its backpressure leaves the rest with
        the broker, unacknowledged, until the disk takes writes again.
        """
        interval = self.settings.storage.probe_interval
        async with self.mqtt as driver:
            while True:
                await self.storage.until_ingest(interval)
                try:
                    batch = await driver.get_batch(INGEST_BATCH)
                except MqttClosed:
                    return
                if self.sink is not None:  # history keeps every point, stale ones too
                    for message in batch:
                        for point in points(message):
                            self.sink.write(*point)
                await self._store_batch(batch, interval)
                driver.acknowledge_delivered()  # only now may the broker forget them
                # With a backlog nothing above suspends: let the unlocks, command replies,
                # the API and the lease renewal run between batches.
                await asyncio.sleep(0)

    async def _store_batch(self, batch: list[DeviceMessage], interval: float) -> None:
        """Handle ``batch`` in one transaction; if the disk refuses it, keep it (nothing of
        it was kept, nothing acknowledged) and retry once the disk takes writes again."""
        while True:
            before = asyncio.all_tasks()
            try:
                await self.flow.on_device_messages(batch)
                return
            except Exception as exc:
                # The commands it journaled were rolled back with it (a full disk, a lost
                # connection, a fenced-out leader): none may go out.
                for task in asyncio.all_tasks() - before:
                    task.cancel()
                if not self.storage.refused(exc):
                    raise
            self.batches_retried += 1
            await self.storage.until_ingest(interval)

    def _reader_part(self, settings: ReaderSettings, driver: ReaderDriver) -> PartRunner:
        async def run() -> None:
            async with driver:
                async for event in driver.taps():
                    tap = self.taps.handle(event)
                    self.recent_taps.append(tap)
                    if not tap.duplicate:
                        task = self.flow.spawn(
                            self.flow.on_tap(tap, station_id=settings.station_id)
                        )
                        task.add_done_callback(self._tap_done)

        return run

    def _verify_published_tap(self, event: TapEvent) -> Tap:
        """A tap a reader published on the broker: the same verifier and duplicate folding
        as a local reader's, shown among the recent taps."""
        tap = self.taps.handle(event)
        self.recent_taps.append(tap)
        return tap

    def _tap_done(self, task: asyncio.Task[Any]) -> None:
        """A tap the flow could not handle is counted (the flow's tasks log each failure)."""
        if not task.cancelled() and task.exception() is not None:
            self.tap_failures += 1

    async def _run_api(self) -> None:
        s = self.settings
        tokens = {t.token.get_secret_value(): list(t.scopes) for t in s.api.tokens}
        app = create_app(
            self.store,
            self.outbox,
            tokens=tokens,
            command_sender=FlowCommandSender(CurrentFlow(self)),  # the current term's flow
            play_verifier=SunPlayVerifier(self.verifier),
            gbfs=s.gbfs.model_copy(update={"name": s.gbfs.name or s.site.name}),
            gbfs_sources=GbfsSources(  # the feeds publish what the engine enforces
                lambda: self.engine.bundle, lambda pid: self.engine.occupancy(pid)[0]
            ),
            metrics=self.metrics,
            extra_routers=[status_router(self.snapshot)],
            limits=ApiLimits(body_bytes=s.api.max_body, large_body_bytes=s.api.max_bundle_body),
            cluster=self.cluster.status if self.cluster.enabled else None,
        )
        app.state.health_provider = self.health
        config = server_config(  # the app's limits: head/body timeouts, connection cap
            app,
            host=s.api.host,
            port=s.api.port,
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's records go through the daemon's handler (JSON or console)
        )
        server = _QuietServer(config)
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serving.done():
                    await serving  # raises why it could not start
                    raise RuntimeError("API server stopped before it started")
                await asyncio.sleep(0.02)
            self.api_port = server.servers[0].sockets[0].getsockname()[1]
            log.info("API listening", extra={"url": f"http://{s.api.host}:{self.api_port}"})
            # Shielded: a stop cancels this part, not uvicorn's task, which then shuts down
            # cleanly below (lifespan included) instead of dying with a logged CancelledError.
            await asyncio.shield(serving)
            raise RuntimeError("API server stopped")
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 5)

    async def _run_telemetry(self) -> None:
        """Runs the sink's writer thread; its counters show in ``/health``."""
        assert self.sink is not None
        self.sink.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.sink.close, 5.0)

    async def _run_housekeeping(self) -> None:
        """Keeps the gauges current, looks at the disk (probing while it refuses writes, so
        its state clears even with nothing to ingest) and applies pushed bundles."""
        while True:
            self.storage.poll()
            self.storage_alarm.flush()
            self.metrics.broker_up.set(int(self.mqtt.connected))
            for reader_id, driver in self.readers.items():
                up = any(st.state == "up" for st in driver.status())
                self.metrics.reader_up.labels(reader=reader_id).set(int(up))
            self._apply_pushed_bundle()
            self.metrics.rule_bundle_version.set(_numeric_version(self.engine.bundle.version))
            await asyncio.sleep(1.0)

    def _apply_pushed_bundle(self) -> None:
        """Swap in a bundle the backend pushed through the API (it was checked on the way in)."""
        saved = self.store.bundles.current()
        if saved is None or saved.version == self._applied_bundle:
            return
        self._applied_bundle = saved.version
        try:
            bundle = load_bundle(saved.body)
        except Exception as exc:  # checked at push time; a failure here keeps the running one
            log.error("pushed rule bundle does not load", extra={"error": str(exc)[:200]})
            return
        self.bundles.swap(bundle)
        self.engine.swap(bundle)
        log.info("rule bundle swapped", extra={"version": bundle.version})

    # -- running ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Recover, start every part, and run until stopped (in a cluster, the leader's parts
        wait for a term, which recovers first: ``daemon/cluster.py``)."""
        cluster = self.cluster
        if not cluster.enabled:
            await self.flow.recover()
        self.supervisor.add("mqtt", cluster.leader_only(self._run_mqtt))
        for reader in filter(lambda r: r.local, self.settings.readers):
            part = self._reader_part(reader, self.readers[reader.id])
            self.supervisor.add(f"reader:{reader.id}", cluster.leader_only(part))
        if cluster.enabled:
            self.supervisor.add("cluster", cluster.run)
        if self.settings.api.enabled:
            self.supervisor.add("api", self._run_api)
        if self.sink is not None:
            self.supervisor.add("telemetry", self._run_telemetry)
        self.supervisor.add("housekeeping", self._run_housekeeping)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self.started.set()
        try:
            await self.supervisor.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await self.flow.aclose()
            self.close()

    def stop(self) -> None:
        """Begin a clean shutdown (what SIGTERM and SIGINT do)."""
        log.info("stopping")
        self.supervisor.stop()

    def close(self) -> None:
        """Release the databases; every committed event is already on disk."""
        with contextlib.suppress(Exception):
            self.replay.close()
        with contextlib.suppress(Exception):
            self.cluster.close()
        with contextlib.suppress(Exception):
            self.db.close()

    # -- views --------------------------------------------------------------------------------
    def readings(self) -> Readings:
        """The parts' own counters, for ``/metrics``."""
        tally = self.engine.tally
        decisions = {("command", kind): n for kind, n in tally.commands.items()}
        decisions |= {("alert", f"{t}:{a}"): n for (t, a), n in tally.alerts.items()}
        decisions |= {("notification", kind): n for kind, n in tally.notifications.items()}
        return Readings(
            mqtt=self.mqtt.status(),
            taps=dict(self.taps.counters),
            decisions=decisions,
            alerts_raised=dict(self.flow.alerts.raised),
            alerts_cleared=dict(self.flow.alerts.cleared),
            ignored=dict(self.flow.ignored),
            device_messages=dict(self.flow.inbound),
            clock_skewed_devices=len(self.flow.clock_skewed_devices()),
            storage=self.storage_status(),
            background_failures=self.flow.tasks.failed,
        )

    def storage_status(self) -> dict[str, Any]:
        """The disk as ``/health`` and ``/metrics`` show it (``StoreHealth.status`` and what
        the daemon adds: batches kept and retried, site alarms waiting to be written)."""
        return {
            **self.storage.status(),
            "batches_retried": self.batches_retried,
            "alarms_unsent": len(self.storage_alarm.unsent),
        }

    def _problems(self, parts: list[dict[str, Any]], storage: dict[str, Any]) -> list[str]:
        """Why ``/health`` says ``degraded``: a part not running (with the failure that
        began it), the disk, the broker away, an outbox only alerts and outcomes fill."""
        problems = [
            f"part {p['name']} is {p['state']}: {p['cause'] or p['last_error']}"
            for p in parts
            if p["state"] != "running"
        ]
        if storage["state"] != "ok":
            problems.append(f"storage {storage['state']}: {storage['cause']}")
        mqtt_running = any(p["name"] == "mqtt" and p["state"] == "running" for p in parts)
        if mqtt_running and self.cluster.leading and not self.mqtt.connected:  # a standby: none
            problems.append(f"broker not connected: {self.mqtt.stats.last_error}")
        if self.outbox.over_bound():
            problems.append("outbox over max_pending: only alerts and outcomes are pending")
        return problems

    def health(self) -> dict[str, Any]:
        parts = [h.as_dict() for h in self.supervisor.health.values()]
        readers = [
            {**_reader_status(st), "id": rid}
            for rid, d in self.readers.items()
            for st in d.status()
        ]
        storage = self.storage_status()
        problems = self._problems(parts, storage)
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "parts": parts,
            "readers": readers,
            "broker": self.mqtt.status(),
            "storage": storage,
            "outbox_bounds": {
                "state": self.outbox.limits.get(Priority.STATE),
                "max_pending": self.outbox.max_pending,
                "over": self.outbox.over_bound(),
            },
            "background_failures": self.flow.tasks.failed,
            "devices": {
                "inbound": dict(self.flow.inbound),  # stale, duplicate, clock_skew, failed
                "clock_skewed": self.flow.clock_skewed_devices(),  # id -> last offset (ms)
            },
            "telemetry": dataclasses.asdict(self.sink.counters) if self.sink is not None else None,
            "rule_bundle": self.engine.bundle.version,
            "cluster": self.cluster.status().as_dict(),
        }

    async def snapshot(self) -> dict[str, Any]:
        """The status page's live picture."""
        return status_snapshot(
            self.store,
            self.engine.bundle,
            site_name=self.settings.site.name,
            parts=[h.as_dict() for h in self.supervisor.health.values()],
            readers=[
                {"reader": rid, **{k: v for k, v in _reader_status(st).items() if k != "counters"}}
                for rid, d in self.readers.items()
                for st in d.status()
            ],
            taps=[
                {
                    "at": time.time() - (time.monotonic() - t.verified_at),
                    "reader": t.event.reader,
                    "uid": t.uid,
                    "valid": t.accepted,
                    "reason": t.reason,
                    "record": t.record,
                }
                for t in reversed(self.recent_taps)
            ],
        )
