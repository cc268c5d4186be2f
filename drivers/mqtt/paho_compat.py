"""The one place dockgate works around paho-mqtt: the private members it must reach, and the
one constructor paho leaves unannotated.

Each function below does something paho (or aiomqtt, which wraps a paho client) offers no
public or typed call for, and says why. Keeping them here means a paho upgrade that renames
a private member breaks one module, and a reviewer sees every such reach at once.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    import aiomqtt


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
