"""geofencing_zones.json says what the engine enforces: at many points over each site and around
it, the feed (read by a small resolver of our own, with the GBFS specification's precedence)
and the rules engine agree on where a ride may start, go and end, and how fast.

The engine trusts a fix only beyond its buffer (GPS accuracy, at least ``min_buffer_m``) from
a border or a parking: points nearer than that to any boundary are left out; everything else
must agree exactly.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from dockgate.api.gbfs import GbfsFeeds, GbfsSettings, GbfsSources
from dockgate.api.gbfs_fleet import VehicleTypeSettings
from dockgate.gateway.rules import RuleBundle, RulesEngine, Trip, VehicleState, load_bundle
from dockgate.gateway.rules.geometry import polygon_from_shape
from tests.support.stores import open_test_store

RULES = Path(__file__).resolve().parent.parent / "config" / "rules"
AT = time.time()
RIDING_KPH = 15.0


@dataclass(frozen=True)
class Verdict:
    """What applies at one place for one vehicle type (``max_speed`` only where it may ride)."""

    start: bool
    through: bool
    end: bool
    max_speed: int | None


# -- the feed, read by the specification ---------------------------------------------------
def applicable(rules: list[dict[str, Any]], vehicle_type: str) -> dict[str, Any] | None:
    """The earlier rule that applies to the vehicle type wins (GBFS 3.0 precedence)."""
    for r in rules:
        if "vehicle_type_ids" not in r or vehicle_type in r["vehicle_type_ids"]:
            return r
    return None


def feed_verdict(
    fence: dict[str, Any], lon: float, lat: float, vehicle_type: str, permitted: int | None
) -> Verdict:
    """The earlier polygon with a rule for the type beats later ones and the global rules;
    polygons outside their start/end are ignored. A vehicle type's ``max_permitted_speed``
    bounds every zone's speed."""
    chosen = None
    for feature in fence["geofencing_zones"]["features"]:
        props = feature["properties"]
        if "start" in props and _epoch(props["start"]) > AT:
            continue
        if "end" in props and _epoch(props["end"]) <= AT:
            continue
        if not _contains(feature["geometry"], lon, lat):
            continue
        chosen = applicable(props.get("rules", []), vehicle_type)
        if chosen is not None:
            break
    if chosen is None:
        chosen = applicable(fence["global_rules"], vehicle_type)
    assert chosen is not None, "global_rules must cover every vehicle type"
    limits = [v for v in (chosen.get("maximum_speed_kph"), permitted) if v is not None]
    through = chosen["ride_through_allowed"]
    return Verdict(
        chosen["ride_start_allowed"],
        through,
        chosen["ride_end_allowed"],
        min(limits) if limits and through else None,
    )


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_SHAPES: dict[str, shapely.MultiPolygon] = {}


def _shape(geometry: dict[str, Any]) -> shapely.Geometry:
    """A GeoJSON MultiPolygon's area (the union of its polygons, as GeoJSON means it)."""
    key = json.dumps(geometry["coordinates"])
    shape = _SHAPES.get(key)
    if shape is None:
        polys = [shapely.Polygon(p[0], p[1:]) for p in geometry["coordinates"]]
        shape = _SHAPES[key] = shapely.unary_union(polys)
    return shape


def _contains(geometry: dict[str, Any], lon: float, lat: float) -> bool:
    return bool(shapely.contains_xy(_shape(geometry), lon, lat))


# -- the engine ---------------------------------------------------------------------------
class EngineProbe:
    """Asks a real ``RulesEngine`` about a place, as the gateway asks it: may a ride start
    (``check_rent``), may it go on (no lock pending and no no-ride-through slow-down for a
    vehicle riding there, after the border's dwell), its speed limit, may it end
    (``check_end``). Each place is a new vehicle, so no memory of another place leaks in."""

    def __init__(self, bundle: RuleBundle, occupancy: Any = None) -> None:
        self.engine = RulesEngine(bundle, clock=lambda: AT, parking_occupancy=occupancy)
        self.dwell = bundle.safety.dwell_s
        self.n = 0

    def verdict(self, lat: float, lon: float, vehicle_type: str) -> Verdict:
        self.n += 1
        vid = f"probe-{self.n}"
        e = self.engine
        parked = VehicleState(vid, lat, lon, AT, 0.0, 0.0, 100, True, None, vehicle_type)
        start, _ = e.check_rent(parked, 0, AT)
        trip = Trip(f"trip-{self.n}", AT - 60)
        decisions = None
        for t in (AT, AT + self.dwell + 1):
            riding = VehicleState(vid, lat, lon, t, 0.0, RIDING_KPH, 100, False, trip, vehicle_type)
            decisions = e.evaluate(riding, t)
        assert decisions is not None and decisions.position_used
        through = not ({"pending_lock", "gbfs.ride_through_allowed"} & set(decisions.limits))
        at_rest = VehicleState(vid, lat, lon, AT, 0.0, 0.0, 100, True, trip, vehicle_type)
        end, _ = e.check_end(at_rest, AT)
        return Verdict(start, through, end, decisions.max_speed_kph if through else None)


