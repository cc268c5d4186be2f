"""A reader's taps onto the site's broker, for whichever gateway leads to verify.

A reader attached to a standby machine or a station controller does not verify its taps: it
holds no key. :class:`TapPublisher` takes the :class:`~dockgate.gateway.readers.TapEvent` of
any reader driver and publishes it as a ``ReaderTap`` on ``dockgate/<network>/reader/<id>/tap``
(QoS 1, MQTT v5, its own account and client id); the gateway that leads verifies it and
answers the station as for a reader of its own (docs/mqtt-protocol.md, "Reader taps").

Taps survive a broker blip: each waits in a bounded local queue until the broker's PUBACK,
and is published again, the same bytes, over the next connection (reconnects wait as
:class:`~dockgate.gateway.backoff.Backoff` says). A tap is worth something only while its
rider stands at the reader, so each carries a Message Expiry Interval (what is left of
``max_age``) and one that waited longer here is dropped; a full queue drops its oldest tap.
The gateway names a tap by its reader, ``seq`` and ``ts``, so one sent twice counts once.

    async with TapPublisher(PublisherSettings(reader_id="R01", port=1883)) as publisher:
        await publisher.forward(make_reader(ReaderSpec("pcsc")))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from dockgate.drivers.mqtt.paho_compat import close_sockets, new_properties
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.protocol import (
    Channel,
    DeviceRef,
    ReaderTap,
    TopicError,
    encode,
    username,
)
from dockgate.gateway.readers import ReaderDriver, TapEvent

log = logging.getLogger(__name__)

_LOOP_TIMEOUT = 0.05  # s a network pass waits for traffic (a publish wakes it at once)
_READ_ERROR_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_:.-")
_UID_LENGTHS = (4, 7, 10)  # ISO/IEC 14443-3 single, double and triple size


class PublisherSettings(BaseModel):
    """Where the broker is, which reader this is and how long its taps are worth sending.

    ``username`` defaults to the reader's account (``reader-<network>-<id>``, as
    ``dockgate devices add --kind reader`` makes it) and ``client_id`` to the username. The
    password is a ``SecretStr``: never in a repr, a log line or an error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reader_id: str
    network: int = Field(default=1, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    connect_timeout: float = Field(default=10.0, gt=0)
    max_queue: int = Field(default=256, ge=1, description="taps kept while the broker is away")
    max_age: float = Field(default=30.0, gt=0, description="s a tap is worth delivering")
    reconnect_min: float = Field(default=0.05, gt=0)
    reconnect_max: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _reader_is_a_topic(self) -> PublisherSettings:
        self.device()  # raises TopicError (a ValueError) for an id no topic can carry
        return self

    def device(self) -> DeviceRef:
        """The reader as a device of the topic tree."""
        try:
            return DeviceRef.reader(self.network, self.reader_id)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    def account(self) -> str:
        """The broker username this reader logs in with."""
        return self.username or username(self.device())

    def backoff(self) -> Backoff:
        """Between reconnects: full jitter, so a site's readers do not return together."""
        return Backoff(
            initial=self.reconnect_min,
            cap=max(self.reconnect_max, self.reconnect_min),
            full_jitter=True,
        )


@dataclass(slots=True)
class PublisherStats:
    """What the publisher did; each counter written by one thread at a time (under a lock)."""

    submitted: int = 0
    published: int = 0  # PUBLISH packets, resends included
    resent: int = 0
    acked: int = 0
    refused: int = 0  # the broker's PUBACK said no (0x87: the ACL)
    expired: int = 0  # older than max_age before the broker took it
    dropped: int = 0  # the queue was full: the oldest tap went
    connects: int = 0
    connect_failures: int = 0
    connected: bool = False
    last_error: str | None = None

    def as_dict(self, queued: int) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "published": self.published,
            "resent": self.resent,
            "acked": self.acked,
            "refused": self.refused,
            "expired": self.expired,
            "dropped": self.dropped,
            "queued": queued,
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "connected": self.connected,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class _Queued:
    """A tap waiting for its PUBACK: its bytes never change, so a resend is the same tap."""

    seq: int
    payload: bytes
    queued_at: float  # monotonic
    mid: int | None = None  # in flight on the current connection
    sends: int = 0


@dataclass(slots=True)
class _Link:
    """One connection's client and what its callbacks report to the network thread."""

    client: paho.Client
    opened_at: float
    connack: int | None = None  # the CONNACK's reason code once it came
    acks: deque[tuple[int, int]] = field(default_factory=deque)  # (mid, PUBACK reason)


def first_sequence() -> int:
    """Where a publisher's ``seq`` starts: microseconds since the epoch, so a restarted
    publisher goes on above the last run's numbers (as long as the clock does not step back;
    the gateway also tells taps apart by ``ts``)."""
    return time.time_ns() // 1000


def tap_payload(event: TapEvent, reader: DeviceRef, seq: int) -> bytes:
    """``event`` as this reader's ``ReaderTap`` bytes.

    What the tag or the driver handed over is not trusted: a URL the protocol cannot carry
    (too long, not printable ASCII) goes as the read error ``bad_url``, a UID of no
    ISO 14443 length is left out, an unknown error name becomes ``reader_error``.
    """
    read_s = max(0.0, event.read_at - event.presented_at)
    error = event.error
    if error is not None and not (
        0 < len(error) <= 40 and set(error) <= _READ_ERROR_OK and error[0].isalnum()
    ):
        error = "reader_error"
    fields: dict[str, Any] = {
        "ts": round((event.wall_time + read_s) * 1000),
        "device_id": reader.device_id,
        "seq": seq,
        "url": event.url,
        "uid": event.uid.hex() if event.uid and len(event.uid) in _UID_LENGTHS else None,
        "error": error,
        "read_ms": min(60_000, round(read_s * 1000)),
    }
    try:
        return encode(ReaderTap(**fields))
    except ValidationError:
        return encode(ReaderTap(**{**fields, "url": None, "error": error or "bad_url"}))


class TapPublisher:
    """Publishes one reader's taps; ``submit`` from the event loop, paho in a thread of its own.

    Only the network thread writes to the socket and reads the queue's bookkeeping from the
    callbacks; ``submit`` queues the tap and, while connected, hands paho its PUBLISH, which
    wakes the network thread through paho's socket pair.
    """

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        first_seq: int | None = None,
    ) -> None:
        self.settings = settings
        self.device = settings.device()
        self.topic = self.device.topic(Channel.TAP)
        self.clock = clock
        self.stats = PublisherStats()
        self._seq = first_sequence() if first_seq is None else first_seq
        self._queue: OrderedDict[int, _Queued] = OrderedDict()
        self._inflight: dict[int, int] = {}  # mid -> seq, on the current connection
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._ready = False  # the current link had its CONNACK: publish at once
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def start(self) -> None:
        """Start the network thread (it connects, and reconnects, by itself)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"tap-publisher-{self.device.device_id}", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the thread; taps still queued are lost (and logged)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self.queued
        if left:
            log.warning("tap publisher: closed with %d tap(s) not acknowledged", left)

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted the connection (True) or ``timeout`` passed."""
        return self._connected.wait(timeout)

    async def drain(self, timeout: float) -> bool:
        """Wait until every submitted tap is acknowledged (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queued:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def forward(
        self,
        driver: ReaderDriver,
        count: int | None = None,
        on_tap: Callable[[TapEvent, int], object] | None = None,
    ) -> int:
        """Publish every tap ``driver`` reads (``count`` of them, or until it closes);
        ``on_tap(event, seq)`` hears of each."""
        forwarded = 0
        async with driver:
            async for event in driver.taps():
                seq = self.submit(event)
                if on_tap is not None:
                    on_tap(event, seq)
                forwarded += 1
                if count is not None and forwarded >= count:
                    break
        return forwarded

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def status(self) -> dict[str, Any]:
        """Counters for a status line or a test (no secret in them)."""
        with self._lock:
            return self.stats.as_dict(len(self._queue))

    # --- taps ---------------------------------------------------------------------------
    def submit(self, event: TapEvent) -> int:
        """Queue ``event`` and publish it now if connected; returns its ``seq``."""
        with self._lock:
            seq = self._next_seq()
            entry = _Queued(seq, tap_payload(event, self.device, seq), self.clock())
            while len(self._queue) >= self.settings.max_queue:
                _, oldest = self._queue.popitem(last=False)
                if oldest.mid is not None:
                    self._inflight.pop(oldest.mid, None)
                self.stats.dropped += 1
            self._queue[seq] = entry
            self.stats.submitted += 1
            if self._ready and self._link is not None:
                self._publish(self._link.client, entry)
        return seq

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _publish(self, client: paho.Client, entry: _Queued) -> None:
        """Hand paho one queued tap (the lock is held); it is sent with what is left of its
        ``max_age`` as its expiry, or dropped if nothing is."""
        left = self.settings.max_age - (self.clock() - entry.queued_at)
        if left <= 0:
            self._queue.pop(entry.seq, None)
            self.stats.expired += 1
            return
        props = new_properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, math.ceil(left))
        info = client.publish(self.topic, entry.payload, qos=1, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return  # not connected after all: the next connection sends it
        entry.mid = info.mid
        self._inflight[info.mid] = entry.seq
        if entry.sends:
            self.stats.resent += 1
        entry.sends += 1
        self.stats.published += 1

    # --- network thread -----------------------------------------------------------------
    def _run(self) -> None:
        """Connect, publish, reconnect after a backoff, until closed."""
        delays = self.settings.backoff().series()
        while not self._stopping.is_set():
            link = self._open()
            if link is not None:
                if self._serve(link):
                    delays.reset()
                self._down(link)
            if self._stopping.is_set():
                break
            self._stopping.wait(delays.next_delay())

    def _new_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or s.account(),
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(
            s.account(), s.password.get_secret_value() if s.password is not None else None
        )
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
            )
        client.max_queued_messages_set(0)
        # PUBLISHes handed over from the event loop only queue the packet and wake this
        # thread through paho's socket pair: only this thread writes to the socket.
        client.on_socket_register_write = lambda *a: None
        client.on_socket_unregister_write = lambda *a: None
        client.on_socket_open = _no_delay
        return client

    def _open(self) -> _Link | None:
        """A new client (the last one's packets go with it: the queue resends its taps)."""
        client = self._new_client()
        link = _Link(client, time.monotonic())
        client.on_connect = lambda c, u, f, rc, p: _on_connack(link, f, rc)
        client.on_publish = lambda c, u, mid, rc, p: link.acks.append((mid, rc.value))
        try:
            client.connect(
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive,
                clean_start=True,
            )
        except (OSError, ValueError) as exc:
            self._failed(f"connect: {type(exc).__name__}: {exc}", connecting=True)
            close_sockets(client)
            return None
        self._link = link
        return link

    def _serve(self, link: _Link) -> bool:
        """Read and write until the link drops; True if the broker accepted it."""
        client = link.client
        while not self._stopping.is_set():
            rc = client.loop(timeout=_LOOP_TIMEOUT)
            if link.connack is not None and not self._ready:
                if link.connack:
                    self._failed(f"connack: reason {link.connack:#04x}", connecting=True)
                    return False
                self._up(link)
            self._settle(link)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._failed(f"loop: {paho.error_string(rc)}", connecting=not self._ready)
                break
            waited = time.monotonic() - link.opened_at
            if not self._ready and waited > self.settings.connect_timeout:
                self._failed("connect: no CONNACK in time", connecting=True)
                break
        if self._stopping.is_set() and self._ready:
            client.disconnect()
            for _ in range(10):  # let the DISCONNECT go out
                if client.loop(timeout=0.02) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        return self._ready

    def _up(self, link: _Link) -> None:
        """CONNACK: publish every queued tap, oldest first."""
        with self._lock:
            self._ready = True
            self.stats.connected = True
            self.stats.connects += 1
            for entry in list(self._queue.values()):
                self._publish(link.client, entry)
        self._connected.set()
        log.info("tap publisher: connected as %s", self.settings.account())

    def _settle(self, link: _Link) -> None:
        """PUBACKs: an accepted tap leaves the queue; a refused one too, counted and logged."""
        with self._lock:
            while link.acks:
                mid, reason = link.acks.popleft()
                seq = self._inflight.pop(mid, None)
                if seq is None or self._queue.pop(seq, None) is None:
                    continue
                if reason < 0x80:
                    self.stats.acked += 1
                    continue
                self.stats.refused += 1
                self.stats.last_error = f"puback: reason {reason:#04x}"
                log.warning(
                    "tap publisher: the broker refused tap %d (reason %#04x; 0x87: the ACL)",
                    seq,
                    reason,
                )
            self._expire()

    def _expire(self) -> None:
        """Drop taps not in flight that waited longer than ``max_age`` (the lock is held)."""
        now, max_age = self.clock(), self.settings.max_age
        for entry in list(self._queue.values()):
            if entry.mid is None and now - entry.queued_at > max_age:
                del self._queue[entry.seq]
                self.stats.expired += 1

    def _down(self, link: _Link) -> None:
        """The link is gone: what was in flight on it is sent again on the next one."""
        with self._lock:
            was_up = self._ready
            self._ready = False
            self._link = None
            self._inflight.clear()
            for entry in self._queue.values():
                entry.mid = None
            self.stats.connected = False
        self._connected.clear()
        with contextlib.suppress(Exception):
            close_sockets(link.client)
        if was_up and not self._stopping.is_set():
            log.warning("tap publisher: connection lost; reconnecting")

    def _failed(self, why: str, *, connecting: bool) -> None:
        """Count and keep why the link failed; log it when the reason changes (a broker away
        for an hour is one line, not one per retry)."""
        with self._lock:
            self.stats.connect_failures += connecting
            changed = self.stats.last_error != why[:200]
            self.stats.last_error = why[:200]
        if changed and not self._stopping.is_set():
            log.warning("tap publisher: %s (retrying)", why[:200])


def _on_connack(link: _Link, flags: ConnectFlags, rc: ReasonCode) -> None:
    """paho's network thread: note the CONNACK (the thread acts on it after the pass)."""
    link.connack = rc.value


def _no_delay(client: paho.Client, userdata: object, sock: Any) -> None:
    """Nagle would hold a tap's PUBLISH back behind the last unacknowledged packet."""
    import socket

    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
