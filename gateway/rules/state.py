"""What the engine is told about a vehicle: its latest report and its current trip.

Kept apart from the engine so that every rule module can read these records without
importing the engine that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Trip:
    """The current trip. ``credit`` is the rider's balance when it started (None: unknown)."""

    trip_id: str
    started_at: float
    credit: float | None = None
    on_hold: bool = False
    hold_started_at: float | None = None
    hold_seconds: float = 0.0
    last_moved_at: float | None = None


@dataclass(frozen=True, slots=True)
class VehicleState:
    """A vehicle's latest telemetry: GPS fix (degrees, seconds, metres), km/h, battery %."""

    vehicle_id: str
    lat: float
    lon: float
    fix_time: float
    accuracy_m: float
    speed_kph: float
    battery: int
    locked: bool
    trip: Trip | None = None
    vehicle_type_id: str | None = None
    model_id: int | None = None
