"""The running bundle as GBFS 3.0 publishes it: the geofencing the engine enforces, and the
few facts other feeds take from the bundle (time zone, permitted speed, where rides start).

A GBFS bundle is published as given, its zones active now. A dashboard bundle (border, speed
zones, virtual parkings, perhaps an embedded GBFS document) is cut into disjoint pieces, each
with the one set of rules that holds everywhere in it, worked out as the engine works it out:

* outside the border no ride starts (``check_rent``); the vehicle is locked there when the
  border locks (``lock_vehicle``: ride through not allowed) and slowed to the slow speed
  when it slows or locks; the border does not refuse a trip's end (``check_end`` has no
  border rule), so neither does the feed;
* a speed zone's ``max_speed`` is its ``maximum_speed_kph``, the lowest where zones overlap;
* in a virtual parking a trip may end while it has room (capacity 0: never); with
  ``parking_required`` a trip may end nowhere else;
* embedded GBFS rules are resolved with the specification's precedence and merged in
  (a no-ride-through zone also slows to the slow speed, as the engine does).

The pieces are disjoint, so a consumer needs no precedence between them; the place outside
every piece is described by ``global_rules``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import LinearRing

from dockgate.gateway.rules import gbfs as gbfs_mod
from dockgate.gateway.rules.bundle import RuleBundle
from dockgate.gateway.rules.config import DashboardBundle
from dockgate.gateway.rules.explain import explain
from dockgate.gateway.rules.geometry import polygon_from_shape

__all__ = [
    "Geofencing",
    "OccupancyReader",
    "bundle_timezone",
    "geofencing",
    "max_permitted_speed",
    "ride_start_allowed",
]

OccupancyReader = Callable[[int], "int | None"]
# Pieces thinner than this (square degrees, ~0.01 m² at mid latitudes) are rounding noise
# of the polygon operations, not places a vehicle can be.
_SLIVER = 1e-12
_ALLOWED = {"ride_start_allowed": True, "ride_end_allowed": True, "ride_through_allowed": True}
Rule = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Geofencing:
    """A ``geofencing_zones.json`` ``data`` object and when it changes by itself.

    ``changes_at``: the next start or end of a timed zone (None: none is scheduled);
    ``live``: it depends on how full the virtual parkings are, so it may change any time.
    """

    data: dict[str, Any]
    changes_at: float | None
    live: bool


def rfc3339(ts: float) -> str:
    """A GBFS 3.0 timestamp (UTC, with its offset)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bundle_timezone(bundle: RuleBundle) -> str | None:
    """The IANA time zone the bundle names (None: it names none, e.g. a GBFS bundle)."""
    config = bundle.config
    return config.timezone if "timezone" in config.model_fields_set else None


def max_permitted_speed(bundle: RuleBundle) -> int | None:
    """The speed the engine lets a vehicle of no known model reach: the speed settings'
    high speed (the default speed mode), None without speed settings."""
    speeds = bundle.config.vehicle_speed_settings
    return speeds.default_high_speed if speeds is not None else None


def ride_start_allowed(
    bundle: RuleBundle, lat: float, lon: float, vehicle_type: str | None, at: float
) -> bool:
    """May a ride start here, as ``RulesEngine.check_rent`` judges the place (the border and
    GBFS ``ride_start_allowed``)?"""
    here = explain(bundle, lat, lon, vehicle_type, at)
    outside = here["border_distance_m"] is not None and here["border_distance_m"] < 0
    return not outside and here["ride_start_allowed"] is not False


