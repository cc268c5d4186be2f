"""The dashboard's list filters and sorts, as query parameters, and the store queries they make.

Names, ranges and enums are the dashboard's (fleet alerts, trips, users), so the backend sends
what it sends to the dashboard. Every filter a model declares is applied in SQL by the store;
the dashboard's filters this gateway has no data for are refused by name (``*_UNSUPPORTED``,
mounted on the routes with ``api.query.Unsupported``), never skipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from dockgate.api.paging import SortedPageQuery
from dockgate.api.params import (
    MAX_ID,
    AsciiNumber,
    Digits,
    IdList,
    day_end,
    day_start,
    items,
    network_ids,
    one_of_each,
    unix,
)
from dockgate.gateway.store import (
    ALERT_SEVERITIES,
    ALERT_TYPES,
    TRIP_STATES,
    AlertQuery,
    RiderQuery,
    TripQuery,
)
from dockgate.gateway.timezones import time_zone

AlertType = Literal[ALERT_TYPES]  # type: ignore[valid-type]
AlertSeverity = Literal[ALERT_SEVERITIES]  # type: ignore[valid-type]
RowId = Annotated[int | None, Digits, Field(None, ge=1, le=MAX_ID)]
Seconds = Annotated[int | None, Digits, Field(None, ge=0, le=10**10)]
Networks = Annotated[
    str | None,
    IdList,
    Field(None, max_length=500, description="Network ids, e.g. `1,5,7` (none: every network)"),
]
Contains = Annotated[str | None, Field(None, min_length=1, max_length=50)]

TRIPS_UNSUPPORTED = {
    "model_name": "vehicle models are not recorded (a vehicle has a `vehicle_type`)",
    "demo": "this gateway has no demonstration trips",
    "distance_min": "trip distances are not recorded",
    "distance_max": "trip distances are not recorded",
}
USERS_UNSUPPORTED = {
    "lastname": "a rider has one `name`, not a first and a last name",
    "firstname": "a rider has one `name`, not a first and a last name",
    "register_at_min": "registration dates are not kept",
    "register_at_max": "registration dates are not kept",
    "organization_name": "organizations are not kept",
    "label_name": "labels are not kept",
    "phone_number": "phone numbers are not kept",
    "currency": "credit is kept in cents of the network's currency, never converted",
}


def zone(name: str | None) -> tzinfo:
    """The IANA time zone ``name`` (UTC for ``None``); ``ValueError`` if there is none."""
    if name is None:
        return UTC
    found = time_zone(name)
    if found is None:
        raise ValueError("an IANA time zone, e.g. Europe/Paris")
    return found


def _checked_zone(name: str | None) -> str | None:
    zone(name)
    return name


Timezone = Annotated[
    str | None,
    AfterValidator(_checked_zone),
    Field(None, max_length=64, description="IANA zone of date-times given without an offset"),
]


# --- fleet alerts ------------------------------------------------------------------------------
class _AlertFilters(SortedPageQuery):
    """Filters shared by current alerts and their history."""

    networks: Networks
    alert_type: AlertType | None = None
    alert_severity: AlertSeverity | None = None
    creation_date_min: date | None = Field(None, description="First UTC day")
    creation_date_max: date | None = Field(None, description="Last UTC day")
    user_id: RowId = Field(None, description="The rider on the vehicle when it was raised")
    email: Contains = Field(None, description="Part of that rider's email")
    cluster_name: Contains = Field(None, description="Part of the alert's cluster's name")
    cluster_id: RowId
    vehicle_id: RowId
    serial_number: str | None = Field(None, min_length=6, max_length=10)

    def query(self, sort_by: str | None, *, resolved: bool) -> AlertQuery:
        return AlertQuery(
            network_ids(self.networks),
            resolved=resolved,
            alert_type=self.alert_type,
            alert_severity=self.alert_severity,
            cluster_id=self.cluster_id,
            vehicle_id=self.vehicle_id,
            creation_date_min=day_start(self.creation_date_min),
            creation_date_max=day_end(self.creation_date_max),
            sort_by=sort_by,
            sort_dir=self.sort_dir,
            last_primary_key=self.last_primary_key,
            primary_key_dir=self.primary_key_dir,
            page_size=self.page_size,
            user_id=self.user_id,
            email=self.email,
            cluster_name=self.cluster_name,
            serial_number=self.serial_number,
        )


class CurrentAlertFilters(_AlertFilters):
    """The filters of open alerts (none is resolved, so no resolution filter or sort)."""

    sort_by: Literal["creation_date", "alert_severity"] | None = None

    def alert_query(self) -> AlertQuery:
        return self.query(self.sort_by, resolved=False)


class HistoryFilters(_AlertFilters):
    """The filters of resolved alerts."""

    sort_by: Literal["creation_date", "alert_severity", "resolved_at"] | None = None
    resolved_at_min: date | None = Field(None, description="First UTC day")
    resolved_at_max: date | None = Field(None, description="Last UTC day")

    def alert_query(self) -> AlertQuery:
        return replace(
            self.query(self.sort_by, resolved=True),
            resolved_at_min=day_start(self.resolved_at_min),
            resolved_at_max=day_end(self.resolved_at_max),
        )


# --- trips --------------------------------------------------------------------------------------
class TripFilters(SortedPageQuery):
    """The dashboard's trip filters (dates without an offset are UTC)."""

    networks: Networks
    sort_by: Literal["start_date", "end_date", "duration"] | None = None
    state: Annotated[str | None, AfterValidator(one_of_each(TRIP_STATES))] = Field(
        None, max_length=100, description="e.g. `running,on-hold`"
    )
    start_date_min: datetime | None = None
    start_date_max: datetime | None = None
    end_date_min: datetime | None = None
    end_date_max: datetime | None = None
    trip_id_min: RowId
    trip_id_max: RowId
    serial_number: str | None = Field(None, min_length=1, max_length=10)
    email: str | None = Field(None, min_length=1, max_length=254, description="A part of it")
    user_id: RowId
    cluster_start_name: Contains = Field(None, description="Part of the start cluster's name")
    cluster_start_id: RowId
    cluster_end_name: Contains = Field(None, description="Part of the end cluster's name")
    cluster_end_id: RowId
    duration_min: Seconds
    duration_max: Seconds

    def trip_query(self) -> TripQuery:
        return TripQuery(
            network_ids=network_ids(self.networks),
            states=items(self.state),
            start_date_min=unix(self.start_date_min),
            start_date_max=unix(self.start_date_max),
            end_date_min=unix(self.end_date_min),
            end_date_max=unix(self.end_date_max),
            trip_id_min=self.trip_id_min,
            trip_id_max=self.trip_id_max,
            serial_number=self.serial_number,
            email=self.email,
            user_id=self.user_id,
            cluster_start_id=self.cluster_start_id,
            cluster_start_name=self.cluster_start_name,
            cluster_end_id=self.cluster_end_id,
            cluster_end_name=self.cluster_end_name,
            duration_min=self.duration_min,
            duration_max=self.duration_max,
            sort_by=self.sort_by,
            keyset=self.keyset(),
        )


