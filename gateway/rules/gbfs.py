"""Import of GBFS ``geofencing_zones.json`` (2.x and 3.0) and the specification's precedence.

Precedence (GBFS 3.0, "Geofencing Rule Precedence"): within one rules array the earlier rule
that applies to the vehicle type wins; where polygons overlap the earlier polygon wins;
a polygon's rules beat ``global_rules``; polygons outside their ``start``/``end`` are ignored.
An optional field a rule leaves unset (``maximum_speed_kph``, ``station_parking``) falls
through to the next applicable rule (the specification's first overlap example: B's
``maximum_speed_kph`` applies where A, earlier, sets none). A zone is active from its
``start`` until, not including, its ``end``; GBFS 3.0 times must carry an offset. GBFS 2.x
has no ``global_rules`` (no restriction by default) and a single ``ride_allowed`` for start
and end.

The reader refuses only what it cannot understand. What a careful consumer can still read is
accepted with a named warning (``WarningCode``): nested or overlapping polygons in one
MultiPolygon (the zone is their union), a feature without geometry (skipped), a timestamp
outside the schema's bounds or written the other version's way, a vehicle type key spelt the
other version's way (read), unknown fields (ignored), a 3.1 release candidate (read as 3.0,
its geofencing schema being the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError
from shapely.geometry.base import BaseGeometry

from dockgate.gateway.rules.errors import (
    BundleWarning,
    Problem,
    WarningCode,
    Warnings,
    pydantic_problems,
)
from dockgate.gateway.rules.gbfs_geometry import Coordinates, zone_shapes
from dockgate.gateway.rules.gbfs_schema import (
    DocV2,
    DocV3,
    FeatureV2,
    FeatureV3,
    LocalizedText,
    PropsV2,
    PropsV3,
    RuleV2,
    RuleV3,
    Timestamp,
    unknown_fields,
)

V2_VERSIONS = ("2.1", "2.2", "2.3")
V3_VERSIONS = ("3.0",)
# Release candidates whose geofencing_zones schema is 3.0's but for the version constant
# (MobilityData/gbfs-json-schema v3.1-RC, v3.1-RC2, v3.1-RC3).
V3_CANDIDATES = ("3.1-RC", "3.1-RC2", "3.1-RC3")
V2_MIN_TIME = 1450155600  # the 2.x schemas' minimum for every timestamp (2015-12-15)


@dataclass(frozen=True, slots=True)
class GbfsRule:
    """One rule, normalised to GBFS 3.0 fields; ``vehicle_type_ids`` None means every type."""

    vehicle_type_ids: frozenset[str] | None
    ride_start_allowed: bool
    ride_end_allowed: bool
    ride_through_allowed: bool
    maximum_speed_kph: int | None = None
    station_parking: bool | None = None

    def applies_to(self, vehicle_type: str | None) -> bool:
        if self.vehicle_type_ids is None:
            return True
        return vehicle_type is not None and vehicle_type in self.vehicle_type_ids


@dataclass(frozen=True, slots=True)
class GbfsZone:
    """A geofencing zone: its name, lon/lat coordinates and area, active window and rules in
    order. ``feature`` is its position among the file's features (a skipped feature keeps its
    number, so locations name the file's own positions)."""

    name: str
    coordinates: Coordinates
    start: float | None
    end: float | None
    rules: tuple[GbfsRule, ...]
    shape: BaseGeometry
    feature: int

    def active(self, at: float) -> bool:
        """Inside the zone's window [start, end); a missing bound is open."""
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


@dataclass(frozen=True, slots=True)
class GbfsRules:
    """A parsed document: zones in file order, the global rules, what it was accepted with."""

    version: str
    last_updated: float
    zones: tuple[GbfsZone, ...]
    global_rules: tuple[GbfsRule, ...]
    warnings: tuple[BundleWarning, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolved:
    """What applies at one place for one vehicle type (None: nothing says)."""

    ride_start_allowed: bool | None
    ride_end_allowed: bool | None
    ride_through_allowed: bool | None
    maximum_speed_kph: int | None
    station_parking: bool | None


FIELDS = (
    "ride_start_allowed",
    "ride_end_allowed",
    "ride_through_allowed",
    "maximum_speed_kph",
    "station_parking",
)


def is_gbfs(doc: Any) -> bool:
    """Does this look like a GBFS geofencing_zones document (rather than a dashboard bundle)?"""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("data"), dict)
        and "geofencing_zones" in doc["data"]
    )


def parse(doc: dict[str, Any], where: str = "") -> tuple[GbfsRules | None, list[Problem]]:
    """Check and normalise a GBFS geofencing_zones document; returns every problem found.

    Locations are prefixed with ``where`` (``gbfs`` for a document inside a dashboard bundle);
    the warnings ride on the result (``GbfsRules.warnings``).
    """
    version = doc.get("version")
    if version in V3_VERSIONS + V3_CANDIDATES:
        return _Reader(str(version), True, where).read_v3(doc)
    if version in V2_VERSIONS:
        return _Reader(str(version), False, where).read_v2(doc)
    loc = f"{where}.version" if where else "version"
    supported = ", ".join(V2_VERSIONS + V3_VERSIONS + V3_CANDIDATES)
    return None, [Problem(loc, f"unsupported GBFS version {version!r}; supported: {supported}")]


