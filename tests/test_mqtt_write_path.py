"""``FastClient.write_queued``: a command or a batch's PUBACKs leave from the thread that
queued them on a plain TCP connection, and are left to the network thread on TLS (one SSL
object must not write in one thread while it reads in another)."""

from __future__ import annotations

import socket
import ssl

from paho.mqtt.enums import CallbackAPIVersion

from dockgate.drivers.mqtt.paho_compat import BufferedSocket, FastClient, queue_pubacks

PUBACKS = bytes([0x40, 2, 0, 1, 0x40, 2, 0, 2])


def client_on(sock: socket.socket) -> FastClient:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="write-path", manual_ack=True)
    client._sock = BufferedSocket(sock)  # as paho's connect leaves it
    client.on_socket_register_write = lambda *a: None  # as the driver sets it: no write
    client.on_socket_unregister_write = lambda *a: None  # from paho's own queueing
    return client


def test_queued_pubacks_leave_from_the_calling_thread_on_tcp() -> None:
    left, right = socket.socketpair()
    with left, right:
        client = client_on(right)
        queue_pubacks(client, [1, 2])
        client.write_queued()
        assert not client.want_write()
        left.settimeout(1)
        assert left.recv(64) == PUBACKS


def test_queued_pubacks_wait_for_the_network_thread_on_tls() -> None:
    plain = socket.socket()
    context = ssl.create_default_context()
    with context.wrap_socket(plain, server_hostname="broker.invalid") as tls:
        client = client_on(tls)
        writes: list[int] = []
        client._packet_write = lambda: writes.append(1)  # type: ignore[method-assign]
        queue_pubacks(client, [1, 2])
        client.write_queued()
        assert writes == []
        assert client.want_write()  # still queued: the network thread writes it
