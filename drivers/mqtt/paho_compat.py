"""The one place dockgate works around paho-mqtt: the private members it must reach, and the
one constructor paho leaves unannotated.

Each function below does something paho (or aiomqtt, which wraps a paho client) offers no
public or typed call for, and says why. Keeping them here means a paho upgrade that renames
a private member breaks one module, and a reviewer sees every such reach at once.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    import aiomqtt
    from paho.mqtt.client import SocketLike

PUBACK = 0x40  # MQTT packet type 4, in the high nibble of the fixed header


def close_sockets(client: paho.Client) -> None:
    """Close the client's socket and its wake-up socket pair now.

    Why private: a client run with ``loop()`` (not ``loop_start()``) keeps its socket pair
    open until garbage collection; ``_reset_sockets`` is what paho itself calls to close it.
    """
    client._reset_sockets()  # noqa: SLF001  no public call closes the socket pair


def raw_topic(message: paho.MQTTMessage) -> bytes:
    """The topic exactly as it came off the wire.

    Why private: ``MQTTMessage.topic`` decodes it as UTF-8 and raises on a hostile topic,
    which is precisely the message a rejection log line has to describe.
    """
    topic: bytes = message._topic  # noqa: SLF001  the public property decodes (and raises)
    return topic


def link_socket(client: aiomqtt.Client) -> socket.socket | None:
    """The TCP socket under an aiomqtt client, or None while it is not connected.

    Why private: aiomqtt hides its paho client, and only the paho client hands out its
    socket; a simulated device shuts that socket down to lose its link abruptly (no
    DISCONNECT, so the broker publishes the last will), as a device losing power would.
    """
    inner: paho.Client = client._client  # noqa: SLF001  aiomqtt exposes no socket
    sock = inner.socket()
    return sock if isinstance(sock, socket.socket) else None


def new_properties(packet_type: int) -> Properties:
    """Empty MQTT v5 properties for a packet of ``packet_type`` (``PacketTypes.*``)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho: __init__ unannotated


_TOPIC_LENGTH = struct.Struct("!H")  # also the packet id: two bytes, big-endian
_PUBACK_SUCCESS = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id (v5 §3.4.2.1)
_READ_CHUNK = 65536
_PUBLISH = 0x30  # MQTT packet type 3, in the high nibble of the fixed header

# A PUBLISH read in bulk: topic (raw bytes), payload, packet id (0 at QoS 0), QoS, retain.
BarePublish = tuple[bytes, bytes, int, int, bool]


