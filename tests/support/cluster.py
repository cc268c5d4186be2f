"""A site of several ``dockgate run`` nodes on one PostgreSQL and one Mosquitto (issue 14).

Each node is its own process (:class:`ClusterNode`, a :class:`DaemonProcess` of the
system-test harness) with its own API port and data directory, and the site's shared parts:
the same ``[store] url``, the same ``[mqtt] client_id``, the same KEK file and keys, and a
``[cluster]`` table of its own (``node_id``, ``advertise_url``) as docs/cluster.md's contract
says. :class:`Cluster` starts them and drives the faults:

- ``leader()`` polls ``/health/leader`` on every running node (exactly one must answer 200);
  ``wait_leader(...)`` waits for one, optionally other than a given node;
- ``kill(node)`` (SIGKILL), ``pause(node)`` / ``resume(node)`` (SIGSTOP / SIGCONT);
- ``restart_postgres()`` and ``restart_broker()`` (same port, same data);
- ``query(...)`` reads the shared database as an operator would.

:class:`WriteAudit` makes PostgreSQL itself record every row a write changes (a trigger per
table) with the writing session's client port and the time; :class:`PortBook` maps those
ports to the node processes that own them (sampled from ``/proc``), so a test can say which
node committed what, and when, without trusting the nodes' own account: this is how fencing
(a paused leader commits nothing after it wakes) and the failover time (the first device
message committed by the new leader) are observed from outside.

:class:`SiteApi` is the public API as a fleet backend reaches a site: reads from any node
that answers, writes to the leader (a standby's 307 is followed by hand, re-sending the
token: an HTTP client drops credentials on a redirect to another origin). :class:`FeedPuller`
pulls ``/api/v1/events`` by cursor through it on a thread of its own, acknowledging each page,
checking as it goes that events arrive once and in cursor order (:class:`Backend`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from dockgate.gateway.protocol import UnlockSpot
from dockgate.gateway.store._postgres import pyformat, row_factory
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.postgres import PostgresServer
from tests.support.system_harness import (
    TOKEN,
    Backend,
    DaemonProcess,
    ReaderConf,
    RecordingStation,
    StationConf,
)

__all__ = [
    "Cluster",
    "ClusterNode",
    "CountingStation",
    "Failover",
    "FeedPuller",
    "PortBook",
    "SiteApi",
    "SiteConf",
    "WriteAudit",
    "fail_over",
    "percentile",
    "wait_for",
]


@dataclass(frozen=True)
class SiteConf:
    """What every node of the site shares (and how many nodes there are)."""

    nodes: int = 2
    stations: tuple[StationConf, ...] = ()
    readers: tuple[ReaderConf, ...] = ()
    client_id: str = "dockgate-site"  # the site's one gateway client id, on every node
    lease_seconds: float = 3.0
    renew_seconds: float = 1.0
    log_level: str = "INFO"
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # more configuration


class ClusterNode(DaemonProcess):
    """One node: ``dockgate run`` on the site's shared store with a ``[cluster]`` table."""

    def __init__(
        self,
        workdir: Path,
        broker_port: int,
        *,
        node_id: str,
        site: SiteConf,
        shared: dict[str, Any],
    ) -> None:
        self.node_id = node_id
        self.store_url: str = shared["store"]["url"]
        self.paused = False
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = {
            "enabled": True,
            "node_id": node_id,
            "lease_seconds": site.lease_seconds,
            "renew_seconds": site.renew_seconds,
        }
        extra = {name: dict(values) for name, values in shared.items()}
        extra["cluster"] = cluster
        for name, values in site.tables.items():
            extra.setdefault(name, {}).update(values)
        super().__init__(
            workdir,
            broker_port,
            stations=site.stations,
            readers=site.readers,
            client_id=site.client_id,
            extra=extra,
            log_level=site.log_level,
        )

    @property
    def url(self) -> str:
        """This node's API as the others reach it (its ``advertise_url``)."""
        return f"http://127.0.0.1:{self.api_port}"

    def write_config(self) -> Path:
        self.extra["cluster"]["advertise_url"] = self.url
        return super().write_config()

    @property
    def store_target(self) -> str:
        return self.store_url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.alive else None

    # -- faults ------------------------------------------------------------------------------
    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and its state but runs no instruction."""
        assert self.proc is not None and self.alive and not self.paused
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None and self.paused
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def start(self, timeout: float = 30.0) -> float:
        self.paused = False
        return super().start(timeout)

    def kill(self) -> None:
        super().kill()  # SIGKILL ends a stopped process too
        self.paused = False

    # -- what it says about itself -------------------------------------------------------------
    @property
    def serving(self) -> bool:
        """Running and not paused: a request to it gets an answer."""
        return self.alive and not self.paused

    def is_leader(self, timeout: float = 1.0) -> bool:
        """``GET /health/leader`` answers 200 (no auth, as a load balancer asks)."""
        if not self.serving:
            return False
        try:
            response = httpx.get(f"{self.url}/health/leader", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def cluster_state(self) -> dict[str, Any]:
        """The ``cluster`` part of ``/health``: role, token, lease age, the leader known."""
        state: dict[str, Any] = self.health()["cluster"]
        return state

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of ``/metrics`` (``labels`` as written, e.g. ``to="leader"``)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == wanted:
                return float(value)
        return None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of ``sql`` (``?`` placeholders) on the site's database."""
        with psycopg.connect(self.store_url, row_factory=row_factory) as conn:
            return conn.execute(pyformat(sql), args).fetchall()


