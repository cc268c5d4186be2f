"""Fleet alerts (the dashboard's), station outages and the stations' energy readings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dockgate.gateway.protocol.enums import AlertSeverity, AlertType
from dockgate.gateway.store._db import BaseDatabase, StoreError
from dockgate.gateway.store._keyset import (
    LAST,
    Filters,
    Keyset,
    Listing,
    Page,
    Sort,
    ilike,
    like,
)
from dockgate.gateway.store._rows import Alert, EnergyUse, Outage, columns
from dockgate.gateway.store._sql import every, fetch_one, last_id, must, require

ALERT_TYPES = tuple(t.value for t in AlertType)  # the dashboard's enums, one home
ALERT_SEVERITIES = tuple(s.value for s in AlertSeverity)
_SEVERITY_RANK = " ".join(f"WHEN '{s}' THEN {rank}" for rank, s in enumerate(ALERT_SEVERITIES))
#: ``AlertQuery.sort_by``: the SQL each sort key orders by (severity by rank, not by name).
_SORTS = {
    "creation_date": "a.creation_date",
    "alert_severity": f"CASE a.alert_severity {_SEVERITY_RANK} END",
    "resolved_at": f"COALESCE(a.resolved_at, {LAST})",
}
ALERT_SORTS = tuple(_SORTS)
_ALERT = f"SELECT {columns(Alert)} FROM fleet_alerts"
#: The rider on the alert's vehicle when it was raised (the dashboard's "user who made the
#: transaction"): a trip of that vehicle open at the alert's creation date.
_RIDER_AT_ALERT = (
    "EXISTS (SELECT 1 FROM trips t JOIN riders r ON r.id = t.rider_id"
    " WHERE t.vehicle_id = a.vehicle_id AND t.started_at <= a.creation_date"
    " AND (t.ended_at IS NULL OR t.ended_at >= a.creation_date) AND {})"
)


def _alert(*row: Any) -> Alert:
    """An alert row with its ``details`` JSON parsed."""
    values = list(row)
    values[8] = json.loads(values[8])
    return Alert(*values)


_ALERTS = Listing(_alert, columns(Alert, "a."), "fleet_alerts a", "a.id")
_OUTAGES = Listing(
    Outage,
    columns(Outage, "o."),
    "station_outages o JOIN stations s ON o.station_id = s.id",
    "o.id",
)


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An alert to raise: what happened, where, and a ``dedup_key`` that keeps one open."""

    network_id: int
    alert_type: str
    alert_severity: str
    cluster_id: int | None = None
    station_id: int | None = None
    spot_id: int | None = None
    vehicle_id: int | None = None
    details: dict[str, Any] | None = None
    dedup_key: str | None = None


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Current (``resolved=False``) or past alerts with the dashboard's filters and paging.

    Dates are Unix times (``*_min`` inclusive, ``*_max`` exclusive); an empty
    ``network_ids`` means every network. ``email`` and ``cluster_name`` match a part (any
    case); ``user_id`` and ``email`` name the rider on the alert's vehicle when it was raised;
    ``serial_number`` is the alert's vehicle's. ``sort_by`` None orders by id alone.
    """

    network_ids: Sequence[int] = ()
    resolved: bool = False
    alert_type: str | None = None
    alert_severity: str | None = None
    cluster_id: int | None = None
    vehicle_id: int | None = None
    creation_date_min: float | None = None
    creation_date_max: float | None = None
    resolved_at_min: float | None = None
    resolved_at_max: float | None = None
    sort_by: str | None = "creation_date"
    sort_dir: str = "DESC"  # or ASC
    last_primary_key: int | None = None
    primary_key_dir: str = "DESC"  # or ASC
    page_size: int = 20
    user_id: int | None = None
    email: str | None = None
    cluster_name: str | None = None
    serial_number: str | None = None

    def filters(self) -> Filters:
        """The WHERE clauses of this query (every page's, before the keyset's)."""
        f = Filters()
        f.one_of("a.network_id", list(self.network_ids))
        f.add("a.resolved_at IS NOT NULL" if self.resolved else "a.resolved_at IS NULL")
        f.compare("a.alert_type", "=", self.alert_type)
        f.compare("a.alert_severity", "=", self.alert_severity)
        f.compare("a.cluster_id", "=", self.cluster_id)
        f.compare("a.vehicle_id", "=", self.vehicle_id)
        f.compare("a.creation_date", ">=", self.creation_date_min)
        f.compare("a.creation_date", "<", self.creation_date_max)
        f.compare("a.resolved_at", ">=", self.resolved_at_min)
        f.compare("a.resolved_at", "<", self.resolved_at_max)
        if self.user_id is not None:
            f.add(_RIDER_AT_ALERT.format("r.id = ?"), self.user_id)
        if self.email is not None:
            f.add(_RIDER_AT_ALERT.format(ilike("r.email")), like(self.email))
        if self.cluster_name is not None:
            f.add(
                "EXISTS (SELECT 1 FROM clusters c WHERE c.id = a.cluster_id"
                f" AND {ilike('c.name')})",
                like(self.cluster_name),
            )
        if self.serial_number is not None:
            f.add(
                "EXISTS (SELECT 1 FROM vehicles v WHERE v.id = a.vehicle_id"
                " AND v.serial_number = ?)",
                self.serial_number,
            )
        return f

    def keyset(self) -> Keyset:
        return Keyset(self.page_size, self.last_primary_key, self.primary_key_dir, self.sort_dir)

    def sort(self) -> Sort | None:
        if self.sort_by is None:
            return None
        if self.sort_by not in _SORTS:
            raise StoreError(f"cannot sort by {self.sort_by!r}")
        return Sort(_SORTS[self.sort_by])


class Alerts:
    """Raise (deduplicated while open), list, read and resolve fleet alerts."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def raise_alert(self, alert: NewAlert) -> tuple[int, bool]:
        """Open an alert; with a ``dedup_key`` an open alert with the same key is reused.
        Returns (alert id, created)."""
        if alert.alert_type not in ALERT_TYPES:
            raise StoreError(f"unknown alert_type {alert.alert_type!r}")
        if alert.alert_severity not in ALERT_SEVERITIES:
            raise StoreError(f"unknown alert_severity {alert.alert_severity!r}")
        with self.db.transaction() as c:
            if alert.dedup_key is not None:
                row = fetch_one(
                    self.db,
                    "SELECT id FROM fleet_alerts WHERE dedup_key=? AND resolved_at IS NULL",
                    (alert.dedup_key,),
                )
                if row is not None:
                    return int(row["id"]), False
            cur = c.execute(
                "INSERT INTO fleet_alerts(network_id, alert_type, alert_severity, cluster_id,"
                " station_id, spot_id, vehicle_id, details, creation_date, dedup_key)"
                " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
                (
                    alert.network_id,
                    alert.alert_type,
                    alert.alert_severity,
                    alert.cluster_id,
                    alert.station_id,
                    alert.spot_id,
                    alert.vehicle_id,
                    json.dumps(alert.details or {}),
                    self.clock(),
                    alert.dedup_key,
                ),
            )
            return last_id(cur), True

    def query(self, query: AlertQuery) -> list[Alert]:
        """One page of current or past alerts with the dashboard's filters (``AlertQuery``)."""
        return _ALERTS.rows(self.db, query.filters(), query.keyset(), query.sort())

    def search(self, query: AlertQuery) -> Page[Alert]:
        """``query``'s page and how many alerts its filters match in all."""
        return _ALERTS.page(self.db, query.filters(), query.keyset(), query.sort())

    def get(self, id: int) -> Alert:
        row = fetch_one(self.db, f"{_ALERT} WHERE id=?", (id,))
        return _alert(*must(row, f"alert {id}"))

    def resolve(self, alert_ids: Iterable[int], resolved_by: str = "api") -> list[int]:
        """Resolve open alerts; returns the ids that were open and are now resolved."""
        done: list[int] = []
        with self.db.transaction() as c:
            now = self.clock()
            for alert_id in alert_ids:
                cur = c.execute(
                    "UPDATE fleet_alerts SET resolved_at=?, resolved_by=?"
                    " WHERE id=? AND resolved_at IS NULL",
                    (now, resolved_by, alert_id),
                )
                if cur.rowcount:
                    done.append(alert_id)
        return done


