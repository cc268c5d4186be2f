"""The gateway's MQTT v5 driver: one connection, validated inbound messages, commands.

paho-mqtt runs in one network thread of ours; this driver does not use aiomqtt, which hands
every message to the event loop on its own. Here the network thread frames each message,
appends it to a bounded deque and wakes the event loop once per burst, only when the consumer
waits; the consumer validates a batch as it takes it. Only command replies are validated on
the network thread, as they arrive, so a command's round trip does not wait for the reports
read before its reply. ``bench/mqtt.py`` measures the ingest rate beside a raw paho subscriber.

    async with MqttDriver(settings) as driver:
        async for msg in driver.messages():
            ...
        outcome = await driver.send_command(DeviceRef.station(1, "ST01"), UnlockSpot(spot=3))
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dockgate.drivers.mqtt._props import (
    PackedProperties,
    pack_publish_properties,
    pack_response_topic,
)
from dockgate.drivers.mqtt.acks import AckLedger
from dockgate.drivers.mqtt.outcome import CommandOutcome, CommandStatus
from dockgate.drivers.mqtt.paho_compat import (
    BarePublish,
    BufferedSocket,
    FastClient,
    close_sockets,
    new_properties,
    queue_pubacks,
    raw_topic,
)
from dockgate.drivers.mqtt.settings import MqttSettings
from dockgate.drivers.mqtt.stats import DriverStats, LatencyHistogram
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.protocol import (
    COMMAND_KIND,
    PHYSICAL_COMMANDS,
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceMessage,
    DeviceRef,
    Outcome,
    OutcomeStatus,
    ProtocolError,
    decode,
    encode,
    now_ms,
    subscriptions,
)

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike  # a typing-only protocol in paho


log = logging.getLogger(__name__)
T = TypeVar("T")

_BURST_GAP = 0.0005  # s: a pause this long ends a burst of inbound messages
_WAKE_BATCH = 512  # wake the consumer at least every this many queued messages
_TICK = 0.005  # s: command deadlines are rounded up to this, so timeouts expire together
_SESSION_TAKEN_OVER = 0x8E  # MQTT v5 DISCONNECT reason: another connection took the id
_TOPIC_CACHE = 65_536  # devices whose command topic and reply property are kept packed
_REPLY_SUFFIX = b"/" + Channel.REPLY.value.encode()
_TAP_SUFFIX = b"/" + Channel.TAP.value.encode()
# What asyncio's event loop adds to ``time()`` to decide that a timer is due (it reads the
# same clock information into a private attribute).
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


# A message as the network thread queues it: ledger sequence (0: QoS 0, nothing to ack),
# raw topic, payload, retain flag, receive time (s since the epoch). Validated by get_batch.
_Inbound = tuple[int, bytes, bytes, bool, float]


class MqttError(Exception):
    """The driver could not reach or stay with the broker."""


class MqttClosed(MqttError):
    """The driver is closed."""


@dataclass(slots=True)
class _Pending:
    """A command on its way: its replies so far and what ``send_command`` waits for.

    ``waiter`` is set while ``send_command`` waits for ``want`` (``"ack"`` or ``"outcome"``):
    the reply settles it with True, the deadline wheel with False.
    """

    device: DeviceRef
    cmd: str
    first_sent: float
    ack: Ack | None = None
    ack_read_at: float | None = None  # perf_counter when the network thread read the ack
    outcome: Outcome | None = None
    waiter: asyncio.Future[bool] | None = None
    want: str = "ack"
    acks_seen: int = 0
    outcomes_seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def reconnect_backoff(settings: MqttSettings) -> Backoff:
    """Between reconnects: "full jitter" between ``reconnect_min`` and a doubling ceiling
    capped at ``reconnect_max``, so a restarted broker does not see every gateway come back
    in the same millisecond."""
    return Backoff(
        initial=settings.reconnect_min,
        cap=max(settings.reconnect_max, settings.reconnect_min),
        full_jitter=True,
    )


def _settle(fut: asyncio.Future[T], value: T) -> None:
    if not fut.done():
        fut.set_result(value)


class MqttDriver:
    """One MQTT v5 connection of the gateway to its broker. Use as an async context manager."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.stats = DriverStats()
        # accepted messages with their ledger sequence number (0: QoS 0, nothing to ack);
        # ``_urgent``: readers' taps, handed out before the telemetry queued ahead of them
        self._queue: deque[_Inbound] = deque()
        self._urgent: deque[_Inbound] = deque()
        self._acks = AckLedger(self._send_pubacks)
        self._handed: list[int] = []  # ledger sequences get_batch returned, not yet committed
        self._cond = threading.Condition()
        self._waiter: asyncio.Future[None] | None = None
        self._wake_due = 0.0  # monotonic time a consumer wake-up became due, 0: none
        self._pending: dict[str, _Pending] = {}
        # One deadline wheel for every command's ack/outcome wait instead of a timer and a
        # wait_for task each: (deadline, seq, waiter), one loop timer for the earliest.
        self._deadlines: list[tuple[float, int, asyncio.Future[bool]]] = []
        self._deadline_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # device -> (command topic, packed ResponseTopic property)
        self._device_wire: dict[DeviceRef, tuple[str, bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._closed = False
        self._sub_mid: int | None = None
        self._reconnects = reconnect_backoff(settings).series()
        self._reject_logged: dict[str, int] = {}
        self._refusals = threading.Lock()
        self._client = self._make_client()

    # --- set-up -------------------------------------------------------------------------

    def _make_client(self) -> FastClient:
        s = self.settings
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,  # PUBACK only once the effect is committed (AckLedger)
        )
        if s.username is not None:
            pw = s.password.get_secret_value() if s.password is not None else None
            client.username_pw_set(s.username, pw)
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
            )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_bare_publishes = self._on_publishes
        # paho's own direct write from a publishing thread is off (it skips the write while
        # the network thread is in a callback); commands and PUBACKs are written by
        # ``FastClient.write_queued`` instead, under the lock the network thread writes with.
        client.on_socket_register_write = lambda *a: None
        client.on_socket_unregister_write = lambda *a: None
        return client

    async def __aenter__(self) -> Self:
        """Connect and subscribe; a closed driver may be entered again (a restarted part)."""
        if self._thread is not None:
            if not self._closed:
                raise MqttError("the driver is already open")
            if self._thread.is_alive():
                raise MqttError("the last connection's network thread has not stopped yet")
            self._reopen()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mqtt-driver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.settings.connect_timeout
        while not self._ready.is_set():
            if time.monotonic() > deadline:
                err = self.stats.last_error or "timeout"
                await self.aclose()
                raise MqttError(f"could not connect to the broker: {err}")
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _reopen(self) -> None:
        """Make a closed driver ready to connect again, as a new one would be, keeping its
        counters and the commands under way (other parts hold ``send_command``).

        Messages queued and never handed out are dropped: they were not acknowledged, so the
        broker redelivers them over the new connection (the persistent session).
        """
        with self._cond:
            self._queue.clear()
            self._urgent.clear()
            self._handed = []
            self._waiter = None
            self._wake_due = 0.0
        self._acks.forget()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._sub_mid = None
        self._reconnects = reconnect_backoff(self.settings).series()
        self._client = self._make_client()
        self.stats.connected = False
        self._closed = False

    async def aclose(self) -> None:
        """Disconnect cleanly (the broker keeps our session), stop the network thread.

        Commands under way keep their deadlines: a reply that arrives once the driver is
        entered again still settles them; otherwise they end as their timeouts say.
        """
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._wake_consumer()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    # --- network thread -----------------------------------------------------------------

    def _connect_properties(self) -> Properties:
        props = new_properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = 65535
        return props

    def _run(self) -> None:
        """Connect, loop, and reconnect with jittered backoff until asked to stop.

        The client and the stop flag are this connection's own (``_reopen`` makes new ones).
        """
        client, stopping = self._client, self._stopping
        while not stopping.is_set():
            self._acks.forget()  # packet ids of the last connection mean nothing on the next
            if not self._connect(client):
                stopping.wait(self._reconnects.next_delay())
                continue
            rc = self._loop_while_connected(client, stopping)
            if stopping.is_set():
                if self.stats.connected:
                    client.disconnect()
                    for _ in range(20):  # let DISCONNECT go out
                        if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                            break
                break
            self._mark_down(f"loop: {paho.error_string(rc)}")
            stopping.wait(self._reconnects.next_delay())
        self.stats.connected = False
        self._ready.clear()
        try:
            client.loop_stop()
            close_sockets(client)
        except Exception:
            pass

    def _connect(self, client: paho.Client) -> bool:
        """Open the connection (CONNACK and SUBACK follow in the loop); False if it failed."""
        s = self.settings
        try:
            client.connect(
                s.host,
                s.port,
                keepalive=s.keepalive,
                clean_start=False,
                properties=self._connect_properties(),
            )
        except (OSError, ValueError) as exc:
            self.stats.connect_failures += 1
            self.stats.last_error = f"connect: {type(exc).__name__}: {exc}"[:200]
            return False
        return True

    def _loop_while_connected(self, client: FastClient, stopping: threading.Event) -> MQTTErrorCode:
        """Read and write until the connection drops or a stop is asked; paho's last code."""
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        stats = self.stats
        while not stopping.is_set() and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            before = stats.received
            rc = client.loop(timeout=_BURST_GAP if self._wake_due else 0.5)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:  # the rest of what one read brought in
                rc = client.read_buffered(_WAKE_BATCH)
            # Wake the consumer once per burst, not once per message: when a loop pass
            # read nothing (the burst paused), or the batch is big or old enough.
            if self._wake_due and (
                stats.received == before
                or len(self._queue) >= _WAKE_BATCH
                or time.monotonic() - self._wake_due > _BURST_GAP
            ):
                self._wake_consumer()
        return rc

    def _mark_down(self, why: str) -> None:
        if self.stats.connected:
            self.stats.disconnects += 1
            if not self._stopping.is_set():
                log.warning("mqtt: connection lost (%s); reconnecting", why)
        self.stats.connected = False
        self._ready.clear()
        self.stats.last_error = why[:200]

    def _on_socket_open(self, client: paho.Client, userdata: object, sock: SocketLike) -> None:
        if isinstance(sock, BufferedSocket):
            sock = sock.inner
        if isinstance(sock, socket.socket):  # TCP or TLS (an SSLSocket is a socket)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: ConnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_error = f"connack: {rc}"
            log.warning("mqtt: broker refused the connection: %s", rc)
            return
        if self.stats.connects and not flags.session_present and self.settings.session_expiry:
            self._session_lost()
        self.stats.connected = True
        self.stats.connects += 1
        self._reconnects.reset()
        topics = [(t, 1) for t in subscriptions(self.settings.network)]
        _, self._sub_mid = client.subscribe(topics)
        if flags.session_present:
            # The session kept our subscriptions: ready now. The broker sends its queued
            # backlog before the SUBACK, so waiting for it would keep the consumer idle while
            # the backlog piles up (and deadlock once it exceeds ``queue_size``).
            self._ready.set()
        log.info("mqtt: connected (session present: %s)", flags.session_present)

    def _session_lost(self) -> None:
        """Our persistent session is gone: what the broker held for us may be lost.

        Mosquitto 2.0 closes a taken-over connection without a reason code, so this is where
        a takeover by a client that started clean shows: the reconnect finds no session.
        """
        self.stats.sessions_lost += 1
        log.error(
            "mqtt: ALARM the broker had no session for the gateway on reconnect: another "
            "client took its client id over, or the broker lost its state; messages queued "
            "for the gateway may be lost (check the broker's accounts and persistence)"
        )

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        rcs: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if mid != self._sub_mid:
            return
        bad = [rc for rc in rcs if rc.is_failure]
        if bad:
            self.stats.last_error = f"subscribe refused: {bad[0]}"
            log.error("mqtt: subscription refused: %s", bad[0])
            return
        self._ready.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc.value == _SESSION_TAKEN_OVER:
            self.stats.takeovers += 1
            log.error(
                "mqtt: ALARM another client connected with the gateway's client id and took "
                "its session over; check the broker's accounts (use_username_as_clientid)"
            )
        self._mark_down(f"disconnect: {rc}")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        """Queue one inbound message that came through paho (network thread)."""
        corr = getattr(msg.properties, "CorrelationData", None)
        publish = (raw_topic(msg), bytes(msg.payload), msg.mid, msg.qos, msg.retain)
        self._on_publishes([publish], corr)

    def _on_publishes(self, batch: list[BarePublish], correlation: bytes | None = None) -> None:
        """Queue the messages of one read (network thread); never raises into paho.

        Only a command reply is validated here: everything else is validated on the event
        loop as ``get_batch`` hands it out, so this thread spends a few microseconds per
        report and stays free to read a command's reply while a backlog streams in.
        ``correlation`` is the Correlation Data of a lone message paho decoded (a bulk run
        has no properties).
        """
        self.stats.received += len(batch)
        at = time.time()
        arrive = self._acks.arrive
        entries: list[tuple[_Inbound, bool]] = []
        for topic, payload, mid, qos, retained in batch:
            if topic.endswith(_REPLY_SUFFIX):
                if qos:
                    arrive(mid, settled=True)  # settled on arrival, refused or not
                self._take_reply(topic, payload, retained, correlation)
                continue
            seq = arrive(mid, settled=False) if qos else 0
            entries.append(((seq, topic, payload, retained, at), topic.endswith(_TAP_SUFFIX)))
        if entries:
            self._enqueue(entries)

    def _take_reply(
        self, topic: bytes, payload: bytes, retained: bool, correlation: bytes | None
    ) -> None:
        """Validate a command reply and hand it to the event loop."""
        try:
            dm = self._decode(topic, payload, retained, time.time())
        except ProtocolError as exc:
            self._log_refusal(exc.code, topic, len(payload), exc.detail)
            return
        if correlation is not None and correlation != dm.payload.cmd_id.encode():
            detail = "correlation data differs from cmd_id"
            self._log_refusal("bad-correlation", topic, len(payload), detail)
            return
        self.stats.replies_accepted += 1
        loop = self._loop
        if loop is not None:  # stamped here: the round trip ends when the reply is read
            loop.call_soon_threadsafe(self._on_reply, dm, time.perf_counter())

    def _decode(
        self, topic: bytes, payload: bytes | bytearray, retained: bool, at: float
    ) -> DeviceMessage:
        """One inbound message checked and decoded, or :class:`ProtocolError`."""
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            raise ProtocolError("bad-topic", "topic is not UTF-8") from None
        try:
            return decode(
                text,
                payload,
                received_at=at,
                retained=retained,
                max_future_ms=self.settings.max_future_ms,
                max_past_ms=self.settings.max_past_ms,
            )
        except ProtocolError:
            raise
        except Exception as exc:  # a bug of ours must not stop the network thread or a batch
            raise ProtocolError("internal", type(exc).__name__) from None

    def _enqueue(self, entries: list[tuple[_Inbound, bool]]) -> None:
        """Append messages to the queue (``True``: urgent, a reader's tap), waiting while it
        is full: the socket is not read meanwhile and QoS 1 messages stay un-acked at the
        broker, so nothing is lost."""
        cond = self._cond
        limit = self.settings.queue_size
        with cond:
            for entry, urgent in entries:
                if len(self._queue) + len(self._urgent) >= limit:
                    self.stats.queue_blocked += 1
                    self._wake_waiter()  # a full queue is a batch, whatever the burst does
                while len(self._queue) + len(self._urgent) >= limit:
                    if self._stopping.is_set():
                        return
                    cond.wait(0.5)
                if urgent:  # a rider waits at the reader: no burst to wait for
                    self._urgent.append(entry)
                    self._wake_waiter()
                else:
                    self._queue.append(entry)
            if self._waiter is not None and not self._wake_due:
                self._wake_due = time.monotonic()

    def _send_pubacks(self, mids: list[int]) -> None:
        """Send PUBACKs as one write, from the thread that settled them."""
        client = self._client
        queue_pubacks(client, mids)
        client.write_queued()

    def _log_refusal(self, code: str, topic: bytes, size: int, detail: str) -> None:
        """Count and log a refused message (either thread: replies are refused on the
        network thread, everything else on the event loop)."""
        with self._refusals:
            self.stats.rejected[code] += 1
            n = self._reject_logged.get(code, 0) + 1
            self._reject_logged[code] = n
        if n <= 10 or n % 1000 == 0:
            log.warning(
                "mqtt: rejected message on %r (%d bytes): %s: %s [%d so far]",
                topic[:120],  # bytes; repr() keeps hostile text inert in logs
                size,
                code,
                detail,
                n,
            )

    # --- inbound, event loop side -------------------------------------------------------

    def _wake_consumer(self) -> None:
        with self._cond:
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        """Settle the consumer's wait, if it waits; called holding ``_cond``."""
        waiter, self._waiter = self._waiter, None
        self._wake_due = 0.0
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_settle, waiter, None)

    async def get_batch(self, max_items: int = 1024) -> list[DeviceMessage]:
        """Wait for at least one accepted message; return up to ``max_items`` at once.

        Readers' taps come first, in a batch of their own (a small transaction, so the
        unlock leaves without waiting for a thousand reports); every other message in
        arrival order. Messages are validated here; a refused one is counted, logged and
        acknowledged. The broker keeps every message returned here until
        :meth:`acknowledge_delivered` says its effect is committed: call it after each
        batch's transaction.
        """
        while True:
            entries = await self._take_entries(max_items)
            batch = self._accept(entries)
            if batch:
                return batch

    async def _take_entries(self, max_items: int) -> list[_Inbound]:
        """Wait for queued messages; take up to ``max_items`` of the first queue that has any."""
        while True:
            with self._cond:
                q = self._urgent or self._queue
                if q:
                    full = len(self._queue) + len(self._urgent) >= self.settings.queue_size
                    entries = [q.popleft() for _ in range(min(len(q), max_items))]
                    if full:
                        self._cond.notify_all()
                    return entries
                if self._closed:
                    raise MqttClosed("driver closed")
                waiter = self._loop.create_future()  # type: ignore[union-attr]
                self._waiter = waiter
            await waiter

    def _accept(self, entries: list[_Inbound]) -> list[DeviceMessage]:
        """The messages of ``entries`` that pass validation; the others are settled (their
        PUBACK leaves in turn) and the accepted ones await ``acknowledge_delivered``."""
        accepted: list[DeviceMessage] = []
        handed: list[int] = []
        refused: list[int] = []
        decode_one = self._decode
        for seq, topic, payload, retained, at in entries:
            try:
                accepted.append(decode_one(topic, payload, retained, at))
            except ProtocolError as exc:
                self._log_refusal(exc.code, topic, len(payload), exc.detail)
                if seq:
                    refused.append(seq)
                continue
            if seq:
                handed.append(seq)
        self.stats.accepted += len(accepted)
        with self._cond:
            self._handed.extend(handed)
        if refused:
            self._acks.commit(refused)
        return accepted

    def acknowledge_delivered(self) -> None:
        """Every message :meth:`get_batch` returned so far is committed: release its PUBACK."""
        with self._cond:
            handed, self._handed = self._handed, []
        self._acks.commit(handed)

    async def messages(self) -> AsyncIterator[DeviceMessage]:
        """Every accepted device message (replies excepted), until the driver closes.

        A batch is acknowledged when the consumer asks for the message after its last one,
        i.e. once the consumer's loop body has run for each of them.
        """
        while True:
            try:
                batch = await self.get_batch()
            except MqttClosed:
                return
            for m in batch:
                yield m
            self.acknowledge_delivered()

    def status(self) -> dict[str, Any]:
        """Counters for /health and /metrics."""
        depth = len(self._queue) + len(self._urgent)
        return self.stats.snapshot(depth, len(self._pending), self._acks.open)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected and subscribed, or raise :class:`MqttError`."""
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if time.monotonic() > deadline:
                raise MqttError(f"not connected: {self.stats.last_error}")
            await asyncio.sleep(0.005)

    # --- commands -----------------------------------------------------------------------

    def _on_reply(self, dm: DeviceMessage, read_at: float) -> None:
        reply = dm.payload
        pending = self._pending.get(reply.cmd_id)
        if pending is None:
            self.stats.late_replies += 1
            return
        if dm.device != pending.device:
            self.stats.foreign_replies += 1
            log.warning("mqtt: reply for %s from the wrong device", reply.cmd_id)
            return
        if isinstance(reply, Ack):
            pending.acks_seen += 1
            if pending.ack is not None:
                self.stats.duplicate_replies += 1
                return
            pending.ack = reply
            pending.ack_read_at = read_at
            want = "ack"
        else:
            pending.outcomes_seen += 1
            if pending.outcome is not None:
                self.stats.duplicate_replies += 1
                return
            pending.outcome = reply
            want = "outcome"
        if pending.waiter is not None and pending.want == want:
            _settle(pending.waiter, True)

    # --- the deadline wheel (event loop side) --------------------------------------------

    async def _wait_reply(self, pending: _Pending, want: str, timeout: float) -> bool:
        """Wait until ``pending`` has its ``want`` reply (True) or ``timeout`` passes (False).

        The deadline is rounded up to ``_TICK``: never early, at most a tick late, and
        commands sent in the same tick time out together (one settle transaction upstream).
        """
        if (pending.ack if want == "ack" else pending.outcome) is not None:
            return True
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[bool] = loop.create_future()
        pending.waiter, pending.want = waiter, want
        deadline = math.ceil((loop.time() + timeout) / _TICK) * _TICK
        self._deadline_seq += 1
        heapq.heappush(self._deadlines, (deadline, self._deadline_seq, waiter))
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self._expire)
        try:
            return await waiter
        finally:
            pending.waiter = None

    def _expire(self) -> None:
        """Time out every wait whose deadline has come; re-arm for the next one."""
        self._timer, self._timer_at = None, math.inf
        loop = self._loop
        if loop is None:
            return
        heap = self._deadlines
        now = loop.time() + _CLOCK_RESOLUTION  # as the loop itself counts a timer due
        while heap and heap[0][0] <= now:
            _settle(heapq.heappop(heap)[2], False)
        # Waits already answered leave their entries behind: drop them at the front.
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        if heap:
            self._timer_at = heap[0][0]
            self._timer = loop.call_at(self._timer_at, self._expire)

    # --- publishing ---------------------------------------------------------------------

    def _wire(self, device: DeviceRef) -> tuple[str, bytes]:
        """The command topic and the packed ResponseTopic of ``device`` (cached)."""
        wire = self._device_wire.get(device)
        if wire is None:
            if len(self._device_wire) >= _TOPIC_CACHE:
                self._device_wire.clear()
            wire = self._device_wire[device] = (
                device.topic(Channel.CMD),
                pack_response_topic(device.topic(Channel.REPLY)),
            )
        return wire

    def _publish_command(
        self, device: DeviceRef, command: Command, expires_at: int, payload: bytes | None = None
    ) -> bool:
        topic, reply = self._wire(device)
        expiry = max(1, math.ceil((expires_at - now_ms()) / 1000))
        props = PackedProperties(pack_publish_properties(expiry, reply, command.cmd_id.encode()))
        if payload is None:
            payload = encode(command)
        client = self._client
        info = client.publish(topic, payload, qos=1, properties=props)
        client.write_queued()
        self.stats.command_publishes += 1
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    async def send_command(
        self,
        device: DeviceRef,
        command: Command,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        wait_outcome: bool = True,
        outcome_timeout: float | None = None,
    ) -> CommandOutcome:
        """Publish ``command`` to ``device``; wait for its ack (retrying with the same id)
        and, for commands that move something, its physical outcome.

        Never raises for device behaviour: every end is a :class:`CommandOutcome`. Raises
        ``ValueError`` for a command the device kind does not take, ``MqttClosed`` after close.
        """
        if self._closed or self._loop is None:
            raise MqttClosed("driver closed")
        if COMMAND_KIND[command.cmd] is not device.kind:
            raise ValueError(f"{command.cmd} is not a {device.kind.value} command")
        if command.cmd_id in self._pending:
            raise ValueError(f"command {command.cmd_id} is already pending")
        s = self.settings
        timeout = s.command_timeout if timeout is None else timeout
        retries = s.command_retries if retries is None else retries
        if command.expires_at == 0:
            budget_ms = math.ceil(timeout * (retries + 1) * 1000)
            issued = now_ms()
            command = command.model_copy(update={"ts": issued, "expires_at": issued + budget_ms})
        pending = _Pending(device, command.cmd, time.perf_counter())
        self._pending[command.cmd_id] = pending
        self.stats.commands_sent += 1
        try:
            ack, attempts = await self._send_until_acked(pending, command, timeout, retries)
            ack_ms = _round_trip_ms(pending) if ack else None
            status = _ack_status(ack, attempts)
            outcome, outcome_ms = pending.outcome, None
            if (
                status is CommandStatus.ACCEPTED
                and wait_outcome
                and command.cmd in PHYSICAL_COMMANDS
            ):
                wait = s.outcome_timeout if outcome_timeout is None else outcome_timeout
                status, outcome, outcome_ms = await self._await_outcome(pending, wait)
        finally:
            self._pending.pop(command.cmd_id, None)
        self._count_result(command.cmd, status, ack_ms)
        return CommandOutcome(
            cmd_id=command.cmd_id,
            cmd=command.cmd,
            device=device,
            status=status,
            attempts=attempts,
            ack=ack,
            outcome=outcome,
            ack_ms=ack_ms,
            outcome_ms=outcome_ms,
        )

    def _count_result(self, cmd: str, status: CommandStatus, ack_ms: float | None) -> None:
        stats = self.stats
        stats.outcomes[status.value] += 1
        stats.results[cmd, status.value] += 1
        if ack_ms is not None:
            histogram = stats.ack_latency.get(cmd)
            if histogram is None:
                histogram = stats.ack_latency[cmd] = LatencyHistogram()
            histogram.observe(ack_ms / 1000)

    async def _send_until_acked(
        self, pending: _Pending, command: Command, timeout: float, retries: int
    ) -> tuple[Ack | None, int]:
        """Publish ``command`` (the same bytes each time) until it is acked, the retries are
        spent or it expires: the ack, if any, and how many times it went out."""
        payload = encode(command)
        attempts = 0
        for attempt in range(retries + 1):
            if attempt:
                self.stats.command_retries += 1
            if now_ms() > command.expires_at:
                break
            attempts += 1
            self._publish_command(pending.device, command, command.expires_at, payload)
            if await self._wait_reply(pending, "ack", timeout):
                return pending.ack, attempts
        return None, attempts

    async def _await_outcome(
        self, pending: _Pending, wait: float
    ) -> tuple[CommandStatus, Outcome | None, float | None]:
        """Wait ``wait`` seconds for the physical outcome of an accepted command."""
        if not await self._wait_reply(pending, "outcome", wait):
            return CommandStatus.NO_OUTCOME, None, None
        outcome = pending.outcome
        assert outcome is not None
        outcome_ms = (time.perf_counter() - pending.first_sent) * 1000
        ok = outcome.status is OutcomeStatus.DONE
        return (CommandStatus.DONE if ok else CommandStatus.FAILED), outcome, outcome_ms


def _round_trip_ms(pending: _Pending) -> float:
    """From the command's first publish to its ack read off the socket (the device's round
    trip; how long the event loop then took to resume the sender is not the device's)."""
    read_at = pending.ack_read_at
    return ((read_at if read_at is not None else time.perf_counter()) - pending.first_sent) * 1e3


def _ack_status(ack: Ack | None, attempts: int) -> CommandStatus:
    """A command's status from its ack: none (never sent: expired), or what the ack says."""
    if ack is None:
        return CommandStatus.NO_ACK if attempts else CommandStatus.EXPIRED
    if ack.status is AckStatus.REJECTED:
        return CommandStatus.REJECTED
    if ack.status is AckStatus.EXPIRED:
        return CommandStatus.EXPIRED
    return CommandStatus.ACCEPTED