ZONES = "data.geofencing_zones.features"


class _Feature(NamedTuple):
    """A feature read but for its shape."""

    feature: int
    name: str
    coordinates: Coordinates
    start: float | None
    end: float | None
    rules: tuple[GbfsRule, ...]


class _Reader:
    """One reading of one document: its version, the problems and the warnings found."""

    def __init__(self, version: str, v3: bool, prefix: str) -> None:
        self.version = version
        self.v3 = v3
        self.prefix = prefix
        self.problems: list[Problem] = []
        self.warnings = Warnings(prefix)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(f"{self.prefix}.{path}" if self.prefix else path, message))

    def done(
        self, last_updated: float | None, zones: list[GbfsZone], glob: tuple[GbfsRule, ...]
    ) -> tuple[GbfsRules | None, list[Problem]]:
        if self.problems or last_updated is None:
            return None, self.problems
        rules = GbfsRules(self.version, last_updated, tuple(zones), glob, self.warnings.result())
        return rules, []

    def read_v3(self, doc: dict[str, Any]) -> tuple[GbfsRules | None, list[Problem]]:
        try:
            d3 = DocV3.model_validate(doc)
        except ValidationError as exc:
            return None, pydantic_problems(exc, self.prefix)
        if self.version in V3_CANDIDATES:
            self.warnings.add(
                WarningCode.RELEASE_CANDIDATE,
                "version",
                "a release candidate; its geofencing_zones schema is 3.0's: read as 3.0",
            )
        self.unknown(doc)
        last = self.time(d3.last_updated, "last_updated")
        zones = self.zones(d3.data.geofencing_zones.features)
        glob = tuple(
            self.v3_rule(r, f"data.global_rules.{i}") for i, r in enumerate(d3.data.global_rules)
        )
        return self.done(last, zones, glob)

    def read_v2(self, doc: dict[str, Any]) -> tuple[GbfsRules | None, list[Problem]]:
        try:
            d2 = DocV2.model_validate(doc)
        except ValidationError as exc:
            return None, pydantic_problems(exc, self.prefix)
        self.unknown(doc)
        last = self.time(d2.last_updated, "last_updated")
        zones = self.zones(d2.data.geofencing_zones.features)
        return self.done(last, zones, ())

    def unknown(self, doc: dict[str, Any]) -> None:
        family = "3.0" if self.v3 else "2.x"
        for loc, key in unknown_fields(doc, self.v3):
            self.warnings.add(
                WarningCode.UNKNOWN_FIELD, loc, f"{key!r} is no GBFS {family} field: ignored"
            )

    def zones(self, features: Sequence[FeatureV2 | FeatureV3]) -> list[GbfsZone]:
        """The features that have a geometry, as zones; their shapes are built in bulk."""
        pending = [z for i, f in enumerate(features) if (z := self.zone(i, f)) is not None]
        shapes = zone_shapes(
            [(f"{ZONES}.{z.feature}.geometry", z.coordinates) for z in pending],
            self.problem,
            self.warnings.add,
        )
        return [
            GbfsZone(z.name, z.coordinates, z.start, z.end, z.rules, shape, z.feature)
            for z, shape in zip(pending, shapes, strict=True)
            if shape is not None
        ]

    def zone(self, i: int, f: FeatureV2 | FeatureV3) -> _Feature | None:
        """A feature's zone but for its shape; None if it has no geometry (skipped)."""
        path = f"{ZONES}.{i}"
        if f.geometry is None:
            self.warnings.add(
                WarningCode.NULL_GEOMETRY,
                f"{path}.geometry",
                "a feature without a geometry applies nowhere: skipped",
            )
            return None
        coords = f.geometry.coordinates
        if not any(coords):
            self.warnings.add(
                WarningCode.EMPTY_GEOMETRY,
                f"{path}.geometry",
                "a feature whose MultiPolygon has no polygon applies nowhere: skipped",
            )
            return None
        p = f.properties
        start = self.time(p.start, f"{path}.properties.start")
        end = self.time(p.end, f"{path}.properties.end")
        if start is not None and end is not None and not start < end:
            self.warnings.add(
                WarningCode.EMPTY_WINDOW,
                f"{path}.properties",
                "the zone's start is not before its end: it is never active",
            )
        rules = self.zone_rules(p, f"{path}.properties.rules")
        return _Feature(i, _name(p.name, i), coords, start, end, rules)

    def zone_rules(self, p: PropsV2 | PropsV3, path: str) -> tuple[GbfsRule, ...]:
        if isinstance(p, PropsV3):
            return tuple(self.v3_rule(r, f"{path}.{j}") for j, r in enumerate(p.rules or ()))
        return tuple(self.v2_rule(r, f"{path}.{j}") for j, r in enumerate(p.rules or ()))

    def time(self, value: Timestamp | None, path: str) -> float | None:
        """POSIX seconds from either version's timestamp; None if absent or unreadable."""
        if value is None:
            return None
        if isinstance(value, str):
            return self._text_time(value, path)
        if not math.isfinite(value):
            self.problem(path, f"{value} is not a time")
            return None
        if self.v3:
            self.warnings.add(
                WarningCode.TIMESTAMP_OTHER_VERSION,
                path,
                "POSIX seconds where GBFS 3.0 has RFC 3339 text: read as seconds since 1970 UTC",
            )
        elif value < V2_MIN_TIME:
            self.warnings.add(
                WarningCode.TIMESTAMP_OUT_OF_RANGE,
                path,
                f"below the GBFS 2.x schema's minimum {V2_MIN_TIME} (2015-12-15): read as given",
            )
        return float(value)

    def _text_time(self, value: str, path: str) -> float | None:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            self.problem(path, f"{value!r} is not an RFC 3339 time")
            return None
        if t.tzinfo is None:
            # Read in the gateway's own time zone it could be hours off: refused, not guessed.
            self.problem(path, f"{value!r} has no UTC offset (Z or +hh:mm)")
            return None
        if not self.v3:
            self.warnings.add(
                WarningCode.TIMESTAMP_OTHER_VERSION,
                path,
                "RFC 3339 text where GBFS 2.x has POSIX seconds: read as that time",
            )
        return t.timestamp()

    def v3_rule(self, r: RuleV3, path: str) -> GbfsRule:
        ids = self.type_ids(r.vehicle_type_ids, r.vehicle_type_id, path)
        return GbfsRule(
            ids,
            r.ride_start_allowed,
            r.ride_end_allowed,
            r.ride_through_allowed,
            r.maximum_speed_kph,
            r.station_parking,
        )

    def v2_rule(self, r: RuleV2, path: str) -> GbfsRule:
        ids = self.type_ids(r.vehicle_type_id, r.vehicle_type_ids, path)
        return GbfsRule(
            ids,
            r.ride_allowed,
            r.ride_allowed,
            r.ride_through_allowed,
            r.maximum_speed_kph,
            r.station_parking,
        )

    def type_ids(
        self, own: list[str] | None, other: list[str] | None, path: str
    ) -> frozenset[str] | None:
        """The rule's vehicle types, read from either version's key (None: every type).

        A rule that gives both keys, differently, cannot be read: which one was meant?
        """
        own_key, other_key = ("vehicle_type_ids", "vehicle_type_id")[:: 1 if self.v3 else -1]
        if other is None:
            return frozenset(own) if own is not None else None
        if own is not None and set(own) != set(other):
            self.problem(path, f"{own_key} and {other_key} are both given and differ")
            return None
        other_family = "2.x" if self.v3 else "3.0"
        self.warnings.add(
            WarningCode.TYPE_KEY_OTHER_VERSION,
            f"{path}.{other_key}",
            f"the vehicle type key is spelt {other_key!r}, as GBFS {other_family} does: "
            f"read as {own_key!r}",
        )
        return frozenset(other)


