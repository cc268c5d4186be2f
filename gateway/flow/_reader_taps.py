"""Taps that readers publish on the broker: verified here, then decided as a direct reader's.

A reader on a standby machine or a station controller holds no key: it publishes what it
read (``ReaderTap``) and the gateway that leads verifies it with the same verifier, duplicate
folding and :class:`TapDesk` as a tap of a reader attached to it. The tap is handled inside
the device batch's transaction: its verdict (the replay counter), its journaled unlock, its
outbox event and its identity (``store.inbox``: reader, ``seq`` and ``ts``) commit together,
so a tap the broker delivers again after a crash or a failover is recognised and never
applied twice. The unlock is sent once the batch has committed (a background task started
here runs only after the synchronous batch is done, and a batch rolled back cancels it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._taps import TapDesk
from dockgate.gateway.protocol import DeviceMessage, ReaderTap
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.taps import Tap

Verify = Callable[[TapEvent], Tap]


def tap_event(msg: DeviceMessage, payload: ReaderTap) -> TapEvent:
    """A published tap as a reader driver's event, on the gateway's clocks.

    The monotonic times are those of the tap's arrival at the gateway (the reader's monotonic
    clock means nothing here); ``wall_time`` is the read's time (the receive time where the
    reader's clock is implausible).
    """
    arrived = time.monotonic() - max(0.0, time.time() - msg.received_at)
    return TapEvent(
        msg.device.device_id,
        bytes.fromhex(payload.uid) if payload.uid is not None else None,
        payload.url,
        arrived,
        arrived,
        msg.effective_ts / 1000.0,
        (payload.read_ms or 0) / 1000.0,
        0,
        payload.error,
    )


class ReaderTaps:
    """Hands each published tap to the verifier and the tap desk; counts what it ignores.

    ``verify`` is the daemon's ``TapHandler.handle`` (and its bookkeeping); until it is set
    (:meth:`dockgate.gateway.flow.RideFlow.verify_reader_taps`) taps are only counted
    (``ignored["reader-tap-unverified"]``). A tap from another network than the site's is
    counted ``ignored["reader-tap-network"]``.
    """

    def __init__(self, parts: FlowParts, desk: TapDesk, ignored: Counter[str]) -> None:
        self.parts = parts
        self.desk = desk
        self.ignored = ignored
        self.verify: Verify | None = None

    def handle(self, msg: DeviceMessage) -> None:
        """Verify and decide one published tap (joins the caller's transaction)."""
        payload = msg.payload
        if not isinstance(payload, ReaderTap):
            self.ignored["reader-not-a-tap"] += 1
            return
        if msg.device.network != self.parts.site.network_id:
            self.ignored["reader-tap-network"] += 1
            return
        if self.verify is None:
            self.ignored["reader-tap-unverified"] += 1
            return
        tap = self.verify(tap_event(msg, payload))
        if tap.duplicate:  # the tag still on the antenna: the first read's verdict stands
            return
        decision, entry = self.desk.prepare(tap)
        if entry is not None:
            self.parts.tasks.spawn(self.desk.unlock(tap, decision, entry))
