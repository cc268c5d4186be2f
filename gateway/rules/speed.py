"""Speed limits: the speed zones at a fix, the vehicle's speed mode, and the command.

The effective limit is the minimum of every limit that applies (place limits from the speed
zones and GBFS, the border's slow-down, the model's speed mode, the low-battery slow-down,
a pending lock). The vehicle is told only when that minimum changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import shapely

from dockgate.gateway.rules.battery import battery_limit, battery_locks
from dockgate.gateway.rules.decisions import Command, CommandKind
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import SPEED, Plan, point

_dwithin = shapely.lib.dwithin


def hold_speed_zones(
    p: Plan, x: float, y: float, held: tuple[int, ...], hits: tuple[int, ...], buffer: float
) -> tuple[int, ...]:
    """Speed-zone hysteresis: a speed zone the vehicle was in (``held``) still applies while
    the fix (x, y) is within its buffer (accuracy) of the zone, so a ride along the zone's
    edge does not flap between two limits. Entering is never delayed: the lower limit may
    come early. Returns the zone positions that apply, sorted."""
    geoms, entries, bounds = p.grid.geoms, p.entries, p.bounds
    pt = None
    keep: tuple[int, ...] = ()
    for i in held:
        if i in hits or entries[i].kind != SPEED:
            continue
        x0, y0, x1, y1 = bounds[i]
        if x < x0 - buffer or x > x1 + buffer or y < y0 - buffer or y > y1 + buffer:
            continue  # farther than the buffer from the zone's bounding box
        if pt is None:
            pt = point(x, y)
        if _dwithin(geoms[i], pt, buffer):
            keep += (i,)
    return tuple(sorted(hits + keep)) if keep else hits


@dataclass(slots=True)
class LimitsMemory:
    """The vehicle's limits, their minimum and its battery lock reasons, with what they were
    worked out from (place limits, bundle, model, battery): a report that changes none of
    these reuses them (the dict is shared, so it is never changed in place). Also what the
    vehicle was last told (``sent_speed``, once ``speed_sent``)."""

    place_limits: dict[str, int] | None = None
    plan: Plan | None = None
    model: int | None = None
    battery: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    effective: int | None = None
    battery_locks: tuple[str, ...] = ()
    sent_speed: int | None = None
    speed_sent: bool = False


def vehicle_limits(
    p: Plan, mem: LimitsMemory, place_limits: dict[str, int], model: int | None, battery: int
) -> LimitsMemory:
    """The limits before any pending lock: the place's, the model's speed mode and the
    battery's slow-down; worked out again only when one of their sources changes."""
    if (
        mem.place_limits is not place_limits
        or mem.plan is not p
        or mem.model != model
        or mem.battery != battery
    ):
        limits = dict(place_limits)
        if p.has_speed_settings:
            mode = p.mode_speed.get(model, p.default_mode_speed)
            if mode is not None:
                limits["speed_mode"] = mode
            slow = battery_limit(p, battery)
            if slow is not None:
                limits["battery_slow_down"] = slow
        mem.place_limits, mem.plan, mem.model, mem.battery = place_limits, p, model, battery
        mem.limits = limits
        mem.effective = min(limits.values()) if limits else None
        mem.battery_locks = battery_locks(p, battery)
    return mem


def speed_command(draft: Draft, mem: LimitsMemory) -> None:
    """Tell the vehicle its limit when it changed (and once at first sight); the reason is
    the limit that sets it (the lowest, ties by name)."""
    effective = draft.max_speed
    if effective == mem.sent_speed and mem.speed_sent:
        return
    mem.sent_speed = effective
    mem.speed_sent = True
    limits = draft.limits
    reason = min(limits, key=lambda k: (limits[k], k)) if limits else "no_limit"
    draft.first_command(
        Command(
            CommandKind.SET_MAX_SPEED,
            draft.state.vehicle_id,
            reason,
            {**draft.inputs(), "limits": dict(limits)},
            max_speed_kph=effective,
        )
    )
