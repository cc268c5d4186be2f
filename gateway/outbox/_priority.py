"""The outbox's classes of events."""

from __future__ import annotations

import enum


class Priority(enum.IntEnum):
    """Outbox classes, most important first; lower classes give way first."""

    CRITICAL = 0  # critical fleet alerts: never dropped
    OUTCOME = 1  # command outcomes and trips
    STATE = 2  # vehicle, spot and station state (compactable by key)
    TELEMETRY = 3  # telemetry summaries
