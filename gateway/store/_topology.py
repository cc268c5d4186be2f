"""The fleet's fixed parts: networks, clusters, stations and their spots."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

from dockgate.gateway.store._db import BaseDatabase, StoreError
from dockgate.gateway.store._keyset import Filters, Keyset, Listing, Page
from dockgate.gateway.store._rows import (
    Cluster,
    ClusterSummary,
    DockedVehicle,
    Network,
    Spot,
    SpotWithVehicle,
    Station,
    StationWithSpots,
    columns,
)
from dockgate.gateway.store._sql import every, marks, must, one, require

_CLUSTER = f"SELECT {columns(Cluster)} FROM clusters"
_STATION = f"SELECT {columns(Station)} FROM stations"
_SPOT = f"SELECT {columns(Spot)} FROM spots"
_DOCKED = f"SELECT {columns(DockedVehicle)} FROM vehicles WHERE id=?"
_NETWORKS = Listing(Network, columns(Network, "n."), "networks n", "n.id")
_CLUSTERS = Listing(
    ClusterSummary,
    f"{columns(Cluster, 'c.')},"
    " (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
    " WHERE t.cluster_id=c.id) AS spot_count,"
    " (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
    " WHERE t.cluster_id=c.id AND s.vehicle_id IS NOT NULL) AS vehicle_count",
    "clusters c",
    "c.id",
)
_STATIONS = Listing(Station, columns(Station, "s."), "stations s", "s.id")


class Topology:
    """Upserts from the site's configuration and the reads the API and GBFS serve."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    # --- writing ---------------------------------------------------------------------------
    def upsert_network(self, id: int, name: str, timezone: str = "UTC") -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO networks(id, name, timezone, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, timezone=excluded.timezone,"
                " updated_at=excluded.updated_at",
                (id, name, timezone, self.clock()),
            )

    def upsert_cluster(
        self, id: int, network_id: int, name: str, lat: float, lon: float, location: str = ""
    ) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO clusters(id, network_id, name, location, lat, lon, updated_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " network_id=excluded.network_id, name=excluded.name,"
                " location=excluded.location, lat=excluded.lat, lon=excluded.lon,"
                " updated_at=excluded.updated_at",
                (id, network_id, name, location, lat, lon, self.clock()),
            )

    def upsert_station(
        self,
        id: int,
        cluster_id: int,
        name: str,
        lat: float,
        lon: float,
        *,
        badge_reader: bool = False,
        max_unlock_distance: int = 25,
    ) -> None:
        if not 25 <= max_unlock_distance <= 500:
            raise StoreError("max_unlock_distance must be within 25..500 metres")
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO stations(id, cluster_id, name, lat, lon, badge_reader,"
                " max_unlock_distance, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET cluster_id=excluded.cluster_id,"
                " name=excluded.name, lat=excluded.lat, lon=excluded.lon,"
                " badge_reader=excluded.badge_reader,"
                " max_unlock_distance=excluded.max_unlock_distance,"
                " updated_at=excluded.updated_at",
                (
                    id,
                    cluster_id,
                    name,
                    lat,
                    lon,
                    int(badge_reader),
                    max_unlock_distance,
                    self.clock(),
                ),
            )

    def upsert_spot(self, id: int, station_id: int, number: int) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO spots(id, station_id, number, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET station_id=excluded.station_id,"
                " number=excluded.number, updated_at=excluded.updated_at",
                (id, station_id, number, self.clock()),
            )

    # --- reading ---------------------------------------------------------------------------
    def networks(self) -> list[Network]:
        return every(self.db, Network, f"SELECT {columns(Network)} FROM networks ORDER BY id")

    def clusters(self, network_ids: Iterable[int] | None = None) -> list[ClusterSummary]:
        """Clusters (of these networks, or all) with their spot and docked-vehicle counts."""
        ids = list(network_ids or [])
        sql = (
            f"SELECT {columns(Cluster, 'c.')},"
            " (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
            " WHERE t.cluster_id=c.id) AS spot_count,"
            " (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
            " WHERE t.cluster_id=c.id AND s.vehicle_id IS NOT NULL) AS vehicle_count"
            " FROM clusters c"
        )
        if ids:
            sql += f" WHERE c.network_id IN ({marks(len(ids))})"
        return every(self.db, ClusterSummary, sql + " ORDER BY c.id", ids)

    def networks_page(self, keyset: Keyset) -> Page[Network]:
        """A page of networks, by id."""
        return _NETWORKS.page(self.db, Filters(), keyset)

    def clusters_page(self, network_ids: Iterable[int], keyset: Keyset) -> Page[ClusterSummary]:
        """A page of the clusters of these networks (empty: all), with their counts, by id."""
        filters = Filters()
        filters.one_of("c.network_id", list(network_ids))
        return _CLUSTERS.page(self.db, filters, keyset)

    def cluster(self, id: int) -> Cluster:
        return must(one(self.db, Cluster, f"{_CLUSTER} WHERE id=?", (id,)), f"cluster {id}")

    def station(self, id: int) -> Station:
        return must(one(self.db, Station, f"{_STATION} WHERE id=?", (id,)), f"station {id}")

    def stations(self) -> list[Station]:
        """Every station of every cluster."""
        return every(self.db, Station, f"{_STATION} ORDER BY id")

    def cluster_stations(self, cluster_id: int) -> list[StationWithSpots]:
        """The cluster's stations, each with its spots and the vehicle docked in each."""
        require(self.db, "clusters", cluster_id, "cluster")
        sql = f"{_STATION} WHERE cluster_id=? ORDER BY id"
        return [self._with_spots(s) for s in every(self.db, Station, sql, (cluster_id,))]

    def cluster_stations_page(self, cluster_id: int, keyset: Keyset) -> Page[StationWithSpots]:
        """A page of the cluster's stations, by id, each with its spots and docked vehicles."""
        require(self.db, "clusters", cluster_id, "cluster")
        filters = Filters()
        filters.compare("s.cluster_id", "=", cluster_id)
        page = _STATIONS.page(self.db, filters, keyset)
        return Page([self._with_spots(s) for s in page.rows], page.total)

    def _with_spots(self, station: Station) -> StationWithSpots:
        spots = tuple(
            SpotWithVehicle(**_values(spot), vehicle=self._docked(spot.vehicle_id))
            for spot in self.spots(station.id)
        )
        return StationWithSpots(**_values(station), spots=spots)

    def _docked(self, vehicle_id: int | None) -> DockedVehicle | None:
        return None if vehicle_id is None else one(self.db, DockedVehicle, _DOCKED, (vehicle_id,))

    def spots(self, station_id: int | None = None) -> list[Spot]:
        """The station's spots by number (every spot, by station and number, without one)."""
        if station_id is None:
            return every(self.db, Spot, f"{_SPOT} ORDER BY station_id, number")
        return every(self.db, Spot, f"{_SPOT} WHERE station_id=? ORDER BY number", (station_id,))

    def spot(self, id: int) -> Spot:
        return must(one(self.db, Spot, f"{_SPOT} WHERE id=?", (id,)), f"spot {id}")

    def spot_id(self, station_id: int, number: int) -> int | None:
        """The id of the station's spot with this number, or None."""
        sql = "SELECT id FROM spots WHERE station_id=? AND number=?"
        return one(self.db, int, sql, (station_id, number))


def _values(row: Station | Spot) -> dict[str, Any]:
    """A row's fields by name (shallow), to build the view that extends it."""
    return {f.name: getattr(row, f.name) for f in fields(row)}
