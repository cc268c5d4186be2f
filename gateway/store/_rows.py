"""The store's rows: one frozen dataclass per kind of row an aggregate returns.

Fields come in the table's column order and hold what SQLite holds (flags stay ``0``/``1``,
times are Unix seconds): a row serialises (``dataclasses.asdict``, orjson, FastAPI) to exactly
the JSON object the API has always served for it. Key material is never in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


def columns(row_type: type[Any], prefix: str = "") -> str:
    """The SELECT list of a row type, in field order (``prefix``: a table alias, ``"c."``)."""
    return ", ".join(prefix + f.name for f in fields(row_type))


# --- topology and vehicles ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Network:
    id: int
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class Cluster:
    id: int
    network_id: int
    name: str
    location: str | None
    lat: float
    lon: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ClusterSummary(Cluster):
    """A cluster with how many spots its stations have and how many hold a vehicle."""

    spot_count: int
    vehicle_count: int


@dataclass(frozen=True, slots=True)
class Station:
    id: int
    cluster_id: int
    name: str
    lat: float
    lon: float
    badge_reader: int
    max_unlock_distance: int
    is_online: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class Spot:
    id: int
    station_id: int
    number: int
    state: str  # free, occupied
    vehicle_id: int | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class DockedVehicle:
    """What a station view shows of the vehicle in a spot."""

    id: int
    serial_number: str
    vehicle_type: str
    battery: int | None
    status: str


@dataclass(frozen=True, slots=True)
class SpotWithVehicle(Spot):
    vehicle: DockedVehicle | None


@dataclass(frozen=True, slots=True)
class StationWithSpots(Station):
    """A station with its spots (by number), each with the vehicle docked in it."""

    spots: tuple[SpotWithVehicle, ...]


@dataclass(frozen=True, slots=True)
class Vehicle:
    id: int
    network_id: int
    serial_number: str
    vehicle_type: str
    lat: float | None
    lon: float | None
    battery: int | None
    status: str
    is_locked: int
    spot_id: int | None
    trip_id: int | None
    gbfs_id: str
    updated_at: float


# --- riders, products, records, tag keys ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rider:
    id: int
    email: str | None
    name: str | None
    blocked: int
    block_reason: str | None
    blocked_at: float | None
    credit: int  # cents
    first_purchase_done: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    kind: str
    rider_id: int | None
    paired_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Record:
    """One NFC chip or code of a product, without its key (``Records.key`` has it)."""

    id: int
    product_id: int
    technology: str
    token_encryption: str
    uid: str | None
    is_enabled: int
    scan_count: int
    last_scan_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class TagKeyInfo:
    """A tag key's name and version, never its bytes."""

    name: str
    version: int
    updated_at: float


# --- trips and commands -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Trip:
    id: int
    rider_id: int
    vehicle_id: int
    record_id: int | None
    start_station_id: int | None
    start_spot_id: int | None
    end_station_id: int | None
    end_spot_id: int | None
    status: str  # the dashboard's trip state: running, on-hold, finished, cancelled
    started_at: float
    ended_at: float | None
    paused_at: float | None  # the current hold's start
    cost: int | None
    updated_at: float
    held_seconds: float  # earlier holds, summed

    def hold_seconds(self, now: float) -> float:
        """Seconds spent on hold up to ``now`` (earlier holds included)."""
        current = 0.0
        if self.status == "on-hold" and self.paused_at is not None:
            current = max(0.0, now - self.paused_at)
        return float(self.held_seconds or 0.0) + current


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A command written down before it is sent; ``args`` and ``outcome`` are JSON text."""

    id: int
    idempotency_key: str
    target_kind: str  # vehicle, spot, station
    target_id: int
    command: str
    args: str
    state: str  # journaled, sent, acked, failed, timeout
    outcome: str | None
    trip_id: int | None
    created_at: float
    updated_at: float


# --- alerts, outages, energy ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    network_id: int
    alert_type: str
    alert_severity: str
    cluster_id: int | None
    station_id: int | None
    spot_id: int | None
    vehicle_id: int | None
    details: dict[str, Any]
    creation_date: float
    resolved_at: float | None
    resolved_by: str | None
    dedup_key: str | None


@dataclass(frozen=True, slots=True)
class Outage:
    id: int
    station_id: int
    started_at: float
    ended_at: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class EnergyUse:
    """Energy a station used between two times: the sum of its readings (Wh)."""

    station_id: int
    start: float
    end: float
    readings: int
    energy_wh: float


# --- bundles, idempotency, rentals ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bundle:
    version: int
    kind: str
    body: dict[str, Any]
    applied_at: float


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first answer given to an idempotency key, and the fingerprint of its request."""

    fingerprint: str
    response: str


@dataclass(frozen=True, slots=True)
class PendingRental:
    """A spot opened (or being opened) for a rider, as the flow keeps it on disk."""

    key: str
    command_id: int
    rider_id: int
    record_id: int | None
    vehicle_id: int
    serial: str
    station_id: int
    spot_id: int
    spot: int
    reader: str | None
    created_at: float
    state: str
