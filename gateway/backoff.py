"""One backoff for every retry loop: exponential, capped, optionally jittered.

The MQTT driver and the reader drivers between reconnects, the daemon's supervisor between
restarts of a failed part, the telemetry sink between write attempts and the simulated devices
between reconnects all wait with it. Jitter keeps a fleet of clients (or every client of a
restarted broker) from coming back in the same millisecond; a loop on a single local device
(a serial line, a USB reader) needs none.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delay before retry ``attempt`` (0 for the first): ``initial * factor**attempt``,
    capped at ``cap``, then jittered.

    ``jitter`` spreads the delay by plus or minus that share (0.2: uniform in 80-120 % of it).
    ``full_jitter`` instead draws it uniformly between ``initial`` and the capped exponential
    delay ("full jitter" with a floor), so no delay ever exceeds the exponential ladder. With
    neither, the delays are the ladder itself.
    """

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.0
    full_jitter: bool = False
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.jitter and self.full_jitter:
            raise ValueError("choose jitter (a share) or full_jitter, not both")

    def ceiling(self, attempt: int) -> float:
        """The capped exponential delay of ``attempt``, before any jitter."""
        try:
            grown = self.initial * self.factor ** max(0, attempt)
        except OverflowError:  # float power past 1e308: long past any cap
            return self.cap
        return min(self.cap, grown)

    def delay(self, attempt: int) -> float:
        """The delay before retry ``attempt``, jittered as configured."""
        ceiling = self.ceiling(attempt)
        if self.full_jitter:
            return self.rng.uniform(self.initial, ceiling)
        if self.jitter:
            return ceiling * (1 + self.rng.uniform(-self.jitter, self.jitter))
        return ceiling

    def series(self) -> BackoffSeries:
        """A counter of attempts that hands out this backoff's delays in turn."""
        return BackoffSeries(self)


class BackoffSeries:
    """Successive delays of one :class:`Backoff`: longer after each failure, back to the
    first after :meth:`reset` (a success)."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.attempt = 0

    def delay(self) -> float:
        """The delay before the current attempt, without moving on to the next."""
        return self.backoff.delay(self.attempt)

    def next_delay(self) -> float:
        """The delay before the current attempt; the next call returns the one after it."""
        delay = self.backoff.delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
