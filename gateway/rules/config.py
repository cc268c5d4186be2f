"""Dashboard-style rule configuration, with the fleet dashboard's names, units and ranges.

Shapes are lists of ``[longitude, latitude]`` pairs (GeoJSON order, WGS 84 degrees), as in
GBFS; the dashboard's "list of GPS coordinates" is read in that order. Times are seconds,
speeds km/h, battery levels percent, prices in the network's currency.

The dashboard's request bodies paste in unchanged, so a backend can build a bundle from what
it already sends: ``network_id`` wherever the dashboard names a network (it must be the
bundle's ``network_id``), create bodies without an id (the entry is named by its content:
``content_id``), update bodies with their own id names (``speed_zone_id``,
``virtual_parking_id``), and ``null`` wherever the dashboard allows it (null = not set).
Refusals name the field and say what it needs in plain words (``field_messages``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from dockgate.gateway.rules.field_messages import Loc, plain_error

Coord = Annotated[list[Annotated[float, Field(ge=-180, le=180)]], Field(min_length=2, max_length=2)]
Shape = Annotated[list[Coord], Field(min_length=3)]

_HOD = re.compile(r"^((([0-1]?\d|2[0-3]):[0-5]\d:[0-5]\d)|24:00:00)$")
# Keys that name an entry or its network rather than describe it (left out of content_id).
_NOT_CONTENT = frozenset({"id", "speed_zone_id", "virtual_parking_id", "network_id"})
_MAX_CONTENT_ID = 2**31 - 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_latitudes(shape: list[list[float]]) -> list[list[float]]:
    for i, (_, lat) in enumerate(shape):
        if not -90 <= lat <= 90:
            raise ValueError(f"point {i}: latitude {lat} outside -90..90 (shapes are [lon, lat])")
    return shape


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def content_id(entry: Mapping[str, Any]) -> int:
    """The id of an entry given without one (a dashboard create body): 1..2**31-1 from a
    SHA-256 of what it describes, its id and network names aside.

    Derived from the content, not the position, so it stays the same when the bundle is
    pushed again, reordered, or other entries come and go.
    """
    content = {k: v for k, v in entry.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % _MAX_CONTENT_ID + 1


class BorderSettings(_Model):
    """What happens when a vehicle leaves the network's border (dashboard: border settings)."""

    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool
    network_id: int | None = Field(default=None, ge=1)


NO_BORDER_ACTIONS = BorderSettings(
    trigger_alert=False,
    notify_user=False,
    reduce_vehicle_speed=False,
    play_vehicle_sound=False,
    lock_vehicle=False,
)


class Border(_Model):
    """The network border: ``shape`` (>= 3 points) and its ``settings`` (none: nothing
    happens when a vehicle leaves, as before the dashboard's settings are set)."""

    network_id: int | None = Field(default=None, ge=1)
    shape: Shape
    settings: BorderSettings = NO_BORDER_ACTIONS

    _lat = field_validator("shape")(_check_latitudes)


class _Entry(_Model):
    """A speed zone or a virtual parking, named by ``id``, by the id name of the dashboard's
    update body (``id_name``), or, given neither (a create body), by ``content_id``."""

    id_name: ClassVar[str]

    id: int = Field(ge=1)
    network_id: int | None = Field(default=None, ge=1)
    name: str | None = None
    shape: Shape

    _lat = field_validator("shape")(_check_latitudes)

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "id" in data:
            return data
        given = data.get(cls.id_name)
        return {**data, "id": given if _is_id(given) else content_id(data)}

    @model_validator(mode="after")
    def _one_name(self) -> Self:
        given = getattr(self, self.id_name)
        if given is not None and given != self.id:
            raise ValueError(f"id and {self.id_name} name two different entries")
        return self


class SpeedZone(_Entry):
    """A speed zone: a polygon where vehicles are limited to ``max_speed`` (6..25 km/h)."""

    id_name: ClassVar[str] = "speed_zone_id"

    speed_zone_id: int | None = Field(default=None, ge=1, exclude=True)
    max_speed: int = Field(ge=6, le=25)


class VirtualParking(_Entry):
    """A virtual parking: a polygon where ``capacity`` vehicles may be parked."""

    id_name: ClassVar[str] = "virtual_parking_id"

    virtual_parking_id: int | None = Field(default=None, ge=1, exclude=True)
    capacity: int = Field(ge=0)


class RentSettings(_Model):
    """Dashboard rent settings; the engine enforces the battery, hold and credit rules.

    ``min_battery_to_auto_lock`` null: no battery auto-lock."""

    default_vehicle_guarantee: float = Field(default=0, ge=0)
    trip_to_skip_pre_auth_guarantee: int = Field(default=-1, ge=-1)
    first_purchase_required: bool = False
    min_battery_to_rent: int = Field(ge=10, le=95)
    max_simultaneous_rented_vehicle: int = Field(ge=1, le=10)
    trip_on_hold: bool
    credit_depletion_auto_lock: bool
    min_battery_to_auto_lock: int | None = Field(ge=1, le=50)
    network_id: int | None = Field(default=None, ge=1)