class Outages:
    """A station's outages (and its ``is_online`` flag, which follows them)."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def start(self, station_id: int, reason: str = "") -> int:
        """A station went offline; an open outage is reused rather than duplicated."""
        with self.db.transaction() as c:
            require(self.db, "stations", station_id, "station")
            row = fetch_one(
                self.db,
                "SELECT id FROM station_outages WHERE station_id=? AND ended_at IS NULL",
                (station_id,),
            )
            c.execute("UPDATE stations SET is_online=0 WHERE id=?", (station_id,))
            if row:
                return int(row["id"])
            cur = c.execute(
                "INSERT INTO station_outages(station_id, started_at, reason) VALUES (?,?,?)"
                " RETURNING id",
                (station_id, self.clock(), reason),
            )
            return last_id(cur)

    def end(self, station_id: int) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE station_outages SET ended_at=? WHERE station_id=? AND ended_at IS NULL",
                (self.clock(), station_id),
            )
            c.execute("UPDATE stations SET is_online=1 WHERE id=?", (station_id,))

    def of_cluster(self, cluster_id: int) -> list[Outage]:
        """The outages of the cluster's stations, oldest first."""
        require(self.db, "clusters", cluster_id, "cluster")
        return every(
            self.db,
            Outage,
            f"SELECT {columns(Outage, 'o.')} FROM station_outages o"
            " JOIN stations s ON o.station_id=s.id WHERE s.cluster_id=? ORDER BY o.id",
            (cluster_id,),
        )

    def page_of_cluster(self, cluster_id: int, keyset: Keyset) -> Page[Outage]:
        """A page of the outages of the cluster's stations, by id."""
        require(self.db, "clusters", cluster_id, "cluster")
        filters = Filters()
        filters.compare("s.cluster_id", "=", cluster_id)
        return _OUTAGES.page(self.db, filters, keyset)


class Energy:
    """Stations' energy readings (Wh per reading, one per station and time)."""

    def __init__(self, db: BaseDatabase) -> None:
        self.db = db

    def add(self, station_id: int, ts: float, energy_wh: float) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO energy_readings(station_id, ts, energy_wh) VALUES (?,?,?)"
                " ON CONFLICT(station_id, ts) DO UPDATE SET energy_wh = excluded.energy_wh",
                (station_id, ts, energy_wh),
            )

    def consumption(self, station_id: int, start: float, end: float) -> EnergyUse:
        """Energy used by a station between two times (sum of readings, Wh)."""
        require(self.db, "stations", station_id, "station")
        row = fetch_one(
            self.db,
            "SELECT count(*), COALESCE(sum(energy_wh), 0) FROM energy_readings"
            " WHERE station_id=? AND ts >= ? AND ts < ?",
            (station_id, start, end),
        )
        readings, energy_wh = must(row, f"station {station_id}")
        return EnergyUse(station_id, start, end, readings, energy_wh)
