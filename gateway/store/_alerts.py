"""Fleet alerts (the dashboard's), station outages and the stations' energy readings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dockgate.gateway.protocol.enums import AlertSeverity, AlertType
from dockgate.gateway.store._db import Database, StoreError
from dockgate.gateway.store._rows import Alert, EnergyUse, Outage, columns
from dockgate.gateway.store._sql import every, fetch_one, last_id, marks, must, require

ALERT_TYPES = tuple(t.value for t in AlertType)  # the dashboard's enums, one home
ALERT_SEVERITIES = tuple(s.value for s in AlertSeverity)
ALERT_SORTS = ("creation_date", "alert_severity", "resolved_at")
_ALERT = f"SELECT {columns(Alert)} FROM fleet_alerts"
#: ``AlertQuery`` filters: (attribute, column, operator).
_FILTERS = (
    ("alert_type", "alert_type", "="),
    ("alert_severity", "alert_severity", "="),
    ("cluster_id", "cluster_id", "="),
    ("vehicle_id", "vehicle_id", "="),
    ("creation_date_min", "creation_date", ">="),
    ("creation_date_max", "creation_date", "<"),
    ("resolved_at_min", "resolved_at", ">="),
    ("resolved_at_max", "resolved_at", "<"),
)


def _alert(*row: Any) -> Alert:
    """An alert row with its ``details`` JSON parsed."""
    values = list(row)
    values[8] = json.loads(values[8])
    return Alert(*values)


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
    ``network_ids`` means every network.
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
    sort_by: str = "creation_date"
    sort_dir: str = "DESC"  # or ASC
    last_primary_key: int | None = None
    primary_key_dir: str = "DESC"  # or ASC
    page_size: int = 20

    def sql(self) -> tuple[str, list[Any]]:
        """The SELECT and its arguments."""
        ids = list(self.network_ids)
        where = [f"network_id IN ({marks(len(ids))})" if ids else "1=1"]
        args: list[Any] = list(ids)
        where.append("resolved_at IS NOT NULL" if self.resolved else "resolved_at IS NULL")
        for name, column, op in _FILTERS:
            value = getattr(self, name)
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        pk_dir = "ASC" if self.primary_key_dir.upper() == "ASC" else "DESC"
        if self.last_primary_key is not None:
            where.append("id > ?" if pk_dir == "ASC" else "id < ?")
            args.append(self.last_primary_key)
        if self.sort_by not in ALERT_SORTS:
            raise StoreError(f"cannot sort by {self.sort_by!r}")
        direction = "ASC" if self.sort_dir.upper() == "ASC" else "DESC"
        sql = (
            f"{_ALERT} WHERE {' AND '.join(where)}"
            f" ORDER BY {self.sort_by} {direction}, id {pk_dir} LIMIT ?"
        )
        return sql, [*args, self.page_size]


class Alerts:
    """Raise (deduplicated while open), list, read and resolve fleet alerts."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
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
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
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
        """Current or past alerts with the dashboard's filters (see ``AlertQuery``)."""
        sql, args = query.sql()
        return every(self.db, _alert, sql, args)

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

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
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
                "INSERT INTO station_outages(station_id, started_at, reason) VALUES (?,?,?)",
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


class Energy:
    """Stations' energy readings (Wh per reading, one per station and time)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, station_id: int, ts: float, energy_wh: float) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO energy_readings(station_id, ts, energy_wh) VALUES (?,?,?)",
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
