"""PUBACKs in arrival order, each sent only once its message's effect is committed.

paho acknowledges a QoS 1 message as soon as ``on_message`` returns, while the gateway commits
the message's effect later, on the event loop: a crash in between lost messages the broker
had already forgotten. With manual acknowledgement the broker keeps every message until the
gateway says its effect is durable; after a crash the persistent session redelivers them.

MQTT v5 (section 4.6) wants PUBACKs in the order the PUBLISH packets arrived, so the ledger
releases a prefix: an entry goes out only when it and every entry before it are settled. A
refused message or a command reply is settled on arrival (its refusal is counted and logged
first); an accepted device message when the consumer reports its batch committed.

Packet ids belong to one connection. The ledger forgets every entry before the next connect
(the broker redelivers those messages itself, under the same ids, and the flow recognises
the copies), and it sends under its lock, so no PUBACK of an old connection can reach a new
one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Entry:
    seq: int
    mid: int
    settled: bool


class AckLedger:
    """The QoS 1 messages of the current connection not yet acknowledged to the broker."""

    def __init__(self, send_ack: Callable[[int], None]) -> None:
        self._send_ack = send_ack
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque()
        self._seq = 0
        self._committed = 0  # every accepted message up to this sequence number is committed
        self.sent = 0

    def arrive(self, mid: int, *, settled: bool) -> int:
        """Record a QoS 1 message as it arrives (network thread); returns its sequence number.

        A settled arrival (refused, or a reply) is acknowledged at once if nothing before it
        is still open.
        """
        with self._lock:
            self._seq += 1
            self._entries.append(_Entry(self._seq, mid, settled))
            if settled and len(self._entries) == 1:
                self._release()
            return self._seq

    def commit_through(self, seq: int) -> None:
        """Every accepted message up to ``seq`` has its effect committed: acknowledge them."""
        with self._lock:
            self._committed = max(self._committed, seq)
            self._release()

    def forget(self) -> None:
        """A new connection begins: the broker will redeliver whatever is still open."""
        with self._lock:
            self._entries.clear()

    @property
    def open(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self._entries)

    def _release(self) -> None:
        entries = self._entries
        committed = self._committed
        while entries and (entries[0].settled or entries[0].seq <= committed):
            self._send_ack(entries.popleft().mid)
            self.sent += 1
