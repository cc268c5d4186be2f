"""Trip rules: the rent timings (too long, stolen, auto-pause, maximum pause, auto-lock)
and the credit rule (lock when the running cost reaches the rider's credit).

They depend on the trip and the clock only, and off hold they can change only at a few
known instants (a timer or lock coming due). So after running they note the earliest such
instant (``quiet_until``) and are not run again before it, for the same trip and bundle: a
lock reason already in force stands (time and cost only grow while the clock goes forward;
a clock going back runs them again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dockgate.gateway.rules.config import Pricing, RentTimings
from dockgate.gateway.rules.decisions import Command, CommandKind, Notification, NotificationKind
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import Plan
from dockgate.gateway.rules.pricing import trip_cost_now
from dockgate.gateway.rules.state import Trip

TIME_LOCK = ("rent_timings.trip_auto_lock",)
CREDIT_LOCK = ("rent_settings.credit_depletion_auto_lock",)


@dataclass(slots=True)
class TripMemory:
    """What the rules remember about the current trip (a new trip starts afresh).

    Once-per-trip flags: the rider was told of a no-ride-through zone (``no_through_told``,
    until the vehicle is out of such zones) and of a stolen vehicle; the auto-pause, the end
    and the unlock were commanded. ``too_long_at``: the last too-long notice. The trip's
    pricing (per bundle) and the duration off hold from which the cost may reach the credit.
    ``locks``: the trip's lock reasons at the last run; ``cost_due``: the credit rule fired
    then. ``quiet_*``: before ``quiet_until`` (from ``quiet_from``) no trip rule can change,
    for ``quiet_trip`` (off hold) and ``quiet_plan``.
    """

    trip_id: str | None = None
    no_through_told: bool = False
    stolen_told: bool = False
    hold_sent: bool = False
    end_sent: bool = False
    unlock_sent: bool = False
    too_long_at: float | None = None
    price: Pricing | None = None
    price_plan: Plan | None = None
    credit_key: Trip | None = None
    credit_from: float = 0.0
    locks: tuple[str, ...] = ()
    cost_due: bool = False
    quiet_trip: Trip | None = None
    quiet_plan: Plan | None = None
    quiet_from: float = math.inf
    quiet_until: float = -math.inf


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """A rent timing that fired: a command for the vehicle (with ``extra`` inputs) or a
    message (``to_rider``: for the rider of the trip, else for the operator)."""

    kind: CommandKind | NotificationKind
    reason: str
    to_rider: bool = False
    extra: dict[str, float] = field(default_factory=dict)


def run_trip_rules(
    p: Plan, mem: TripMemory, trip: Trip, now: float, moving: bool
) -> tuple[TimerEvent, ...]:
    """Run the trip rules for a report on a trip (unless they cannot have changed since
    they last ran). Sets ``mem.locks`` and ``mem.cost_due``; returns the timers that fired."""
    q = mem.quiet_trip
    if (
        mem.quiet_from <= now < mem.quiet_until
        and (q is trip or (q is not None and q == trip))
        and mem.quiet_plan is p
    ):
        return ()
    duration = now - trip.started_at
    rt = p.timings
    locks: tuple[str, ...] = ()
    if rt is not None and rt.trip_auto_lock > 0 and duration >= rt.trip_auto_lock:
        locks = TIME_LOCK
    mem.cost_due = credit_used_up(p, mem, trip, now, duration)
    if mem.cost_due:
        locks += CREDIT_LOCK
    mem.locks = locks
    events: tuple[TimerEvent, ...] = ()
    if rt is not None and (
        duration >= p.timers_from_s
        or trip.on_hold
        or (not moving and trip.last_moved_at is not None and rt.trip_auto_pause > 0)
    ):
        events = trip_timers(trip, now, duration, rt, mem, moving)
    if trip.on_hold:
        mem.quiet_trip = None
    else:
        mem.quiet_trip, mem.quiet_plan, mem.quiet_from = trip, p, now
        mem.quiet_until = quiet_until(p, trip, mem)
    return events


def credit_used_up(p: Plan, mem: TripMemory, trip: Trip, now: float, duration: float) -> bool:
    """Has the trip's running cost reached the rider's credit (``credit_depletion_auto_lock``)?

    Off hold the cost only grows with the trip's duration, so the duration from which it may
    reach the credit is worked out once per trip (and bundle), and the exact cost is
    computed only from there on."""
    if not p.credit_lock or trip.credit is None:
        return False
    if mem.price_plan is not p:  # the trip's pricing window, once per trip and bundle
        mem.price, mem.price_plan = p.price(trip.started_at), p
        mem.credit_key = None
    price = mem.price
    if mem.credit_key is not trip:  # worked out per Trip object
        credit_from(mem, trip, price)
    if price is not None and (trip.on_hold or duration >= mem.credit_from):
        return trip_cost_now(price, trip, now) >= trip.credit
    return False


def credit_from(mem: TripMemory, trip: Trip, price: Pricing | None) -> float:
    """The trip duration (off hold) from which the cost may reach the credit; a little
    early on purpose (the exact cost decides)."""
    mem.credit_key = trip
    credit = trip.credit
    if price is not None and credit is not None:
        fixed = price.unlock_price + trip.hold_seconds / 60.0 * price.on_hold_price
        if fixed >= credit:
            start = -math.inf
        elif price.use_per_minute_price <= 0:
            start = math.inf
        else:
            per_s = price.use_per_minute_price / 60.0
            ride_s = price.unlock_included_time + (credit - fixed) / per_s
            start = trip.hold_seconds + ride_s - 1e-3
        mem.credit_from = start
    return mem.credit_from


def trip_timers(
    trip: Trip, now: float, duration: float, rt: RentTimings, mem: TripMemory, moving: bool
) -> tuple[TimerEvent, ...]:
    """The rent timings that fire now: a too-long notice (repeated at its frequency), a
    stolen notice (once), the auto-pause of a still vehicle and the end of a trip paused
    too long (once each)."""
    out: list[TimerEvent] = []
    if duration >= rt.trip_too_long_notifications and (
        mem.too_long_at is None or now - mem.too_long_at >= rt.trip_too_long_notifications_frequency
    ):
        mem.too_long_at = now
        out.append(
            TimerEvent(
                NotificationKind.TRIP_TOO_LONG, "rent_timings.trip_too_long_notifications", True
            )
        )
    if duration >= rt.vehicle_stolen and not mem.stolen_told:
        mem.stolen_told = True
        out.append(TimerEvent(NotificationKind.VEHICLE_STOLEN, "rent_timings.vehicle_stolen"))
    moved = trip.last_moved_at
    if (
        not trip.on_hold
        and not moving
        and rt.trip_auto_pause > 0
        and moved is not None
        and now - moved >= rt.trip_auto_pause
        and not mem.hold_sent
    ):
        mem.hold_sent = True
        still = {"still_for_s": round(now - moved, 3)}
        out.append(TimerEvent(CommandKind.TRIP_HOLD, "rent_timings.trip_auto_pause", extra=still))
    held = trip.hold_started_at
    if (
        trip.on_hold
        and held is not None
        and rt.trip_max_pause > 0
        and now - held >= rt.trip_max_pause
        and not mem.end_sent
    ):
        mem.end_sent = True
        paused = {"paused_for_s": round(now - held, 3)}
        out.append(TimerEvent(CommandKind.END_TRIP, "rent_timings.trip_max_pause", extra=paused))
    return tuple(out)


def quiet_until(p: Plan, trip: Trip, mem: TripMemory) -> float:
    """The earliest time at which a trip rule may change (off hold): trip_auto_lock or the
    credit lock begins (once begun, they hold on while time goes forward), a too-long or
    stolen notification or the auto-pause is due. A little early on purpose (rounding),
    never late."""
    s = trip.started_at
    due = [math.inf]
    rt = p.timings
    if rt is not None:
        if rt.trip_auto_lock > 0 and TIME_LOCK[0] not in mem.locks:
            due.append(s + rt.trip_auto_lock)
        too_long = s + rt.trip_too_long_notifications
        if mem.too_long_at is not None:
            too_long = max(too_long, mem.too_long_at + rt.trip_too_long_notifications_frequency)
        due.append(too_long)
        if not mem.stolen_told:
            due.append(s + rt.vehicle_stolen)
        if rt.trip_auto_pause > 0 and trip.last_moved_at is not None and not mem.hold_sent:
            due.append(trip.last_moved_at + rt.trip_auto_pause)
    if (
        p.credit_lock
        and trip.credit is not None
        and mem.price_plan is p
        and mem.credit_key is trip
        and mem.price is not None
        and CREDIT_LOCK[0] not in mem.locks
    ):
        due.append(s + mem.credit_from)
    q = min(due)
    if q != math.inf:
        q -= 1e-3 + abs(q) * 1e-9  # NaN stays NaN: never quiet
    return q


def timer_decisions(draft: Draft, events: tuple[TimerEvent, ...]) -> None:
    """The decisions of the rent timings that fired, in the order they fired."""
    vid = draft.state.vehicle_id
    for e in events:
        if isinstance(e.kind, CommandKind):
            draft.command(Command(e.kind, vid, e.reason, {**draft.inputs(), **e.extra}))
        else:
            draft.notify(Notification(e.kind, vid, e.reason, e.to_rider, draft.inputs()))