class Cluster:
    """The site: its nodes (``node-a``, ``node-b``, ...), its database, its broker."""

    def __init__(
        self, workdir: Path, broker: Mosquitto, postgres: PostgresServer, site: SiteConf
    ) -> None:
        self.workdir = workdir
        self.broker = broker
        self.postgres = postgres
        self.site = site
        self.database = postgres.create_database("cluster")
        self.url = postgres.url(self.database)
        self.kek_file = workdir / "site-kek"  # every node seals and opens keys with it
        fd = os.open(self.kek_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        shared = {"store": {"url": self.url}, "secrets": {"kek_file": str(self.kek_file)}}
        self.nodes = [
            ClusterNode(
                workdir / f"node-{letter}",
                broker.port,
                node_id=f"node-{letter}",
                site=site,
                shared=shared,
            )
            for letter in "abcdefgh"[: site.nodes]
        ]
        self.ports = PortBook(self.nodes, postgres.port)
        self.on_close: list[Callable[[], object]] = []  # helpers' threads to stop
        self._db: psycopg.Connection[Any] | None = None

    def node(self, node_id: str) -> ClusterNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ClusterNode:
        """The first node (it makes the schema and leads), then the others; the leader."""
        self.ports.start()
        self.nodes[0].start(timeout)
        leader, _ = self.wait_leader(timeout)
        for node in self.nodes[1:]:
            node.start(timeout)
        return leader

    def close(self) -> None:
        """Kill what still runs (a paused node too), stop sampling, drop the database."""
        for stop in self.on_close:
            stop()
        self.ports.stop()
        for node in self.nodes:
            node.close()
        self._close_db()
        with contextlib.suppress(Exception):
            self.postgres.drop_database(self.database)

    # -- leadership --------------------------------------------------------------------------------
    def leaders(self) -> list[ClusterNode]:
        """Every running node that says it leads (``/health/leader`` 200)."""
        return [n for n in self.nodes if n.is_leader()]

    def leader(self) -> ClusterNode | None:
        """The one leader, None if there is none; AssertionError if two nodes say they lead."""
        found = self.leaders()
        assert len(found) <= 1, f"two leaders at once: {[n.node_id for n in found]}"
        return found[0] if found else None

    def wait_leader(
        self, timeout: float = 15.0, *, other_than: ClusterNode | None = None, poll: float = 0.02
    ) -> tuple[ClusterNode, float]:
        """The leader once there is one (not ``other_than``), and when it was first seen
        (``time.time()``)."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader, time.time()
            if time.monotonic() > deadline:
                roles = {n.node_id: self._role(n) for n in self.nodes}
                raise AssertionError(f"no leader within {timeout} s; roles {roles}")
            time.sleep(poll)

    @staticmethod
    def _role(node: ClusterNode) -> str:
        if not node.alive:
            return "dead"
        if node.paused:
            return "paused"
        try:
            return str(node.cluster_state().get("role"))
        except (httpx.HTTPError, KeyError) as exc:
            return f"? ({type(exc).__name__})"

    def diagnosis(self) -> dict[str, Any]:
        """What each node says of itself (role, its MQTT part, what it took from the broker):
        for a failure message."""
        found: dict[str, Any] = {}
        for node in self.nodes:
            if not node.serving:
                found[node.node_id] = "dead" if not node.alive else "paused"
                continue
            try:
                health = node.health()
            except httpx.HTTPError as exc:
                found[node.node_id] = f"no answer: {exc!r}"
                continue
            found[node.node_id] = {
                "cluster": health.get("cluster"),
                "parts": {p["name"]: p["state"] for p in health.get("parts", [])},
                "broker": health.get("broker"),
                "devices": health.get("devices"),
            }
        with contextlib.suppress(psycopg.Error):
            found["journal"] = [
                tuple(r)
                for r in self.query(
                    "SELECT id, command, target_kind, state, outcome FROM command_journal"
                    " WHERE command <> 'set-max-speed' ORDER BY id"
                )
            ]
        return found

    def standbys(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.serving and not n.is_leader()]

    # -- faults ------------------------------------------------------------------------------------
    def kill(self, node: ClusterNode, sig: int = signal.SIGKILL) -> float:
        """Send ``sig`` (SIGKILL: the machine died) and wait for the end; when it was sent."""
        assert node.proc is not None and node.alive
        self.ports.sample()  # its last ports are known even if it opened one just now
        at = time.time()
        if sig == signal.SIGKILL:
            node.kill()
        else:
            node.proc.send_signal(sig)
            node.proc.wait(15)
        return at

    def pause(self, node: ClusterNode) -> float:
        self.ports.sample()
        at = time.time()
        node.pause()
        return at

    def resume(self, node: ClusterNode) -> float:
        at = time.time()
        node.resume()
        return at

    def restart_postgres(self, down_for: float = 1.0, *, crash: bool = False) -> None:
        """Stop PostgreSQL (fast shutdown, or ``crash``: immediate, recovery at the start),
        stay down ``down_for`` seconds, start it again on the same port and data."""
        self._close_db()
        if crash:
            self.postgres.kill()
        else:
            self.postgres.stop()
        time.sleep(down_for)
        self.postgres.start()

    def restart_broker(
        self, down_for: float = 1.0, on_stopped: Callable[[], object] | None = None
    ) -> None:
        """Stop Mosquitto (it saves its persistence file), call ``on_stopped``, stay down
        ``down_for`` seconds, start it again on the same port."""
        self.broker.stop()
        if on_stopped is not None:
            on_stopped()
        time.sleep(down_for)
        self.broker.start()

    # -- the shared database ---------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(self.url, row_factory=row_factory, autocommit=True)
        return self._db

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
            self._db = None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of ``sql`` (``?`` placeholders): each query its own snapshot (autocommit)."""
        try:
            return self._conn().execute(pyformat(sql), args).fetchall()
        except psycopg.OperationalError:
            self._close_db()  # the server went away: the next query reconnects
            raise

    def scalar(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def execute(self, sql: str) -> None:
        self._conn().execute(sql)


# -- who committed what ----------------------------------------------------------------------------
class PortBook:
    """Which node process owns which client port of a PostgreSQL connection, over time.

    Sampled from ``/proc`` (psutil) on a thread every ``every`` seconds and on demand; a port
    once seen stays attributed to its node (ephemeral ports are not reused within a test).
    A stopped (SIGSTOP) process's sockets are still listed.
    """

    def __init__(self, nodes: list[ClusterNode], pg_port: int, every: float = 0.05) -> None:
        self.nodes = nodes
        self.pg_port = pg_port
        self.every = every
        self.owner: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="port-book", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        for node in self.nodes:
            pid = node.pid
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(pid).net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == self.pg_port:
                        with self._lock:
                            self.owner[conn.laddr.port] = node.node_id

    def node_of(self, port: int | None) -> str:
        """The node that owns ``port`` (``?`` if no sample saw it)."""
        if port is None:
            return "?"
        with self._lock:
            known = self.owner.get(port)
        if known is None:
            self.sample()
            with self._lock:
                known = self.owner.get(port)
        return known or "?"


@dataclass(frozen=True)
class Write:
    """One row a committed transaction changed, as PostgreSQL recorded it."""

    id: int
    at: float  # time.time() scale: PostgreSQL's clock_timestamp() on this machine
    table: str
    op: str
    port: int | None
    node: str


AUDIT_TABLE = "zz_write_audit"
AUDIT_SQL = f"""
CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    port INTEGER DEFAULT inet_client_port(),
    backend INTEGER NOT NULL DEFAULT pg_backend_pid(),
    xact BIGINT NOT NULL DEFAULT txid_current(),
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    outbox_cursor BIGINT
);
CREATE OR REPLACE FUNCTION zz_audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cursor_given BIGINT;
BEGIN
    IF TG_TABLE_NAME = 'outbox_events' AND TG_OP = 'INSERT' THEN
        cursor_given := NEW.cursor;
    END IF;
    INSERT INTO {AUDIT_TABLE}(tbl, op, outbox_cursor) VALUES (TG_TABLE_NAME, TG_OP, cursor_given);
    RETURN NULL;
END $$;
"""
#: The lease's own rows (whatever the implementation calls them) are the one thing a node
#: that is not the leader may touch: it asks for the lease there.
LEASE_TABLES = re.compile(r"lease|leader|member|heartbeat|cluster_node|nodes$", re.IGNORECASE)
#: Tables only device messages change: the first write to one of them by a new leader is
#: "the first device message it committed".
DEVICE_EFFECTS = ("inbox", "vehicle_clocks", "station_clocks")


class WriteAudit:
    """Every row changed in the site's tables, recorded by PostgreSQL with its writer's port.

    ``install()`` once the schema exists (after the first node started): a deferred
    constraint trigger (``AFTER ... FOR EACH ROW``, ``INITIALLY DEFERRED``) on every table but
    the lease's own. It runs at COMMIT, so ``at`` is the commit's time, not the statement's:
    a transaction begun before a pause and committed after it is dated after it. A rolled-back
    transaction leaves no audit row; a committed one leaves one per row it changed.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.tables: list[str] = []

    def install(self) -> list[str]:
        cluster = self.cluster
        cluster.execute(AUDIT_SQL)
        names = [
            r[0]
            for r in cluster.query(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        self.tables = [n for n in names if n != AUDIT_TABLE and not LEASE_TABLES.search(n)]
        for name in self.tables:
            cluster.execute(
                f'DROP TRIGGER IF EXISTS zz_audit ON "{name}";'
                f' CREATE CONSTRAINT TRIGGER zz_audit AFTER INSERT OR UPDATE OR DELETE ON "{name}"'
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION zz_audit_write()"
            )
        return self.tables

    def mark(self) -> int:
        """The last audit row now (writes after it are later than this moment)."""
        return int(self.cluster.scalar(f"SELECT coalesce(max(id), 0) FROM {AUDIT_TABLE}"))

    def writes(self, after: int = 0, tables: Iterable[str] | None = None) -> list[Write]:
        sql = f"SELECT id, at, tbl, op, port FROM {AUDIT_TABLE} WHERE id > ?"
        args: tuple[Any, ...] = (after,)
        if tables is not None:
            wanted = list(tables)
            sql += " AND tbl IN (" + ", ".join("?" * len(wanted)) + ")"
            args += tuple(wanted)
        rows = self.cluster.query(sql + " ORDER BY id", args)
        book = self.cluster.ports
        return [Write(r[0], r[1], r[2], r[3], r[4], book.node_of(r[4])) for r in rows]

    def committed_cursors(self) -> list[int]:
        """The outbox cursor of every event committed since the audit was installed, in order
        (an event compacted or acknowledged later is still here: it was handed out)."""
        rows = self.cluster.query(
            f"SELECT outbox_cursor FROM {AUDIT_TABLE} WHERE outbox_cursor IS NOT NULL"
            " ORDER BY outbox_cursor"
        )
        return [int(r[0]) for r in rows]

    def cursor_gaps(self) -> list[tuple[int, int]]:
        """Cursors never committed between the first and the last committed since the audit
        was installed, as (first missing, how many): a gapless outbox has none."""
        cursors = self.committed_cursors()
        return [(a + 1, b - a - 1) for a, b in itertools.pairwise(cursors) if b - a > 1]

    def around_gap(self, first_missing: int, count: int) -> list[tuple[int, float, str]]:
        """The committed cursors on either side of a gap: (cursor, commit time, node)."""
        rows = self.cluster.query(
            f"SELECT outbox_cursor, at, port FROM {AUDIT_TABLE}"
            " WHERE outbox_cursor IN (?, ?) ORDER BY outbox_cursor",
            (first_missing - 1, first_missing + count),
        )
        return [(int(r[0]), float(r[1]), self.cluster.ports.node_of(r[2])) for r in rows]

    def by_node(self, after: int = 0) -> Counter[str]:
        return Counter(w.node for w in self.writes(after))

    def first_device_commit(self, by: ClusterNode, after: int) -> Write | None:
        """The first device-message effect ``by`` committed after audit row ``after``."""
        for write in self.writes(after, DEVICE_EFFECTS):
            if write.node == by.node_id:
                return write
        return None


# -- the public API, as a backend reaches a site ---------------------------------------------------
class SiteApiError(httpx.HTTPError):
    """No node answered the request (every one down, paused, or without a leader)."""


class SiteApi:
    """Reads from whichever node answers; writes to the leader (a standby's 307 followed)."""

    def __init__(self, cluster: Cluster, timeout: float = 3.0) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self.redirects: Counter[str] = Counter()
        self.unavailable = 0
        self._headers = {"Authorization": f"Bearer {TOKEN}"}

    def _serving(self) -> Iterator[ClusterNode]:
        return (n for n in self.cluster.nodes if n.serving)

    def get(self, path: str, **params: Any) -> Any:
        for node in self._serving():
            try:
                response = httpx.get(
                    node.url + path, params=params or None, headers=self._headers,
                    timeout=self.timeout,
                )  # fmt: skip
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                body = response.json()
                return body["data"] if isinstance(body, dict) and "data" in body else body
        raise SiteApiError(f"GET {path}: no node answered")

    def send(self, method: str, path: str, body: Any = None) -> Any:
        for node in self._serving():
            try:
                response = self._request(method, node.url + path, body)
            except httpx.HTTPError:
                continue
            if response.status_code == 503:
                self.unavailable += 1
                continue
            if response.status_code >= 300:
                raise SiteApiError(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return response.json()["data"]
        raise SiteApiError(f"{method} {path}: no node took it")

    def _request(self, method: str, url: str, body: Any) -> httpx.Response:
        response = httpx.request(
            method, url, json=body, headers=self._headers, timeout=self.timeout
        )
        if response.status_code == 307:
            location = response.headers["location"]
            self.redirects[location.split("/api/", 1)[0]] += 1
            response = httpx.request(
                method, location, json=body, headers=self._headers, timeout=self.timeout
            )
        return response


class FeedPuller(Backend):
    """The fleet backend on a thread: pulls the feed through :class:`SiteApi` every ``every``
    seconds and acknowledges, checking once-only, in-order delivery (``Backend.pull``)."""

    def __init__(self, api: SiteApi, every: float = 0.1) -> None:
        super().__init__(api)  # type: ignore[arg-type]  # the interface Backend uses: get, send
        self.every = every
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-puller", daemon=True)
        api.cluster.on_close.append(self._stop.set)  # a test that failed early: stop pulling

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.pull():
                    self._stop.wait(self.every)
        except BaseException as exc:  # an order or duplicate violation: the test reports it
            self.failure = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert self.failure is None, f"the event feed broke its contract: {self.failure!r}"

    def settle(self, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Stop the thread, then drain until nothing new came for ``quiet`` seconds."""
        self.stop()
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet:
            if self.drain():
                last_new = time.monotonic()
            assert time.monotonic() < deadline, "the event feed never went quiet"
            time.sleep(0.1)


# -- the simulated station, counting per spot ------------------------------------------------------
class CountingStation(RecordingStation):
    """A station simulator that also counts the ``unlock-spot`` commands it executed per spot
    (a command id it already executed is answered from memory and never reaches here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unlocks: Counter[int] = Counter()

    def execute(self, cmd: Any) -> Any:
        if isinstance(cmd, UnlockSpot):
            self.unlocks[cmd.spot] += 1
        return super().execute(cmd)

    def undocks_per_spot(self) -> Counter[int]:
        return Counter(spot for spot, _vehicle in self.undocks)


# -- failover, timed from outside ------------------------------------------------------------------
@dataclass(frozen=True)
class Failover:
    """One failover: the leader killed, its successor, and when each thing was seen.

    Times are ``time.time()``: ``killed_at`` just before the SIGKILL; ``led_at`` the first
    poll of ``/health/leader`` that found the successor leading; ``committed_at`` the first
    poll of PostgreSQL (every 10 ms) that found a device message the successor committed,
    and ``commit_db_at`` that commit's own time by PostgreSQL's clock.
    """

    dead: ClusterNode
    successor: ClusterNode
    killed_at: float
    led_at: float
    committed_at: float
    commit_db_at: float
    tokens: tuple[int, int]  # the dead leader's, the successor's

    @property
    def lead_s(self) -> float:
        return self.led_at - self.killed_at

    @property
    def first_commit_s(self) -> float:
        """Leader death to the first device message committed by the new leader."""
        return self.committed_at - self.killed_at

    @property
    def first_commit_db_s(self) -> float:
        return self.commit_db_at - self.killed_at


def fail_over(
    cluster: Cluster, audit: WriteAudit, leader: ClusterNode, *, restart: bool = True
) -> Failover:
    """Kill ``leader`` once a standby is warm; wait for the successor to lead and to commit a
    device message (device traffic must be flowing); with ``restart`` start the killed node
    again and wait until it stands by."""
    wait_for(
        lambda: any(n.cluster_state()["role"] == "standby" for n in cluster.standbys()),
        15,
        "a warm standby",
    )
    token = int(leader.cluster_state()["token"])
    mark = audit.mark()
    killed_at = cluster.kill(leader)
    successor, led_at = cluster.wait_leader(15.0, other_than=leader, poll=0.01)
    write: Write = wait_for(
        lambda: audit.first_device_commit(successor, mark),
        15,
        "a device message committed by the new leader",
        poll=0.01,
    )
    committed_at = time.time()
    tokens = (token, int(successor.cluster_state()["token"]))
    if restart:
        leader.start()
        wait_for(lambda: leader.cluster_state()["role"] == "standby", 15, "the killed node back")
    return Failover(leader, successor, killed_at, led_at, committed_at, write.at, tokens)


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (of 10 samples, p99 is the largest)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``check`` (database and HTTP errors count as not yet) until truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psycopg.Error, httpx.HTTPError):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