def geofencing(
    bundle: RuleBundle,
    at: float,
    *,
    language: str = "en",
    vehicle_types: Collection[str] | None = None,
    occupancy: OccupancyReader | None = None,
) -> Geofencing:
    """The geofencing the engine enforces at ``at`` for the published vehicle types
    (``vehicle_types``; None: rules for every type are kept). ``occupancy(parking_id)``
    tells how many vehicles a virtual parking holds (None: unknown, taken as room)."""
    gb = bundle.gbfs
    changes_at = _next_change(gb, at) if gb is not None else None
    if bundle.source.startswith("gbfs-") and gb is not None:
        data = _as_given(gb, at, language, vehicle_types)
        return Geofencing(data, changes_at, live=False)
    pieces = _Translation(bundle, at, language, vehicle_types, occupancy)
    live = occupancy is not None and any(p.capacity > 0 for p in bundle.config.virtual_parkings)
    return Geofencing(pieces.data(), changes_at, live)


# -- a GBFS bundle, as given ---------------------------------------------------------------
def _next_change(gb: gbfs_mod.GbfsRules, at: float) -> float | None:
    bounds = [t for z in gb.zones for t in (z.start, z.end) if t is not None and t > at]
    return min(bounds, default=None)


def _as_given(
    gb: gbfs_mod.GbfsRules, at: float, language: str, types: Collection[str] | None
) -> dict[str, Any]:
    features = []
    for zone in gb.zones:
        if not zone.active(at):
            continue
        props: dict[str, Any] = {"name": [{"text": zone.name, "language": language}]}
        if zone.start is not None:
            props["start"] = rfc3339(zone.start)
        if zone.end is not None:
            props["end"] = rfc3339(zone.end)
        props["rules"] = _rules_json(zone.rules, types)
        geometry = {"type": "MultiPolygon", "coordinates": zone.coordinates}
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    if gb.version in gbfs_mod.V2_VERSIONS:  # GBFS 2.x: no restriction by default
        global_rules: list[Rule] = [dict(_ALLOWED)]
    else:
        global_rules = _rules_json(gb.global_rules, types)
    zones = {"type": "FeatureCollection", "features": features}
    return {"geofencing_zones": zones, "global_rules": global_rules}


def _rules_json(rules: Iterable[gbfs_mod.GbfsRule], types: Collection[str] | None) -> list[Rule]:
    """Rules as GBFS 3.0 writes them; a rule only for vehicle types this system does not
    publish is left out (it applies to none of its vehicles)."""
    out: list[Rule] = []
    for r in rules:
        rule: Rule = {}
        if r.vehicle_type_ids is not None:
            ids = sorted(r.vehicle_type_ids if types is None else r.vehicle_type_ids & set(types))
            if not ids:
                continue
            rule["vehicle_type_ids"] = ids
        rule.update(
            ride_start_allowed=r.ride_start_allowed,
            ride_end_allowed=r.ride_end_allowed,
            ride_through_allowed=r.ride_through_allowed,
        )
        if r.maximum_speed_kph is not None:
            rule["maximum_speed_kph"] = r.maximum_speed_kph
        if r.station_parking is not None:
            rule["station_parking"] = r.station_parking
        out.append(rule)
    return out


# -- a dashboard bundle, translated --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Shape:
    """One shape of the bundle in lon/lat: its kind (``border``, ``speed``, ``parking``,
    ``gbfs``), its position among its kind, and its public name."""

    kind: str
    pos: int
    name: str
    geometry: BaseGeometry


