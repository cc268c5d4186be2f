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
from dockgate.api.gbfs import GbfsSettings
from dockgate.api.metrics import GatewayMetrics
from dockgate.api.ports import FlowCommandSender, SunPlayVerifier
from dockgate.api.status import status_router
from dockgate.drivers.mqtt import MqttClosed, MqttDriver
from dockgate.drivers.readers import ReaderSpec, make_reader
from dockgate.gateway.daemon.points import points
from dockgate.gateway.daemon.settings import DaemonSettings, ReaderSettings
from dockgate.gateway.daemon.snapshot import status_snapshot
from dockgate.gateway.daemon.supervisor import PartRunner, Supervisor
from dockgate.gateway.flow import RideFlow
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.protocol import DeviceKind
from dockgate.gateway.readers import ReaderDriver, ReaderStatus
from dockgate.gateway.rules import BundleHolder, RuleBundle, RulesEngine, load_bundle
from dockgate.gateway.store import Database, Store
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
        self._build()

    # -- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.settings
        data_dir = Path(s.site.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / "dockgate.sqlite3")
        self.store = Store(self.db)
        self.outbox = Outbox(
            self.db,
            limits={
                Priority.OUTCOME: s.outbox.outcome,
                Priority.STATE: s.outbox.state,
                Priority.TELEMETRY: s.outbox.telemetry,
            },
            max_pending=s.outbox.max_pending,
        )
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
        self.flow = RideFlow(
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
        )
        self._next_vehicle_id = max((v.id for v in self.store.vehicles.all()), default=0) + 1
        self._known_serials = {v.serial_number for v in self.store.vehicles.all()}
        for reader in s.readers:
            self.readers[reader.id] = make_reader(_reader_spec(reader))

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

    def _register_vehicle(self, serial: str) -> None:
        """A vehicle the site has not seen yet joins the fleet on its first valid message."""
        next_id = self._next_vehicle_id
        self._next_vehicle_id += 1
        self.store.vehicles.upsert(next_id, self.settings.site.network_id, serial)
        self._known_serials.add(serial)
        log.info("new vehicle", extra={"serial": serial, "vehicle_id": next_id})

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
        async with self.mqtt as driver:
            self.metrics.broker_up.set(1)
            try:
                while True:
                    try:
                        batch = await driver.get_batch(1024)
                    except MqttClosed:
                        return
                    for message in batch:
                        if self.sink is not None:
                            for point in points(message):
                                self.sink.write(*point)
                        serial = message.device.device_id
                        if (
                            message.device.kind is DeviceKind.VEHICLE
                            and serial not in self._known_serials
                        ):
                            self._register_vehicle(serial)
                    await self.flow.on_device_messages(batch)
                    driver.acknowledge_delivered()  # only now may the broker forget them
            finally:
                self.metrics.broker_up.set(0)

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

    def _tap_done(self, task: asyncio.Task[Any]) -> None:
        """A tap the flow could not handle is logged and counted, never lost silently."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.tap_failures += 1
            log.error(
                "tap handling failed",
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
            )

    async def _run_api(self) -> None:
        s = self.settings
        tokens = {t.token.get_secret_value(): list(t.scopes) for t in s.api.tokens}
        app = create_app(
            self.store,
            self.outbox,
            tokens=tokens,
            command_sender=FlowCommandSender(self.flow),
            play_verifier=SunPlayVerifier(self.verifier),
            gbfs=GbfsSettings(name=s.site.name),
            metrics=self.metrics,
            extra_routers=[status_router(self.snapshot)],
            limits=ApiLimits(body_bytes=s.api.max_body, large_body_bytes=s.api.max_bundle_body),
        )
        app.state.health_provider = self.health
        config = server_config(  # the app's limits: head/body timeouts, connection cap
            app, host=s.api.host, port=s.api.port, log_level="warning", access_log=False
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
            await serving
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
        """Keeps the gauges current and lets the flow act on time-based rules."""
        while True:
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
        """Recover, start every part, and run until stopped."""
        await self.flow.recover()
        self.supervisor.add("mqtt", self._run_mqtt)
        for reader in self.settings.readers:
            part = self._reader_part(reader, self.readers[reader.id])
            self.supervisor.add(f"reader:{reader.id}", part)
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
            self.db.close()

    # -- views --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        parts = [h.as_dict() for h in self.supervisor.health.values()]
        readers = [
            {**_reader_status(st), "id": rid}
            for rid, d in self.readers.items()
            for st in d.status()
        ]
        degraded = any(p["state"] != "running" for p in parts)
        return {
            "status": "degraded" if degraded else "ok",
            "parts": parts,
            "readers": readers,
            "broker": self.mqtt.status(),
            "telemetry": dataclasses.asdict(self.sink.counters) if self.sink is not None else None,
            "rule_bundle": self.engine.bundle.version,
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
