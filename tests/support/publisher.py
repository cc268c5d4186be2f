"""An independent device-side publisher for system tests: plain paho, QoS 1, paced.

It publishes messages (a fixed list, or an endless stream until stopped) at a steady rate
from its own thread and then waits for the broker's PUBACK of every one, so a test knows
exactly what the broker accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class PacedPublisher(threading.Thread):
    """Publishes ``messages`` (topic, payload) at ``rate`` per second, until they run out or
    :meth:`finish` stops it; counts PUBACKs."""

    def __init__(
        self, port: int, messages: Iterable[tuple[str, bytes]], *, rate: float, client_id: str
    ) -> None:
        super().__init__(name=f"publisher-{client_id}", daemon=True)
        self.port = port
        self.messages = messages
        self.rate = rate
        self.client_id = client_id
        self.published = 0
        self.acked = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            self._publish_all()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def _publish_all(self) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        client.max_inflight_messages_set(100)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        started = time.monotonic()
        infos = []
        messages = iter(self.messages)
        while not self._halt.is_set():  # checked first: a message taken is a message sent
            message = next(messages, None)
            if message is None:
                break
            topic, payload = message
            infos.append(client.publish(topic, payload, qos=1))
            self.published += 1
            delay = started + self.published / self.rate - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
            self.acked += 1
        client.loop_stop()
        client.disconnect()

    def finish(self, timeout: float = 90.0) -> int:
        """Stop publishing, wait for every PUBACK; how many messages the broker took."""
        self._halt.set()
        self.join(timeout)
        assert self.error is None, f"publisher failed: {self.error!r}"
        assert not self.is_alive(), "publisher still waiting for PUBACKs"
        return self.acked