class _Translation:
    """A dashboard bundle cut into disjoint pieces, each with the rules that hold in it."""

    def __init__(
        self,
        bundle: RuleBundle,
        at: float,
        language: str,
        types: Collection[str] | None,
        occupancy: OccupancyReader | None,
    ) -> None:
        self.config: DashboardBundle = bundle.config
        self.gbfs = bundle.gbfs
        self.at = at
        self.language = language
        self.occupancy = occupancy
        self.slow = bundle.plan.slow if bundle.plan is not None else _slow(self.config)
        self.shapes = _shapes(bundle, at)
        self.types = self._typed(types)

    def _typed(self, types: Collection[str] | None) -> list[str]:
        """The vehicle types some GBFS rule names (and this system publishes): each may have
        rules of its own; every other type follows the rules for no type."""
        if self.gbfs is None:
            return []
        rules = [*self.gbfs.global_rules, *(r for z in self.gbfs.zones for r in z.rules)]
        named = {t for r in rules for t in (r.vehicle_type_ids or ())}
        return sorted(named if types is None else named & set(types))

    def data(self) -> dict[str, Any]:
        features = []
        grouped: dict[tuple[str, str], tuple[list[Rule], list[BaseGeometry]]] = {}
        for geometry, members in _pieces([s.geometry for s in self.shapes]):
            rules = self.rules({self.shapes[i] for i in members})
            key = (self._name(members), _canonical(rules))
            grouped.setdefault(key, (rules, []))[1].append(geometry)
        for (name, _), (rules, parts) in sorted(grouped.items()):
            props = {"name": [{"text": name, "language": self.language}], "rules": rules}
            shape = _multipolygon(parts)
            features.append({"type": "Feature", "geometry": shape, "properties": props})
        zones = {"type": "FeatureCollection", "features": features}
        return {"geofencing_zones": zones, "global_rules": self.rules(set())}

    def _name(self, members: frozenset[int]) -> str:
        order = {"parking": 0, "speed": 1, "gbfs": 2, "border": 3}
        named = sorted((self.shapes[i] for i in members), key=lambda s: (order[s.kind], s.pos))
        return " / ".join(dict.fromkeys(s.name for s in named))  # each name once, in order

    def rules(self, here: set[_Shape]) -> list[Rule]:
        """The rules at a place inside exactly the shapes ``here``: one per group of vehicle
        types whose rules differ from the others', then the rule for every type."""
        default = self._rule(here, None)
        by_rule: dict[str, tuple[Rule, list[str]]] = {}
        for t in self.types:
            rule = self._rule(here, t)
            if rule != default:
                by_rule.setdefault(_canonical([rule]), (rule, []))[1].append(t)
        out = [{"vehicle_type_ids": ids, **rule} for rule, ids in by_rule.values()]
        return [*out, default]

    def _rule(self, here: set[_Shape], vehicle_type: str | None) -> Rule:
        c = self.config
        res = self._gbfs_at(here, vehicle_type)
        inside = c.border is None or any(s.kind == "border" for s in here)
        settings = c.border.settings if c.border is not None else None
        locks = settings is not None and settings.lock_vehicle
        slows = settings is not None and (settings.reduce_vehicle_speed or locks)
        parkings = [c.virtual_parkings[s.pos] for s in here if s.kind == "parking"]
        if parkings:
            end = any(self._has_room(p.id, p.capacity) for p in parkings)
        else:
            end = not c.parking_required
        limits = [c.speed_zones[s.pos].max_speed for s in here if s.kind == "speed"]
        if res.maximum_speed_kph is not None:
            limits.append(res.maximum_speed_kph)
        if (not inside and slows) or res.ride_through_allowed is False:
            limits.append(self.slow)
        rule: Rule = {
            "ride_start_allowed": inside and res.ride_start_allowed is not False,
            "ride_end_allowed": end and res.ride_end_allowed is not False,
            "ride_through_allowed": (inside or not locks) and res.ride_through_allowed is not False,
        }
        if limits:
            rule["maximum_speed_kph"] = min(limits)
        if res.station_parking is not None:
            rule["station_parking"] = res.station_parking
        elif parkings:
            rule["station_parking"] = False  # a virtual parking is not a station
        return rule

    def _gbfs_at(self, here: set[_Shape], vehicle_type: str | None) -> gbfs_mod.Resolved:
        if self.gbfs is None:
            return gbfs_mod.Resolved(None, None, None, None, None)
        hits = sorted(s.pos for s in here if s.kind == "gbfs")
        gb = self.gbfs
        res, _ = gbfs_mod.resolve(gb.zones, gb.global_rules, hits, vehicle_type, self.at)
        return res

    def _has_room(self, parking_id: int, capacity: int) -> bool:
        if capacity <= 0:
            return False
        held = self.occupancy(parking_id) if self.occupancy is not None else None
        return held is None or held < capacity