# -- the places ----------------------------------------------------------------------------
def boundaries(bundle: RuleBundle) -> list[shapely.Geometry]:
    c = bundle.config
    shapes = [polygon_from_shape(z.shape) for z in (*c.speed_zones, *c.virtual_parkings)]
    if c.border is not None:
        shapes.append(polygon_from_shape(c.border.shape))
    if bundle.gbfs is not None:
        shapes += [z.shape for z in bundle.gbfs.zones]
    return [bundle.projection.geometry(s).boundary for s in shapes]


def places(
    bundle: RuleBundle, fence: dict[str, Any], per_side: int = 40
) -> list[tuple[float, float]]:
    """(lat, lon) of a grid over the site and a margin around it, a finer grid over each
    zone and a point well inside each published zone, less the points within the engine's
    buffer (and a metre) of any boundary."""
    bounds = shapely.bounds(boundaries(bundle))
    lon0, lat0, lon1, lat1 = _lonlat_bounds(bundle, bounds.min(axis=0)[:2], bounds.max(axis=0)[2:])
    dx, dy = (lon1 - lon0) * 0.2, (lat1 - lat0) * 0.2
    grids = [(lon0 - dx, lat0 - dy, lon1 + dx, lat1 + dy, per_side)]
    for x0, y0, x1, y1 in bounds.tolist():
        a0, b0, a1, b1 = _lonlat_bounds(bundle, (x0, y0), (x1, y1))
        grids.append((a0, b0, a1, b1, 12))
    lons, lats = [], []
    for a0, b0, a1, b1, n in grids:
        gx, gy = np.meshgrid(np.linspace(a0, a1, n), np.linspace(b0, b1, n))
        lons.append(gx.ravel())
        lats.append(gy.ravel())
    margin = bundle.safety.min_buffer_m + 1.0
    for feature in fence["geofencing_zones"]["features"]:
        zone = bundle.projection.geometry(_shape(feature["geometry"])).buffer(-margin - 0.5)
        if not zone.is_empty:
            inner = zone.point_on_surface()
            a, b, _, _ = _lonlat_bounds(bundle, (inner.x, inner.y), (inner.x, inner.y))
            lons.append(np.array([a]))
            lats.append(np.array([b]))
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    x, y = bundle.projection.xy_many(lat, lon)
    near = shapely.dwithin(shapely.union_all(boundaries(bundle)), shapely.points(x, y), margin)
    return list(zip(lat[~near].tolist(), lon[~near].tolist(), strict=True))


def _lonlat_bounds(bundle: RuleBundle, lo: Any, hi: Any) -> tuple[float, float, float, float]:
    p = bundle.projection
    return (
        lo[0] / p.kx + p.lon0,
        lo[1] / p.ky + p.lat0,
        hi[0] / p.kx + p.lon0,
        hi[1] / p.ky + p.lat0,
    )


# -- the bundles ---------------------------------------------------------------------------
def milano() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RULES / "demo-milano.json").read_text())
    return doc


def milano_mixed() -> dict[str, Any]:
    """Milan with every rule family at once: a border that only slows, parkings required
    (one never has room, one is full), and an embedded GBFS document with a no-ride-through
    zone for scooters and a slower zone for bikes."""
    doc = milano()
    doc["border"]["settings"] = {**doc["border"]["settings"], "lock_vehicle": False}
    doc["parking_required"] = True
    doc["virtual_parkings"][0]["capacity"] = 0
    gbfs = json.loads((RULES / "gbfs-3.0-geofencing_zones.json").read_text())
    bike_zone = copy.deepcopy(gbfs["data"]["geofencing_zones"]["features"][0])
    bike_zone["properties"]["name"] = [{"text": "Bike lane", "language": "en"}]
    bike_zone["properties"]["rules"] = [
        {
            "vehicle_type_ids": ["bike"],
            "ride_start_allowed": True,
            "ride_end_allowed": True,
            "ride_through_allowed": True,
            "maximum_speed_kph": 8,
        }
    ]
    ring = bike_zone["geometry"]["coordinates"][0][0]
    for point in ring:  # the same square, 600 m east: it overlaps speed zones and the border
        point[0] += 0.008
    gbfs["data"]["geofencing_zones"]["features"].insert(0, bike_zone)
    doc["gbfs"] = gbfs
    return doc


