"""Dashboard-style rule configuration, with the fleet dashboard's names, units and ranges.

Shapes are lists of ``[longitude, latitude]`` pairs (GeoJSON order, WGS 84 degrees), as in
GBFS; the dashboard's "list of GPS coordinates" is read in that order. Times are seconds,
speeds km/h, battery levels percent, prices in the network's currency.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Coord = Annotated[list[Annotated[float, Field(ge=-180, le=180)]], Field(min_length=2, max_length=2)]
Shape = Annotated[list[Coord], Field(min_length=3)]

_HOD = re.compile(r"^((([0-1]?\d|2[0-3]):[0-5]\d:[0-5]\d)|24:00:00)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_latitudes(shape: list[list[float]]) -> list[list[float]]:
    for i, (_, lat) in enumerate(shape):
        if not -90 <= lat <= 90:
            raise ValueError(f"point {i}: latitude {lat} outside -90..90 (shapes are [lon, lat])")
    return shape


class BorderSettings(_Model):
    """What happens when a vehicle leaves the network's border (dashboard: border settings)."""

    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool


class Border(_Model):
    """The network border: ``shape`` (>= 3 points) and its ``settings``."""

    shape: Shape
    settings: BorderSettings

    _lat = field_validator("shape")(_check_latitudes)


class SpeedZone(_Model):
    """A speed zone: a polygon where vehicles are limited to ``max_speed`` (6..25 km/h)."""

    id: int = Field(ge=1)
    name: str | None = None
    shape: Shape
    max_speed: int = Field(ge=6, le=25)

    _lat = field_validator("shape")(_check_latitudes)


class VirtualParking(_Model):
    """A virtual parking: a polygon where ``capacity`` vehicles may be parked."""

    id: int = Field(ge=1)
    name: str | None = None
    shape: Shape
    capacity: int = Field(ge=0)

    _lat = field_validator("shape")(_check_latitudes)


class RentSettings(_Model):
    """Dashboard rent settings; the engine enforces the battery, hold and credit rules."""

    default_vehicle_guarantee: float = Field(default=0, ge=0)
    trip_to_skip_pre_auth_guarantee: int = Field(default=-1, ge=-1)
    first_purchase_required: bool = False
    min_battery_to_rent: int = Field(ge=10, le=95)
    max_simultaneous_rented_vehicle: int = Field(ge=1, le=10)
    trip_on_hold: bool
    credit_depletion_auto_lock: bool
    min_battery_to_auto_lock: int | None = Field(ge=1, le=50)


class RentTimings(_Model):
    """Dashboard rent timings, all in seconds; 0 disables pause/lock timers."""

    trip_too_long_notifications: float = Field(ge=3600, le=604800)
    trip_too_long_notifications_frequency: int = Field(ge=900, le=604800)
    vehicle_stolen: int = Field(ge=43200, le=2592000)
    trip_auto_pause: int = Field(ge=0, le=604800)
    trip_max_pause: int = Field(ge=0, le=604800)
    trip_auto_lock: int = Field(ge=0, le=604800)


class VehicleSpeedSettings(_Model):
    """Network speed settings: the three speed-mode speeds and the low-battery slow-down."""

    default_low_speed: int = Field(ge=1, le=100)
    default_medium_speed: int = Field(ge=1, le=100)
    default_high_speed: int = Field(ge=1, le=100)
    min_battery_to_slow_down: int | None = Field(ge=0, le=100)
    battery_slow_down_speed: int | None = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> VehicleSpeedSettings:
        if not self.default_low_speed <= self.default_medium_speed <= self.default_high_speed:
            raise ValueError("need default_low_speed <= default_medium_speed <= default_high_speed")
        if (self.min_battery_to_slow_down is None) != (self.battery_slow_down_speed is None):
            raise ValueError("min_battery_to_slow_down and battery_slow_down_speed go together")
        return self


class VehicleSettings(_Model):
    """Per vehicle model settings: ``speed_mode`` 1 ECO, 2 NORMAL, 3 SPORT, or null (free)."""

    model_id: int = Field(ge=1)
    auto_light: bool
    speed_mode: Literal[1, 2, 3] | None


class Pricing(_Model):
    """A weekly pricing window (network local time, 0 = Sunday) used by the credit rule."""

    start_dow: int = Field(ge=0, le=6)
    start_hod: str
    end_dow: int = Field(ge=0, le=6)
    end_hod: str
    unlock_price: float = Field(ge=0)
    unlock_included_time: float = Field(ge=0)
    freefloat_lock_price: float = Field(default=0, ge=0)
    use_per_minute_price: float = Field(ge=0)
    on_hold_price: float = Field(ge=0)

    @field_validator("start_hod", "end_hod")
    @classmethod
    def _hod(cls, v: str) -> str:
        if not _HOD.match(v):
            raise ValueError("time of day must be HH:MM:SS (00:00:00..24:00:00)")
        return v


class Safety(_Model):
    """Gateway-side safety parameters (not dashboard fields): GPS trust, hysteresis, alerts."""

    max_fix_age_s: float = Field(default=30, gt=0, le=3600)
    max_accuracy_m: float = Field(default=100, gt=0, le=1000)
    min_buffer_m: float = Field(default=5, ge=0, le=200)
    dwell_s: float = Field(default=5, ge=0, le=600)
    walking_speed_kph: float = Field(default=5, gt=0, le=6)
    slow_speed_kph: int = Field(default=6, ge=1, le=25)
    alert_clear_after_s: float = Field(default=120, ge=0, le=86400)
    alert_update_interval_s: float = Field(default=60, ge=0, le=86400)
    alert_max_raises_per_hour: int = Field(default=6, ge=1, le=3600)


class DashboardBundle(_Model):
    """A whole dashboard-style rule bundle, as pushed by the backend or read from a file."""

    version: str = Field(min_length=1, max_length=100)
    network_id: int = Field(default=1, ge=1)
    timezone: str = "UTC"
    border: Border | None = None
    speed_zones: list[SpeedZone] = []
    virtual_parkings: list[VirtualParking] = []
    rent_settings: RentSettings | None = None
    rent_timings: RentTimings | None = None
    vehicle_speed_settings: VehicleSpeedSettings | None = None
    vehicle_settings: list[VehicleSettings] = []
    pricing: list[Pricing] = []
    safety: Safety = Safety()
    # Gateway-side, not a dashboard field: a trip may end only in a virtual parking.
    parking_required: bool = False
    gbfs: dict[str, Any] | None = None
