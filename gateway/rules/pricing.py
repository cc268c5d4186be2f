"""Running cost of a trip from the dashboard pricing, for the credit-depletion rule."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dockgate.gateway.rules.config import Pricing
from dockgate.gateway.rules.state import Trip


def _hod_s(hod: str) -> int:
    h, m, s = (int(p) for p in hod.split(":"))
    return h * 3600 + m * 60 + s


def pricing_at(rules: list[Pricing], at: float, tz: ZoneInfo) -> Pricing | None:
    """The first pricing window (in list order) containing ``at``, in network local time."""
    if not rules:
        return None
    local = datetime.fromtimestamp(at, tz)
    dow = (local.weekday() + 1) % 7  # dashboard: 0 = Sunday
    t = dow * 86400 + local.hour * 3600 + local.minute * 60 + local.second
    for r in rules:
        start = r.start_dow * 86400 + _hod_s(r.start_hod)
        end = r.end_dow * 86400 + _hod_s(r.end_hod)
        if start == end or (start < end and start <= t < end):
            return r
        if start > end and (t >= start or t < end):
            return r
    return None


def trip_cost(p: Pricing, ride_s: float, hold_s: float, *, freefloat_lock: bool = False) -> float:
    """Unlock price, then per-minute use after the included time, plus on-hold minutes, plus
    ``freefloat_lock_price`` for a trip that ends locked outside a station (``freefloat_lock``).

    The running cost (the credit rule) leaves the lock price out: until the trip ends it may
    still end at a station."""
    billable = max(0.0, ride_s - p.unlock_included_time)
    lock = p.freefloat_lock_price if freefloat_lock else 0.0
    return (
        p.unlock_price
        + billable / 60.0 * p.use_per_minute_price
        + hold_s / 60.0 * p.on_hold_price
        + lock
    )


def trip_cost_now(p: Pricing, trip: Trip, now: float) -> float:
    """The cost of a trip at ``now``: its time on hold so far (a hold still running counts
    up to now) at the on-hold price, the rest of its time at the riding price."""
    hold_s = trip.hold_seconds
    if trip.on_hold and trip.hold_started_at:
        hold_s += now - trip.hold_started_at
    return trip_cost(p, now - trip.started_at - hold_s, hold_s)
