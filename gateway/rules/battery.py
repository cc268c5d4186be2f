"""Battery rules: slow a vehicle whose battery runs low, lock one that is nearly empty.

A nearly empty battery can leave a rider stranded with a vehicle that suddenly stops, so
below ``vehicle_speed_settings.min_battery_to_slow_down`` the vehicle is slowed, and below
``rent_settings.min_battery_to_auto_lock`` the trip is ended and the vehicle locked (once it
is at walking speed: see ``locking``).
"""

from __future__ import annotations

from dockgate.gateway.rules.plan import Plan

BATTERY_LOCK = ("rent_settings.min_battery_to_auto_lock",)


def battery_limit(p: Plan, battery: int) -> int | None:
    """The low-battery speed limit (``battery_slow_down_speed``) at this level, or None."""
    at = p.battery_slow_at
    if at is not None and battery <= at:
        return p.battery_slow_speed
    return None


def battery_locks(p: Plan, battery: int) -> tuple[str, ...]:
    """The battery's reason to lock the vehicle and end its trip at this level (if any)."""
    if p.lock_battery is not None and battery < p.lock_battery:
        return BATTERY_LOCK
    return ()
