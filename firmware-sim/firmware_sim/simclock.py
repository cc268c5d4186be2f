"""Injectable clocks, so a demo can play a day in minutes and tests need no sleeps.

A simulator reads two times: ``now()`` drives behaviour (movement, battery drain, telemetry
intervals) and may run faster than the wall; ``stamp()`` is the device's real-time clock that
goes into payloads (an NTP-synced RTC in the field), so the gateway's "timestamp far in the
future" check still holds when the simulation is sped up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What a simulator needs from time."""

    def now(self) -> float:
        """Simulated seconds (epoch-based) that drive behaviour."""
        ...

    def stamp(self) -> float:
        """The device's own wall-clock timestamp (epoch seconds) for payloads."""
        ...

    async def sleep(self, sim_seconds: float) -> None:
        """Wait ``sim_seconds`` of simulated time."""
        ...


class ScaledClock:
    """Simulated time running ``scale`` times faster than the wall, starting at the wall's now."""

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        if not scale > 0:
            raise ValueError("time scale must be > 0")
        self.scale = float(scale)
        self._t0 = time.monotonic()
        self._start = time.time() if start is None else float(start)

    def now(self) -> float:
        return self._start + (time.monotonic() - self._t0) * self.scale

    def stamp(self) -> float:
        return time.time()

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(max(0.0, sim_seconds) / self.scale)


class ManualClock:
    """A clock that moves only when a test says so; ``sleep`` waits for ``advance``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._changed: asyncio.Event | None = None

    def now(self) -> float:
        return self._now

    def stamp(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def sleep(self, sim_seconds: float) -> None:
        deadline = self._now + max(0.0, sim_seconds)
        while self._now < deadline:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
