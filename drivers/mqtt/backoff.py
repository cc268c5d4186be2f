"""Jittered exponential backoff for reconnects ("full jitter"), so a fleet of gateways or a
restarted broker does not see every client come back in the same millisecond."""

from __future__ import annotations

import random


class Backoff:
    """Delay before reconnect attempt n: uniform in [min, min(max, min * 2**n)]."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = max(maximum, minimum)
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        cap = min(self.maximum, self.minimum * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self._rng.uniform(self.minimum, cap)

    def reset(self) -> None:
        self.attempt = 0
