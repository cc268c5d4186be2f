"""A reader's tap event in, an accepted or rejected tap out.

Each :class:`~dockgate.gateway.readers.TapEvent` goes through the SUN verifier (profile found
from the URL, keys from the configuration, counters from the replay store). A reader that
sees the same physical tap twice (the tag still on the antenna, or the same message handed
over again) yields one tap plus duplicates, never a replay alarm: within ``window`` seconds
at the same reader, a second valid read of the same UID, the very same URL again, or a
"replayed" verdict for exactly the counter just accepted there, is marked ``duplicate``.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from dockgate.gateway.readers import TapEvent

REPLAYED = "replayed"  # dockgate.gateway.sun.reasons.REPLAYED
DUPLICATE = "duplicate"


class SunResultLike(Protocol):
    """What taps read of a verdict (``dockgate.gateway.sun.SunResult`` has these)."""

    @property
    def valid(self) -> bool: ...
    @property
    def uid(self) -> str | None: ...
    @property
    def read_ctr(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def record(self) -> str | None: ...


class Verifier(Protocol):
    """What taps need from ``dockgate.gateway.sun.SunVerifier``."""

    def verify_url(self, url: str, *, reader_uid: bytes | None = None) -> SunResultLike: ...


@dataclass(frozen=True, slots=True)
class Tap:
    """The verdict on one tap: ``accepted`` with ``reason`` None, or rejected with a reason.

    ``reason`` is a SUN verifier reason (``bad_mac``, ``replayed``, ``unknown_profile``, ...)
    or, when the read itself failed, the reader's (``removed``, ``io``, ``no_ndef``, ...).
    """

    event: TapEvent
    accepted: bool
    reason: str | None
    uid: str | None
    read_ctr: int | None = None
    record: str | None = None
    profile: str | None = None
    duplicate: bool = False
    verified_at: float = 0.0

    @property
    def gateway_seconds(self) -> float:
        """The gateway's own time: from the end of the tag read to this verdict."""
        return self.verified_at - self.event.read_at

    def as_dict(self) -> dict[str, object]:
        """The JSON line of ``dockgate reader watch --json``."""
        return {
            "reader": self.event.reader,
            "uid": self.uid,
            "url": self.event.url,
            "valid": self.accepted,
            "reason": self.reason,
            "read_ctr": self.read_ctr,
            "record": self.record,
            "profile": self.profile,
            "duplicate": self.duplicate,
            "time": self.event.wall_time,
        }


class TapHandler:
    """Verifies tap events and folds duplicates; ``counters`` counts outcomes by reason."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_recent: int = 4096,
    ) -> None:
        self.verifier = verifier
        self.window = window
        self.clock = clock
        self.max_recent = max_recent
        self.counters: Counter[str] = Counter()
        # (reader, kind, key) -> (presented_at, tap); kind: "url" | "uid"
        self._recent: OrderedDict[tuple[str, str, str], tuple[float, Tap]] = OrderedDict()

    def handle(self, event: TapEvent) -> Tap:
        """One event in, one tap out (never raises for hostile input)."""
        reader_uid = event.uid.hex() if event.uid else None
        if event.error is not None or event.url is None:
            return self._count(
                Tap(event, False, event.error or "no_url", reader_uid, verified_at=self.clock())
            )
        seen = self._seen(event, "url", event.url)
        if seen is not None:
            return self._duplicate(event, seen)
        try:
            result = self.verifier.verify_url(
                event.url, reader_uid=event.uid if event.uid and len(event.uid) == 7 else None
            )
        except Exception as exc:  # a verifier bug must not stop the reader loop
            return self._count(
                Tap(
                    event,
                    False,
                    f"verifier_error:{type(exc).__name__}",
                    reader_uid,
                    verified_at=self.clock(),
                )
            )
        uid = result.uid or reader_uid
        tap = Tap(
            event,
            bool(result.valid),
            result.reason,
            uid,
            result.read_ctr,
            result.record,
            result.profile,
            verified_at=self.clock(),
        )
        if uid is not None and (tap.accepted or tap.reason == REPLAYED):
            prior = self._seen(event, "uid", uid)
            if prior is not None and (
                tap.accepted or (prior.accepted and prior.read_ctr == tap.read_ctr)
            ):
                return self._duplicate(event, prior, tap)
        self._remember(event, "url", event.url, tap)
        if tap.accepted and uid is not None:
            self._remember(event, "uid", uid, tap)
        return self._count(tap)

    async def run(self, events: AsyncIterator[TapEvent]) -> AsyncIterator[Tap]:
        """Verify a driver's tap stream: ``async for tap in handler.run(driver.taps())``."""
        async for event in events:
            yield self.handle(event)

    # -- helpers ---------------------------------------------------------------------------
    def _count(self, tap: Tap) -> Tap:
        self.counters[DUPLICATE if tap.duplicate else tap.reason or "accepted"] += 1
        return tap

    def _seen(self, event: TapEvent, kind: str, key: str) -> Tap | None:
        entry = self._recent.get((event.reader, kind, key))
        if entry is None or event.presented_at - entry[0] > self.window:
            return None
        return entry[1]

    def _remember(self, event: TapEvent, kind: str, key: str, tap: Tap) -> None:
        slot = (event.reader, kind, key)
        self._recent[slot] = (event.presented_at, tap)
        self._recent.move_to_end(slot)
        while len(self._recent) > self.max_recent:
            self._recent.popitem(last=False)

    def _duplicate(self, event: TapEvent, prior: Tap, fresh: Tap | None = None) -> Tap:
        """The same physical tap again: the first verdict stands, the window slides on."""
        base = fresh if fresh is not None and fresh.accepted else prior
        tap = Tap(
            event,
            prior.accepted,
            prior.reason,
            base.uid,
            base.read_ctr,
            base.record,
            base.profile,
            duplicate=True,
            verified_at=self.clock(),
        )
        if prior.uid is not None and prior.accepted:
            self._remember(event, "uid", prior.uid, prior)
        if event.url is not None:
            self._remember(event, "url", event.url, prior)
        return self._count(tap)