def _body_bounds(buffer: bytes, at: int) -> tuple[int, int] | None:
    """Where the body of the packet starting at ``at`` begins and ends, or None when the
    buffer holds less than the whole packet (or a malformed length, which paho reports)."""
    end = len(buffer)
    length = 0
    shift = 0
    i = at + 1
    while True:  # the remaining length: 1 to 4 bytes, 7 bits each, low bits first
        if i >= end or i - at > 4:
            return None
        byte = buffer[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    if end - i < length:
        return None
    return i, i + length


def _bare_publish_at(buffer: bytes, header: int, start: int, end: int) -> BarePublish | None:
    """The PUBLISH whose body is ``buffer[start:end]`` if it is QoS 0 or 1 and has no
    properties; None for any other packet, or a malformed one (paho reads and reports it)."""
    qos = (header >> 1) & 0x03
    if header & 0xF0 != _PUBLISH or qos > 1 or end - start < 3:
        return None
    topic_end = start + 2 + _TOPIC_LENGTH.unpack_from(buffer, start)[0]
    properties = topic_end + 2 * qos
    if properties >= end or buffer[properties] != 0:
        return None
    mid = _TOPIC_LENGTH.unpack_from(buffer, topic_end)[0] if qos else 0
    topic = buffer[start + 2 : topic_end]
    return topic, buffer[properties + 1 : end], mid, qos, bool(header & 0x01)


class BufferedSocket:
    """A socket read 64 KiB at a time, handing paho the few bytes it asks for from memory.

    paho reads each packet with two or three ``recv`` calls (its command byte, its length
    bytes one by one, its body), each a system call; a backlog of small telemetry messages
    spends more time in those calls than in the messages. ``pending()`` is the attribute
    paho already asks an SSL socket for: while bytes wait here, its loop does not block
    in ``select``.
    """

    def __init__(self, inner: SocketLike) -> None:
        self.inner = inner
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buffer):
            data = self.inner.recv(max(size, _READ_CHUNK))  # raises as the socket does
            if len(data) <= size:
                return data
            self._buffer, self._pos = data, 0
        start = self._pos
        self._pos = min(len(self._buffer), start + size)
        return self._buffer[start : self._pos]

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet already read (its first byte and its body), or None
        when the buffer holds less than one packet (paho then reads the rest itself)."""
        buffer, at = self._buffer, self._pos
        bounds = _body_bounds(buffer, at)
        if bounds is None:
            return None
        start, end = bounds
        self._pos = end
        return buffer[at], buffer[start:end]

    def take_bare_publishes(self, limit: int) -> list[BarePublish]:
        """The whole MQTT v5 PUBLISH packets without properties (QoS 0 or 1) at the front of
        the buffer, up to ``limit``, taken out of it: it stops before anything else (a reply
        with its correlation data, a PUBACK, a packet not yet whole), which paho reads."""
        buffer, at = self._buffer, self._pos
        taken: list[BarePublish] = []
        while len(taken) < limit:
            bounds = _body_bounds(buffer, at)
            if bounds is None:
                break
            publish = _bare_publish_at(buffer, buffer[at], *bounds)
            if publish is None:
                break
            taken.append(publish)
            at = bounds[1]
        self._pos = at
        return taken

    def pending(self) -> int:
        """Bytes read from the socket and not yet handed to paho (and TLS's own)."""
        inner_pending = getattr(self.inner, "pending", None)
        own = len(self._buffer) - self._pos
        return own + (inner_pending() if inner_pending is not None else 0)

    def send(self, buffer: bytes | bytearray) -> int:
        return self.inner.send(buffer)

    def close(self) -> None:
        self.inner.close()

    def fileno(self) -> int:
        return self.inner.fileno()

    def setblocking(self, flag: bool) -> None:
        self.inner.setblocking(flag)


class FastClient(paho.Client):
    """The paho client with reads batched (``BufferedSocket``) and one dispatch per message.

    Why a subclass of private members: paho offers no hook for either. ``_create_socket`` is
    where paho opens (and TLS-wraps) its socket; ``_handle_on_message`` looks the topic up in
    the per-topic callbacks (``message_callback_add``) of every message, which the gateway
    never registers, before calling ``on_message``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.Lock()
        # Runs of plain PUBLISH packets, in order, instead of ``on_message`` for each
        # (``read_buffered``); None: every message through ``on_message``.
        self.on_bare_publishes: Callable[[list[BarePublish]], None] | None = None

    def _create_socket(self) -> SocketLike:
        return BufferedSocket(super()._create_socket())

    def _packet_write(self) -> MQTTErrorCode:
        """paho's write, by one thread at a time (the network thread, ``write_queued``)."""
        with self._write_lock:
            return super()._packet_write()

    def write_queued(self) -> None:
        """Write the packets queued so far from the calling thread, as far as the socket
        takes them without blocking; the network thread writes whatever is left.

        Why: paho hands a packet published from another thread to its network thread,
        which must first win the interpreter lock from a busy event loop (a millisecond or
        more per hand-over); a command, or the PUBACKs of a committed batch, go out now.
        An error is left for the network thread to meet on its next read or write. A TLS
        connection is left to the network thread: one SSL object must not read in one
        thread while it writes in another.
        """
        sock = self.socket()
        if isinstance(sock, BufferedSocket) and not isinstance(sock.inner, ssl.SSLSocket):
            self._packet_write()

    def _packet_read(self) -> MQTTErrorCode:
        """A packet already whole in the read buffer handled at once; paho reads the rest.

        paho reads the fixed header byte by byte and keeps a partial packet between calls:
        right for a trickle, slow for a backlog where the buffer holds hundreds of packets.
        """
        sock = self._sock
        if not isinstance(sock, BufferedSocket) or self._in_packet["command"] != 0:
            return super()._packet_read()
        whole = sock.take_packet()
        if whole is None:
            return super()._packet_read()
        command, body = whole
        self._in_packet["command"] = command
        self._in_packet["remaining_length"] = len(body)
        self._in_packet["packet"] = bytearray(body)
        try:
            rc = self._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._forget_packet()
        self._last_bytes_received = time.monotonic()  # paho's keepalive reads it (time_func)
        return rc

    def _forget_packet(self) -> None:
        """Back to paho's state of no packet being read (as its ``_packet_read`` leaves it)."""
        state = self._in_packet
        state["command"] = 0
        state["have_remaining"] = 0
        state["remaining_count"] = []
        state["remaining_mult"] = 1
        state["remaining_length"] = 0
        state["packet"] = bytearray()
        state["to_process"] = 0
        state["pos"] = 0

    def _handle_publish(self) -> MQTTErrorCode:
        """An MQTT v5 QoS 0/1 PUBLISH without properties (every telemetry report) made into
        a message directly; anything else, or anything malformed, as paho does it.

        paho builds a ``Properties`` object for every PUBLISH and logs each one through its
        own logger; for a backlog of small reports that is a third of the network thread.
        """
        header = self._in_packet["command"]
        packet = bytes(self._in_packet["packet"])
        bare = None
        if self._protocol == paho.MQTTv5:
            bare = _bare_publish_at(packet, header, 0, len(packet))
        if bare is None:
            return super()._handle_publish()
        topic, payload, mid, qos, retain = bare
        message = paho.MQTTMessage(mid=mid, topic=topic)
        message.qos = qos
        message.payload = payload
        message.dup = bool(header & 0x08)
        message.retain = retain
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            on_message(self, self._userdata, message)

    def read_buffered(self, max_packets: int) -> MQTTErrorCode:
        """Handle the packets already read into memory, up to ``max_packets``, with no
        ``select`` between them; paho's code (success once nothing whole is left).

        Runs of plain PUBLISH packets go to ``on_bare_publishes`` in one call each (a
        telemetry backlog costs a few microseconds a message, so this thread stays quick to
        read a command's reply); everything else goes through paho. A packet queued
        meanwhile (a command, PUBACKs) is written before the next packet is read.
        """
        sock = self.socket()
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while max_packets > 0 and isinstance(sock, BufferedSocket) and sock.pending():
            bare = self._take_bare(sock, max_packets)
            if bare:
                max_packets -= len(bare)
                self._last_bytes_received = time.monotonic()  # paho's keepalive reads it
                self.on_bare_publishes(bare)  # type: ignore[misc]  # _take_bare checked it
            else:
                rc = self.loop_read()
                max_packets -= 1
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.want_write():
                rc = self.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            sock = self.socket()
        return rc

    def _take_bare(self, sock: BufferedSocket, limit: int) -> list[BarePublish]:
        """Plain PUBLISH packets at the front of the buffer, when the bulk path applies: a
        handler is set, MQTT v5, acknowledgements are the caller's, no packet half read."""
        if (
            self.on_bare_publishes is None
            or self._protocol != paho.MQTTv5
            or not self._manual_ack
            or self._in_packet["command"] != 0
        ):
            return []
        return sock.take_bare_publishes(limit)


def queue_pubacks(client: paho.Client, mids: list[int]) -> None:
    """Queue the PUBACKs of ``mids``, in order, as one write (one wake-up of the network
    thread, one system call) instead of one per message.

    Why private: paho's public ``ack`` queues one packet per call; ``_packet_queue`` is what
    it calls with the same bytes, and it accepts several packets as one buffer.
    """
    data = b"".join([_PUBACK_SUCCESS.pack(PUBACK, 2, mid) for mid in mids])
    client._packet_queue(PUBACK, data, 0, 0)  # noqa: SLF001  no public batch acknowledgement