class RentTimings(_Model):
    """Dashboard rent timings, all in seconds; 0 disables pause/lock timers."""

    trip_too_long_notifications: float = Field(ge=3600, le=604800)
    trip_too_long_notifications_frequency: int = Field(ge=900, le=604800)
    vehicle_stolen: int = Field(ge=43200, le=2592000)
    trip_auto_pause: int = Field(ge=0, le=604800)
    trip_max_pause: int = Field(ge=0, le=604800)
    trip_auto_lock: int = Field(ge=0, le=604800)
    network_id: int | None = Field(default=None, ge=1)


class VehicleSpeedSettings(_Model):
    """Network speed settings: the three speed-mode speeds and the low-battery slow-down.

    Each of ``min_battery_to_slow_down`` and ``battery_slow_down_speed`` may be null (as in
    the dashboard); the slow-down applies only when both are set.
    """

    default_low_speed: int = Field(ge=1, le=100)
    default_medium_speed: int = Field(ge=1, le=100)
    default_high_speed: int = Field(ge=1, le=100)
    min_battery_to_slow_down: int | None = Field(ge=0, le=100)
    battery_slow_down_speed: int | None = Field(ge=1, le=100)
    network_id: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> VehicleSpeedSettings:
        if not self.default_low_speed <= self.default_medium_speed <= self.default_high_speed:
            raise ValueError("need default_low_speed <= default_medium_speed <= default_high_speed")
        return self


class VehicleSettings(_Model):
    """Per vehicle model settings: ``speed_mode`` 1 ECO, 2 NORMAL, 3 SPORT, or null (free)."""

    model_id: int = Field(ge=1)
    auto_light: bool
    speed_mode: Literal[1, 2, 3] | None
    network_id: int | None = Field(default=None, ge=1)


class Pricing(_Model):
    """A weekly pricing window (network local time, 0 = Sunday) used by the credit rule and
    the trip cost; ``freefloat_lock_price`` is added to a trip that ends outside a station."""

    start_dow: int = Field(ge=0, le=6)
    start_hod: str
    end_dow: int = Field(ge=0, le=6)
    end_hod: str
    unlock_price: float = Field(ge=0)
    unlock_included_time: float = Field(ge=0)
    freefloat_lock_price: float = Field(default=0, ge=0)
    use_per_minute_price: float = Field(ge=0)
    on_hold_price: float = Field(ge=0)
    network_id: int | None = Field(default=None, ge=1)

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
    """A whole dashboard-style rule bundle, as pushed by the backend or read from a file.

    Every problem is reported at once, in plain words, with its field's path: the fields'
    own, then every ``network_id`` that is not the bundle's and every entry without an id
    that repeats another one.
    """

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

    @model_validator(mode="wrap")
    @classmethod
    def _plainly_checked(
        cls, data: Any, handler: ModelWrapValidatorHandler[DashboardBundle]
    ) -> DashboardBundle:
        across = network_problems(data) + repeated_entry_problems(data)
        try:
            bundle = handler(data)
        except ValidationError as exc:
            raise plain_error(cls, exc.errors(), across) from None
        if across:
            raise plain_error(cls, [], across)
        return bundle

    def applied_rent_timings(self) -> RentTimings | None:
        """The rent timings as the edge applies them: without trip holds
        (``rent_settings.trip_on_hold`` false) a still vehicle's trip is never paused, so
        ``trip_auto_pause`` is off."""
        rt, rs = self.rent_timings, self.rent_settings
        if rt is None or rs is None or rs.trip_on_hold or rt.trip_auto_pause == 0:
            return rt
        return rt.model_copy(update={"trip_auto_pause": 0})


_ONE = ("border", "rent_settings", "rent_timings", "vehicle_speed_settings")
_MANY = ("speed_zones", "virtual_parkings", "vehicle_settings", "pricing")
_ENTRIES: tuple[tuple[str, type[_Entry]], ...] = (
    ("speed_zones", SpeedZone),
    ("virtual_parkings", VirtualParking),
)


def _sections(data: dict[str, Any]) -> Iterator[tuple[Loc, dict[str, Any]]]:
    """Every part of a raw bundle that may name its network, with its location."""
    for key in _ONE:
        part = data.get(key)
        if isinstance(part, dict):
            yield (key,), part
    border = data.get("border")
    if isinstance(border, dict) and isinstance(border.get("settings"), dict):
        yield ("border", "settings"), border["settings"]
    for key in _MANY:
        items = data.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    yield (key, i), item


def network_problems(data: Any) -> list[tuple[Loc, str]]:
    """Each ``network_id`` in a raw bundle that is not the bundle's own (default 1)."""
    if not isinstance(data, dict):
        return []
    network = data.get("network_id", 1)
    if not _is_id(network):  # the field's own problem is reported by its check
        return []
    return [
        ((*loc, "network_id"), f"must be the bundle's network_id ({network})")
        for loc, part in _sections(data)
        if _is_id(part.get("network_id")) and part["network_id"] != network
    ]


def repeated_entry_problems(data: Any) -> list[tuple[Loc, str]]:
    """Entries without an id whose content repeats an earlier entry's: the same id twice."""
    if not isinstance(data, dict):
        return []
    out: list[tuple[Loc, str]] = []
    for key, model in _ENTRIES:
        items = data.get(key)
        seen: dict[int, int] = {}
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict) or "id" in item or model.id_name in item:
                continue
            first = seen.setdefault(content_id(item), i)
            if first != i:
                out.append(
                    (
                        (key, i),
                        f"repeats {key}.{first} (an entry without an id is named by its content)",
                    )
                )
    return out