# --- users (riders) -----------------------------------------------------------------------------
class UserFilters(SortedPageQuery):
    """The dashboard's user filters over riders (what this gateway keeps of them)."""

    networks: Networks
    without_network: bool | None = Field(None, description="Include riders who never rode")
    sort_by: Literal["last_activity", "trip_count"] | None = None
    user_id_min: RowId
    user_id_max: RowId
    email: str | None = Field(None, min_length=1, max_length=254, description="A part of it")
    blocked: bool | None = None
    last_activity_min: datetime | None = Field(None, description="Last trip start or end")
    last_activity_max: datetime | None = None
    trip_count_min: Annotated[float | None, AsciiNumber] = Field(None, ge=0, le=10**9)
    trip_count_max: Annotated[float | None, AsciiNumber] = Field(None, ge=0, le=10**9)
    timezone: Timezone

    def rider_query(self) -> RiderQuery:
        tz = zone(self.timezone)
        return RiderQuery(
            network_ids=network_ids(self.networks),
            without_network=self.without_network,
            user_id_min=self.user_id_min,
            user_id_max=self.user_id_max,
            email=self.email,
            blocked=self.blocked,
            last_activity_min=unix(self.last_activity_min, tz),
            last_activity_max=unix(self.last_activity_max, tz),
            trip_count_min=self.trip_count_min,
            trip_count_max=self.trip_count_max,
            sort_by=self.sort_by,
            keyset=self.keyset(),
        )
