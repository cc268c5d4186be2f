"""PUBACKs in arrival order, each sent only once its message's effect is committed.

paho acknowledges a QoS 1 message as soon as ``on_message`` returns, while the gateway commits
the message's effect later, on the event loop: a crash in between lost messages the broker
had already forgotten. With manual acknowledgement the broker keeps every message until the
gateway says its effect is durable; after a crash the persistent session redelivers them.

MQTT v5 (section 4.6) wants PUBACKs in the order the PUBLISH packets arrived, so the ledger
releases a prefix: an entry goes out only when it and every entry before it are settled. A
command reply is settled on arrival; any other message once the consumer has taken it: a
refused one there and then (counted and logged first), an accepted one when the consumer
reports its batch committed. Batches
need not be committed in arrival order (a reader's tap overtakes queued telemetry): a
committed entry waits, settled, for those before it.

Packet ids belong to one connection. The ledger forgets every entry before the next connect
(the broker redelivers those messages itself, under the same ids, and the flow recognises
the copies), and it sends under its lock, so no PUBACK of an old connection can reach a new
one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class AckLedger:
    """The QoS 1 messages of the current connection not yet acknowledged to the broker."""

    def __init__(self, send_acks: Callable[[list[int]], None]) -> None:
        self._send_acks = send_acks
        self._lock = threading.Lock()
        self._entries: deque[tuple[int, int]] = deque()  # (sequence number, packet id)
        self._settled: set[int] = set()  # sequence numbers settled, not yet acknowledged
        self._seq = 0
        self.sent = 0

    def arrive(self, mid: int, *, settled: bool) -> int:
        """Record a QoS 1 message as it arrives (network thread); returns its sequence number.

        A settled arrival (a command reply) is acknowledged at once if nothing before it
        is still open.
        """
        with self._lock:
            self._seq += 1
            self._entries.append((self._seq, mid))
            if settled:
                self._settled.add(self._seq)
                if len(self._entries) == 1:
                    self._release()
            return self._seq

    def commit(self, seqs: list[int]) -> None:
        """These accepted messages have their effects committed (in any order: a tap may be
        committed before the telemetry that arrived ahead of it); their PUBACKs still leave
        in arrival order, once every message before them is settled too.

        Sequence numbers of an earlier connection are ignored: ``forget`` dropped them."""
        with self._lock:
            if not self._entries:
                return
            first = self._entries[0][0]
            self._settled.update(seq for seq in seqs if seq >= first)
            self._release()

    def forget(self) -> None:
        """A new connection begins: the broker will redeliver whatever is still open."""
        with self._lock:
            self._entries.clear()
            self._settled.clear()

    @property
    def open(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self._entries)

    def _release(self) -> None:
        entries, settled = self._entries, self._settled
        mids = []
        while entries and entries[0][0] in settled:
            seq, mid = entries.popleft()
            settled.discard(seq)
            mids.append(mid)
        if mids:  # one write for the whole prefix: a batch's PUBACKs leave together
            self._send_acks(mids)
            self.sent += len(mids)