FULL_PARKING = 2


def full_second_parking(parking_id: int) -> int | None:
    return 10_000 if parking_id == FULL_PARKING else None


CASES = {
    "dashboard": (milano, None),
    "dashboard+gbfs, parking required, one full": (milano_mixed, full_second_parking),
    "gbfs 3.0": (lambda: RULES / "gbfs-3.0-geofencing_zones.json", None),
    "gbfs 2.3": (lambda: RULES / "gbfs-2.3-geofencing_zones.json", None),
}
TYPES = ["scooter", "bike"]


def published(
    bundle: RuleBundle, occupancy: Any, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, int | None]]:
    """The geofencing feed's data and each type's ``max_permitted_speed``, as served."""
    settings = GbfsSettings(
        vehicle_types=[
            VehicleTypeSettings(id="scooter"),
            VehicleTypeSettings(
                id="bike", form_factor="bicycle", propulsion_type="electric_assist"
            ),
        ]
    )
    store = open_test_store(tmp_path / "feeds.db", clock=lambda: AT)
    feeds = GbfsFeeds(store, settings, GbfsSources(lambda: bundle, occupancy))
    fence = feeds.feed("geofencing_zones", "http://gw/gbfs")["data"]
    types = feeds.feed("vehicle_types", "http://gw/gbfs")["data"]["vehicle_types"]
    return fence, {t["vehicle_type_id"]: t.get("max_permitted_speed") for t in types}


@pytest.mark.parametrize("case", list(CASES))
def test_feed_and_engine_agree_everywhere(case: str, tmp_path: Path) -> None:
    make, occupancy = CASES[case]
    bundle = load_bundle(make())
    fence, permitted = published(bundle, occupancy, tmp_path)
    probe = EngineProbe(bundle, occupancy)
    points = places(bundle, fence)
    assert len(points) > 1500
    seen: Counter[Verdict] = Counter()
    disagree = []
    for lat, lon in points:
        for vtype in TYPES:
            feed = feed_verdict(fence, lon, lat, vtype, permitted[vtype])
            engine = probe.verdict(lat, lon, vtype)
            seen[engine] += 1
            if feed != engine:
                disagree.append((lat, lon, vtype, feed, engine))
    assert disagree == [], f"{len(disagree)} disagreements, first: {disagree[:3]}"
    # the walk met every kind of place the bundle has, not just open road
    assert len(seen) >= 4, seen
    assert any(not v.start for v in seen) and any(v.start for v in seen)
    assert any(not v.through for v in seen) and any(v.max_speed is not None for v in seen)
    if case != "dashboard":  # the plain Milan bundle lets a trip end anywhere
        assert any(not v.end for v in seen)


def test_every_published_zone_was_walked_through(tmp_path: Path) -> None:
    """Each feature of the translated feed contains some tested point (no zone unchecked)."""
    bundle = load_bundle(milano_mixed())
    fence, _ = published(bundle, full_second_parking, tmp_path)
    points = places(bundle, fence)
    for feature in fence["geofencing_zones"]["features"]:
        inside = [p for p in points if _contains(feature["geometry"], p[1], p[0])]
        assert inside, feature["properties"]["name"]


def test_translated_zones_are_disjoint_and_right_handed(tmp_path: Path) -> None:
    bundle = load_bundle(milano_mixed())
    fence, _ = published(bundle, None, tmp_path)
    shapes = []
    for feature in fence["geofencing_zones"]["features"]:
        for poly in feature["geometry"]["coordinates"]:
            exterior = shapely.LinearRing(poly[0])
            assert exterior.is_ccw, feature["properties"]["name"]  # RFC 7946
            assert all(not shapely.LinearRing(hole).is_ccw for hole in poly[1:])
        shapes.append(
            shapely.unary_union(
                [shapely.Polygon(p[0], p[1:]) for p in feature["geometry"]["coordinates"]]
            )
        )
    total = sum(s.area for s in shapes)
    assert math.isclose(shapely.union_all(shapes).area, total, rel_tol=1e-9)