def _slow(config: DashboardBundle) -> int:
    """The slow speed (``Plan.slow``): the safety slow speed, or the low speed if lower."""
    speeds, slow = config.vehicle_speed_settings, config.safety.slow_speed_kph
    return min(slow, speeds.default_low_speed) if speeds is not None else slow


def _shapes(bundle: RuleBundle, at: float) -> list[_Shape]:
    """Every shape that acts at ``at``, in lon/lat (GBFS zones outside their window do not)."""
    c = bundle.config
    shapes: list[_Shape] = []
    if c.border is not None:
        shapes.append(_Shape("border", 0, "Network area", polygon_from_shape(c.border.shape)))
    for i, z in enumerate(c.speed_zones):
        name = z.name or f"speed-zone-{z.id}"
        shapes.append(_Shape("speed", i, name, polygon_from_shape(z.shape)))
    for i, p in enumerate(c.virtual_parkings):
        name = p.name or f"virtual-parking-{p.id}"
        shapes.append(_Shape("parking", i, name, polygon_from_shape(p.shape)))
    if bundle.gbfs is not None:
        for i, g in enumerate(bundle.gbfs.zones):
            if g.active(at):
                shapes.append(_Shape("gbfs", i, g.name, g.shape))
    return shapes


def _pieces(shapes: list[BaseGeometry]) -> list[tuple[BaseGeometry, frozenset[int]]]:
    """The shapes' overlay: disjoint pieces, each with the positions of the shapes it lies in
    (every point of a shape is in exactly one piece)."""
    pieces: list[tuple[BaseGeometry, frozenset[int]]] = []
    covered: BaseGeometry | None = None
    for k, shape in enumerate(shapes):
        cut: list[tuple[BaseGeometry, frozenset[int]]] = []
        for geometry, members in pieces:
            if not geometry.intersects(shape):
                cut.append((geometry, members))
                continue
            cut += _kept(geometry.intersection(shape), members | {k})
            cut += _kept(geometry.difference(shape), members)
        fresh = shape if covered is None else shape.difference(covered)
        cut += _kept(fresh, frozenset({k}))
        covered = shape if covered is None else covered.union(shape)
        pieces = cut
    return pieces


def _kept(
    geometry: BaseGeometry, members: frozenset[int]
) -> list[tuple[BaseGeometry, frozenset[int]]]:
    """The polygons of an operation's result (lines and points where shapes only touch are
    no place), unless nothing but slivers is left."""
    polys = [p for p in shapely.get_parts(geometry) if p.geom_type == "Polygon"]
    polys = [p for p in polys if p.area > _SLIVER]
    return [(shapely.MultiPolygon(polys), members)] if polys else []


def _multipolygon(parts: list[BaseGeometry]) -> dict[str, Any]:
    """GeoJSON MultiPolygon of disjoint pieces, rings oriented by the right-hand rule
    (RFC 7946: exterior counterclockwise, holes clockwise)."""
    coordinates = []
    for part in parts:
        for poly in shapely.get_parts(part):
            rings = [_ring(poly.exterior, True), *(_ring(r, False) for r in poly.interiors)]
            coordinates.append(rings)
    return {"type": "MultiPolygon", "coordinates": coordinates}


def _ring(ring: LinearRing, counterclockwise: bool) -> list[list[float]]:
    points = [[x, y] for x, y in ring.coords]
    return points if ring.is_ccw == counterclockwise else points[::-1]


def _canonical(rules: list[Rule]) -> str:
    """A key equal for equal rules (pieces with the same rules and names are one zone)."""
    return json.dumps(rules, sort_keys=True)
