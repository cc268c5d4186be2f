"""GBFS 3.0 feeds of this site, built from the state store and the active bundle.

Vehicles on a trip are not listed, and a vehicle's public ``vehicle_id`` is the store's
``gbfs_id``, drawn afresh at every trip start and end so that trips cannot be linked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from dockgate.gateway.store import Store

GBFS_VERSION = "3.0"
FEEDS = (
    "system_information",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
)


class GbfsSettings(BaseModel):
    """What the public feeds say about the system."""

    system_id: str = "dockgate"
    name: str = "dockgate site"
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    feed_contact_email: str = "operator@example.org"
    timezone: str = "Etc/UTC"
    opening_hours: str = "24/7"
    ttl: int = Field(default=0, ge=0)
    base_url: str = "http://127.0.0.1:8080/gbfs"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GbfsFeeds:
    """Builds each feed on request (the data changes with every dock and undock)."""

    def __init__(self, store: Store, settings: GbfsSettings) -> None:
        self.store = store
        self.settings = settings

    def _wrap(self, data: dict[str, Any], last_updated: float | None = None) -> dict[str, Any]:
        return {
            "last_updated": _rfc3339(last_updated or self.store.clock()),
            "ttl": self.settings.ttl,
            "version": GBFS_VERSION,
            "data": data,
        }

    def _text(self, text: str) -> list[dict[str, str]]:
        return [{"text": text, "language": self.settings.language}]

    def feed(self, name: str) -> dict[str, Any]:
        builder = {
            "gbfs": self.gbfs,
            "system_information": self.system_information,
            "station_information": self.station_information,
            "station_status": self.station_status,
            "vehicle_status": self.vehicle_status,
            "geofencing_zones": self.geofencing_zones,
        }.get(name)
        if builder is None:
            raise KeyError(name)
        return builder()

    def gbfs(self) -> dict[str, Any]:
        base = self.settings.base_url.rstrip("/")
        feeds = [{"name": "gbfs", "url": f"{base}/gbfs.json"}]
        feeds += [{"name": n, "url": f"{base}/{n}.json"} for n in FEEDS]
        return self._wrap({"feeds": feeds})

    def system_information(self) -> dict[str, Any]:
        s = self.settings
        return self._wrap(
            {
                "system_id": s.system_id,
                "languages": [s.language],
                "name": self._text(s.name),
                "opening_hours": s.opening_hours,
                "feed_contact_email": s.feed_contact_email,
                "timezone": s.timezone,
            }
        )

    def station_information(self) -> dict[str, Any]:
        stations = []
        for st in self.store.topology.stations():
            capacity = len(self.store.topology.spots(st.id))
            stations.append(
                {
                    "station_id": str(st.id),
                    "name": self._text(st.name),
                    "lat": st.lat,
                    "lon": st.lon,
                    "is_virtual_station": False,
                    "capacity": capacity,
                }
            )
        return self._wrap({"stations": stations})

    def station_status(self) -> dict[str, Any]:
        stations = []
        for st in self.store.topology.stations():
            spots = self.store.topology.spots(st.id)
            docked = [s.vehicle_id for s in spots if s.vehicle_id is not None]
            available = 0
            for vehicle_id in docked:
                vehicle = self.store.vehicles.get(vehicle_id)
                if vehicle.status == "available" and vehicle.trip_id is None:
                    available += 1
            online = bool(st.is_online)
            stations.append(
                {
                    "station_id": str(st.id),
                    "num_vehicles_available": available,
                    "num_vehicles_disabled": len(docked) - available,
                    "num_docks_available": len(spots) - len(docked),
                    "is_installed": True,
                    "is_renting": online and available > 0,
                    "is_returning": online,
                    "last_reported": _rfc3339(st.updated_at),
                }
            )
        return self._wrap({"stations": stations})

    def vehicle_status(self) -> dict[str, Any]:
        vehicles = []
        spot_station = {s.id: s.station_id for s in self.store.topology.spots()}
        for v in self.store.vehicles.all():
            if v.trip_id is not None or v.status == "in_use":
                continue
            item: dict[str, Any] = {
                "vehicle_id": v.gbfs_id,
                "is_reserved": v.status == "reserved",
                "is_disabled": v.status not in {"available", "reserved"},
                "last_reported": _rfc3339(v.updated_at),
            }
            if v.battery is not None:
                item["current_fuel_percent"] = max(0.0, min(1.0, v.battery / 100))
            if v.spot_id is not None and v.spot_id in spot_station:
                item["station_id"] = str(spot_station[v.spot_id])
            elif v.lat is not None and v.lon is not None:
                item["lat"], item["lon"] = v.lat, v.lon
            else:
                continue  # neither docked nor located: nothing true to publish
            vehicles.append(item)
        return self._wrap({"vehicles": vehicles})

    def geofencing_zones(self) -> dict[str, Any]:
        """The bundle's GBFS zones if it has them, else an empty collection."""
        bundle = self.store.bundles.current()
        body = bundle.body if bundle else {}
        zones = body.get("geofencing_zones") if isinstance(body, dict) else None
        if not (isinstance(zones, dict) and zones.get("type") == "FeatureCollection"):
            zones = {"type": "FeatureCollection", "features": []}
        rules = body.get("global_rules") if isinstance(body, dict) else None
        if not isinstance(rules, list):
            rules = [
                {"ride_start_allowed": True, "ride_end_allowed": True, "ride_through_allowed": True}
            ]
        return self._wrap({"geofencing_zones": zones, "global_rules": rules})
