"""Locking and unlocking: a lock is only ever commanded at walking speed or below.

Reasons to lock come from the border (``lock_vehicle``), the battery, the trip's time and
the rider's credit; all but the border's also end the trip. A moving vehicle that must be
locked is first slowed to the slow speed (a pending lock) and locked once it is at rest; an
unanswered lock is sent again every ``LOCK_RESEND_S``. A vehicle on a trip with no reason to
be locked is unlocked, once per trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockgate.gateway.rules.decisions import Command, CommandKind
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import Plan
from dockgate.gateway.rules.speed import LimitsMemory
from dockgate.gateway.rules.state import VehicleState
from dockgate.gateway.rules.trip_rules import TripMemory

LOCK_RESEND_S = 30.0


@dataclass(slots=True)
class LockMemory:
    """When a lock was last commanded (None: no lock is pending), and the limits with the
    pending lock's slow speed, made once per limits (``pending_from``)."""

    sent_at: float | None = None
    pending_from: dict[str, int] | None = None
    pending_limits: dict[str, int] = field(default_factory=dict)
    pending_max_speed: int | None = None


def pending_lock(p: Plan, mem: LockMemory, limits: LimitsMemory) -> LockMemory:
    """A vehicle that must be locked while moving is slowed first: the slow speed applies
    as the ``pending_lock`` limit until it is at rest and can be locked. The same limits
    give the same result, made once (it is never changed in place)."""
    if mem.pending_from is not limits.limits:
        mem.pending_from = limits.limits
        mem.pending_limits = {**limits.limits, "pending_lock": p.slow}
        e = limits.effective
        mem.pending_max_speed = p.slow if e is None or p.slow < e else e
    return mem


def lock_settled(
    mem: LockMemory,
    trip_mem: TripMemory,
    st: VehicleState,
    locks: tuple[str, ...],
    moving: bool,
    now: float,
) -> bool:
    """Would ``lock_decisions`` do nothing for this report? (no lock due or to resend, no
    unlock due, nothing to forget)"""
    if locks:
        return (
            st.locked or moving or not (mem.sent_at is None or now - mem.sent_at >= LOCK_RESEND_S)
        )
    trip = st.trip
    return mem.sent_at is None and not (
        trip is not None and st.locked and not trip.on_hold and not trip_mem.unlock_sent
    )


def lock_decisions(
    draft: Draft,
    p: Plan,
    mem: LockMemory,
    trip_mem: TripMemory,
    locks: tuple[str, ...],
    ends: tuple[str, ...],
    moving: bool,
) -> None:
    """Lock for ``locks`` (reasons, in order; ``ends``: those that also end the trip) once
    the vehicle is at rest (``pending_lock`` slows it first), or unlock a vehicle on a trip
    that is locked with no reason to be."""
    st = draft.state
    trip = st.trip
    if not locks:
        mem.sent_at = None
        if trip is not None and st.locked and not trip.on_hold and not trip_mem.unlock_sent:
            trip_mem.unlock_sent = True
            draft.command(
                Command(
                    CommandKind.UNLOCK,
                    st.vehicle_id,
                    "trip.active",
                    draft.inputs(),
                    auto_light=p.auto_light.get(st.model_id),
                )
            )
        return
    now = draft.now
    if st.locked or moving or not (mem.sent_at is None or now - mem.sent_at >= LOCK_RESEND_S):
        return  # locked already, slowed first, or sent a moment ago
    mem.sent_at = now
    inputs = {**draft.inputs(), "lock_reasons": list(locks)}
    draft.command(Command(CommandKind.LOCK, st.vehicle_id, locks[0], inputs))
    if trip is not None and ends and not trip_mem.end_sent:
        trip_mem.end_sent = True
        draft.command(Command(CommandKind.END_TRIP, st.vehicle_id, ends[0], inputs))
