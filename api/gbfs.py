"""GBFS 3.0 feeds of this site, built on request from the store and the running rule bundle.

The rule bundle is the one the engine enforces (``GbfsSources.bundle``; by default the last
one pushed to the store), so ``geofencing_zones.json``, the time zone and the permitted speed
say what the gateway really does. Each document's ``ttl`` is how long its data will stay as it
is: 0 for the near-realtime feeds, the operator's ``ttl`` for the others, and never past the
next scheduled change of the geofencing (a timed zone starting or ending).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dockgate.api.gbfs_fleet import (
    FleetView,
    VehicleTypeSettings,
    default_vehicle_types,
    published_types,
    station_information_data,
    station_status_data,
    vehicle_status_data,
    vehicle_types_data,
)
from dockgate.gateway.rules import BundleError, RuleBundle, load_bundle
from dockgate.gateway.rules.publish import (
    Geofencing,
    OccupancyReader,
    bundle_timezone,
    geofencing,
    max_permitted_speed,
    rfc3339,
    ride_start_allowed,
)
from dockgate.gateway.store import Station, Store
from dockgate.gateway.timezones import time_zone

__all__ = ["FEEDS", "GBFS_VERSION", "FeedName", "GbfsFeeds", "GbfsSettings", "GbfsSources"]

GBFS_VERSION = "3.0"
FeedName = Literal[
    "gbfs",
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
]
FEEDS: tuple[FeedName, ...] = (
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "vehicle_status",
    "geofencing_zones",
)
REALTIME = frozenset({"station_status", "vehicle_status"})
DEFAULT_TIMEZONE = "Etc/UTC"


class GbfsSettings(BaseModel):
    """What the public feeds say about the system (the daemon's ``[gbfs]`` table).

    ``public_url``: where the feeds are published (``https://example.org/gbfs``), for the
    links in ``gbfs.json``; unset, each request's own address is used. ``timezone``: used when
    the running bundle names none. ``ttl``: seconds a consumer may keep the slowly changing
    feeds (the operator's promise about bundle pushes and restarts; 0: always refresh).
    """

    model_config = ConfigDict(extra="forbid")

    system_id: str = Field(default="dockgate", min_length=1, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=80)
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    feed_contact_email: str = Field(default="operator@example.org", pattern=r"^[^@\s]+@[^@\s]+$")
    timezone: str | None = None
    opening_hours: str = Field(default="24/7", min_length=1)
    ttl: int = Field(default=0, ge=0, le=86_400)
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    vehicle_types: list[VehicleTypeSettings] = Field(default_factory=default_vehicle_types)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and time_zone(value) is None:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


BundleSource = Callable[[], RuleBundle | None]


@dataclass(frozen=True, slots=True)
class GbfsSources:
    """Where the feeds read the rules: the running bundle, and how full each virtual parking
    is (``occupancy(parking_id)``, None: unknown). The daemon passes its engine's."""

    bundle: BundleSource
    occupancy: OccupancyReader | None = None


class StoredBundle:
    """The last bundle pushed to the store, loaded once per version (an API without an
    engine enforces nothing else); a bundle that does not load is no bundle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._version: int | None = None
        self._bundle: RuleBundle | None = None

    def __call__(self) -> RuleBundle | None:
        saved = self.store.bundles.current()
        if saved is None:
            return None
        if saved.version != self._version:
            self._version = saved.version
            try:
                self._bundle = load_bundle(saved.body)
            except (BundleError, TypeError, ValueError):
                self._bundle = None
        return self._bundle


class FenceCache:
    """The last geofencing worked out, kept while nothing it depends on has changed (the
    bundle, which timed zones are active, the parkings' counts, the vehicle types): cutting a
    large bundle into pieces is the costly part of the feeds."""

    def __init__(self, language: str, occupancy: OccupancyReader | None) -> None:
        self.language = language
        self.occupancy = occupancy
        self._bundle: RuleBundle | None = None
        self._key: tuple[object, ...] = ()
        self._fence: Geofencing | None = None

    def get(self, bundle: RuleBundle, now: float, types: list[str]) -> Geofencing:
        gb = bundle.gbfs
        active = tuple(z.active(now) for z in gb.zones) if gb is not None else ()
        counts: tuple[int | None, ...] = ()
        if self.occupancy is not None:
            counts = tuple(self.occupancy(p.id) for p in bundle.config.virtual_parkings)
        key = (active, counts, tuple(types))
        fence = self._fence
        if (
            fence is None
            or bundle is not self._bundle
            or key != self._key
            or (fence.changes_at is not None and fence.changes_at <= now)
        ):
            fence = geofencing(
                bundle, now, language=self.language, vehicle_types=types, occupancy=self.occupancy
            )
            self._bundle, self._key, self._fence = bundle, key, fence
        return fence


class GbfsFeeds:
    """Builds each feed on request (the data changes with every dock, undock and bundle)."""

    def __init__(
        self, store: Store, settings: GbfsSettings, sources: GbfsSources | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.sources = sources or GbfsSources(StoredBundle(store))
        self._fences = FenceCache(settings.language, self.sources.occupancy)

    def feed(self, name: FeedName, feeds_url: str) -> dict[str, Any]:
        """The document ``name``; ``feeds_url`` is where this request found the feeds (used
        for ``gbfs.json``'s links when no ``public_url`` is configured)."""
        now = self.store.clock()
        bundle = self.sources.bundle()
        if name == "gbfs":
            return self._wrap(now, self.settings.ttl, self._discovery(feeds_url))
        if name == "geofencing_zones":
            return self._geofencing(now, bundle)
        if name == "system_information":
            return self._wrap(now, self.settings.ttl, self._system_information(bundle))
        view = FleetView(self.store)
        types = published_types(self.settings.vehicle_types, view.vehicles)
        ttl = 0 if name in REALTIME else self.settings.ttl
        data = self._fleet_data(name, view, types, bundle, now)
        return self._wrap(now, ttl, data)

    def _wrap(self, now: float, ttl: int, data: dict[str, Any]) -> dict[str, Any]:
        return {"last_updated": rfc3339(now), "ttl": ttl, "version": GBFS_VERSION, "data": data}

    def _text(self, text: str) -> list[dict[str, str]]:
        return [{"text": text, "language": self.settings.language}]

    def _discovery(self, feeds_url: str) -> dict[str, Any]:
        base = (self.settings.public_url or feeds_url).rstrip("/")
        names: tuple[FeedName, ...] = ("gbfs", *FEEDS)
        return {"feeds": [{"name": n, "url": f"{base}/{n}.json"} for n in names]}

    def _system_information(self, bundle: RuleBundle | None) -> dict[str, Any]:
        s = self.settings
        zone = (bundle_timezone(bundle) if bundle is not None else None) or s.timezone
        return {
            "system_id": s.system_id,
            "languages": [s.language],
            "name": self._text(s.name or "dockgate site"),
            "opening_hours": s.opening_hours,
            "feed_contact_email": s.feed_contact_email,
            "timezone": zone or DEFAULT_TIMEZONE,
        }

    def _fleet_data(
        self,
        name: FeedName,
        view: FleetView,
        types: dict[str, VehicleTypeSettings],
        bundle: RuleBundle | None,
        now: float,
    ) -> dict[str, Any]:
        language = self.settings.language
        if name == "vehicle_types":
            speed = max_permitted_speed(bundle) if bundle is not None else None
            return vehicle_types_data(types, speed, language)
        if name == "station_information":
            return station_information_data(view, language)
        if name == "station_status":
            return station_status_data(view, types, self._renting(bundle, types, now))
        return vehicle_status_data(view, types)

    @staticmethod
    def _renting(
        bundle: RuleBundle | None, types: dict[str, VehicleTypeSettings], now: float
    ) -> Callable[[Station], bool]:
        """May a ride of some published vehicle type start where a station stands?"""

        def renting(st: Station) -> bool:
            if bundle is None:
                return True
            return any(ride_start_allowed(bundle, st.lat, st.lon, t, now) for t in types)

        return renting

    def _geofencing(self, now: float, bundle: RuleBundle | None) -> dict[str, Any]:
        """What the engine enforces; with no bundle it enforces nothing: no zone, and global
        rules that allow everything."""
        if bundle is None:
            allowed = {k: True for k in ("ride_start_allowed", "ride_end_allowed")}
            rules = [{**allowed, "ride_through_allowed": True}]
            data = {"geofencing_zones": {"type": "FeatureCollection", "features": []}}
            return self._wrap(now, self.settings.ttl, {**data, "global_rules": rules})
        types = published_types(self.settings.vehicle_types, self.store.vehicles.all())
        fence = self._fences.get(bundle, now, list(types))
        ttl = 0 if fence.live else self.settings.ttl
        if fence.changes_at is not None:
            ttl = min(ttl, max(0, math.floor(fence.changes_at - now)))
        return self._wrap(now, ttl, fence.data)
