"""The reader contract: what the core expects from every NFC reader driver.

A driver watches its reader(s) and hands out one :class:`TapEvent` per physical tap: which
reader, the UID as the reader saw it, the NDEF URL it read, and when. Verification is not
the driver's job: :mod:`dockgate.gateway.taps` does that with the SUN verifier. The contract
lives in the core so that the core depends on no driver; the drivers (``dockgate.drivers``)
implement :class:`ReaderDriver` and import these types from here.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Self

__all__ = ["ReaderDriver", "ReaderError", "ReaderState", "ReaderStatus", "TapEvent"]

ReaderState = Literal["up", "down", "error"]


@dataclass(frozen=True, slots=True)
class TapEvent:
    """A tag was presented at a reader and (perhaps) read.

    ``presented_at`` and ``read_at`` are ``time.monotonic()`` values: the moment the reader
    stack reported the tag and the moment the NDEF read finished. ``stack_seconds`` is the
    time spent waiting on the reader stack (APDU or frame round trips), so benchmarks can
    show it apart from the gateway's own time. ``error`` is set (and ``url`` may be None)
    when the read failed: ``removed``, ``no_ndef``, ``bad_ndef``, ``io``, ...
    """

    reader: str
    uid: bytes | None
    url: str | None
    presented_at: float
    read_at: float
    wall_time: float
    stack_seconds: float = 0.0
    apdus: int = 0
    error: str | None = None


@dataclass(slots=True)
class ReaderStatus:
    """What a technician wants to know about one reader."""

    reader: str
    driver: str
    state: ReaderState = "down"
    taps: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)


class ReaderError(Exception):
    """A reader or its line failed in a way the driver could not recover from by itself."""


class ReaderDriver(abc.ABC):
    """Base of every reader driver: ``async with driver: async for tap in driver.taps(): ...``.

    Drivers reconnect by themselves when their reader or line goes away, and keep
    :meth:`status` up to date meanwhile; ``taps`` only ends when the driver is closed.
    """

    name: str = "reader"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin watching; returns once the watch runs (the reader may still be down)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop watching and release the reader; idempotent."""

    @abc.abstractmethod
    def taps(self) -> AsyncIterator[TapEvent]:
        """Tap events, in the order they happened."""

    @abc.abstractmethod
    def status(self) -> list[ReaderStatus]:
        """One status per reader this driver watches."""
