"""The outbox's classes of events and what each bound may do to them."""

from __future__ import annotations

import enum


class Priority(enum.IntEnum):
    """Outbox classes, most important first; only STATE ever gives way to a bound.

    The backend reads the class of each event as its ``priority`` (``critical``, ...).
    """

    CRITICAL = 0  # fleet and site alerts: never dropped
    OUTCOME = 1  # what happened: trips, taps, rentals, command outcomes, faults: never dropped
    STATE = 2  # latest vehicle, spot and station state (compactable by key): may be dropped


#: Classes no bound ever drops: their only bound is the disk (``[storage] min_free_bytes``).
NEVER_DROPPED = frozenset({Priority.CRITICAL, Priority.OUTCOME})
#: Classes a bound may drop, the first to give way first.
DROPPABLE = (Priority.STATE,)