def _name(name: str | list[LocalizedText] | None, i: int) -> str:
    """A zone's public name: 2.x text, the first of 3.0's translations, or its position."""
    if isinstance(name, str):
        return name
    return name[0].text if name else f"zone-{i}"


def resolve(
    zones: tuple[GbfsZone, ...],
    global_rules: tuple[GbfsRule, ...],
    hits: list[int],
    vehicle_type: str | None,
    at: float,
) -> tuple[Resolved, list[str]]:
    """Apply the precedence to the zones containing a point (``hits``, sorted by file order).

    Returns the resolved fields and the names of the zones that contributed, in precedence
    order. Each field is taken from the first applicable rule that sets it: polygon rules in
    polygon order, each polygon's rules in order, then the global rules.
    """
    values: dict[str, Any] = dict.fromkeys(FIELDS)
    missing = set(FIELDS)
    matched: list[str] = []
    for i in hits:
        z = zones[i]
        if not z.active(at):
            continue
        applicable = [r for r in z.rules if r.applies_to(vehicle_type)]
        if not applicable:
            continue
        matched.append(z.name)
        for r in applicable:
            _take(r, values, missing)
        if not missing:
            return Resolved(**values), matched
    for r in global_rules:
        if r.applies_to(vehicle_type):
            _take(r, values, missing)
        if not missing:
            break
    return Resolved(**values), matched


def _take(rule: GbfsRule, values: dict[str, Any], missing: set[str]) -> None:
    for name in tuple(missing):
        v = getattr(rule, name)
        if v is not None:
            values[name] = v
            missing.discard(name)
