"""Log in to a real broker as one account and report only what the broker answered.

``login(...)`` gives the CONNACK reason code (0: accepted; None: no CONNACK at all, e.g. a TLS
handshake the broker refused); ``Session.publish`` gives the PUBACK reason code (0: accepted,
135: not authorized by the ACL).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from dockgate.sim.services.mosquitto import Mosquitto

NOT_AUTHORIZED = 135  # MQTT v5 reason 0x87


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a TLS client presents: the CA it trusts, and its certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


class Session:
    """One MQTT v5 client logged in (or refused) as one account."""

    def __init__(
        self,
        broker: Mosquitto,
        user: str | None = None,
        password: str | None = None,
        *,
        tls: ClientTls | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.timeout = timeout
        self.code: int | None = None
        self._answered = threading.Event()
        self._acks: dict[int, int] = {}
        self._acked = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=user or "", protocol=paho.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca),
                certfile=str(tls.cert) if tls.cert else None,
                keyfile=str(tls.key) if tls.key else None,
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(broker.host, broker.port, keepalive=10)
        except (OSError, ssl.SSLError):
            return  # refused during the handshake: no CONNACK
        self.client.loop_start()
        self._answered.wait(timeout)
        if self.code is None:
            self.client.loop_stop()  # refused: no reconnecting in the background

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.code = rc.value
        self._answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self._answered.set()  # closed before any CONNACK: a refused TLS handshake

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._acked:
            self._acks[mid] = rc.value
            self._acked.notify_all()

    @property
    def accepted(self) -> bool:
        return self.code == 0

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1 and wait for the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self._acks, self.timeout), "no PUBACK"
            return self._acks[info.mid]

    def connected(self) -> bool:
        return self.client.is_connected()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def login(
    broker: Mosquitto, user: str | None, password: str | None = None, **kw: Any
) -> int | None:
    """The CONNACK reason code for this account (None: the broker never answered)."""
    with Session(broker, user, password, **kw) as session:
        return session.code
