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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from dockgate.gateway.rules.errors import Problem, pydantic_problems

V2_VERSIONS = ("2.1", "2.2", "2.3")
V3_VERSIONS = ("3.0",)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class RuleV3(_Loose):
    vehicle_type_ids: list[str] | None = None
    ride_start_allowed: bool
    ride_end_allowed: bool
    ride_through_allowed: bool
    maximum_speed_kph: int | None = Field(default=None, ge=0)
    station_parking: bool | None = None


class RuleV2(_Loose):
    vehicle_type_id: list[str] | None = None
    ride_allowed: bool
    ride_through_allowed: bool
    maximum_speed_kph: int | None = Field(default=None, ge=0)
    station_parking: bool | None = None


class LocalizedText(_Loose):
    text: str
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")


class MultiPolygon(_Loose):
    type: str = Field(pattern="^MultiPolygon$")
    coordinates: list[list[list[list[float]]]]

    @model_validator(mode="after")
    def _rings(self) -> MultiPolygon:
        for p, poly in enumerate(self.coordinates):
            for r, ring in enumerate(poly):
                if len(ring) < 4:
                    raise ValueError(f"polygon {p} ring {r}: a ring needs at least 4 positions")
                if any(len(pos) < 2 for pos in ring):
                    raise ValueError(f"polygon {p} ring {r}: a position needs lon and lat")
        return self


class PropsV3(_Loose):
    name: list[LocalizedText] | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    rules: list[RuleV3] | None = None


class PropsV2(_Loose):
    name: str | None = None
    start: int | None = Field(default=None, ge=1450155600)
    end: int | None = Field(default=None, ge=1450155600)
    rules: list[RuleV2] | None = None


class FeatureV3(_Loose):
    type: str = Field(pattern="^Feature$")
    geometry: MultiPolygon
    properties: PropsV3


class FeatureV2(_Loose):
    type: str = Field(pattern="^Feature$")
    geometry: MultiPolygon
    properties: PropsV2


class CollectionV3(_Loose):
    type: str = Field(pattern="^FeatureCollection$")
    features: list[FeatureV3]


class CollectionV2(_Loose):
    type: str = Field(pattern="^FeatureCollection$")
    features: list[FeatureV2]


class DataV3(_Loose):
    geofencing_zones: CollectionV3
    global_rules: list[RuleV3]


class DataV2(_Loose):
    geofencing_zones: CollectionV2


class DocV3(_Loose):
    last_updated: AwareDatetime
    ttl: int = Field(ge=0)
    version: str
    data: DataV3


class DocV2(_Loose):
    last_updated: int = Field(ge=1450155600)
    ttl: int = Field(ge=0)
    version: str
    data: DataV2


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
    """A geofencing zone: its name, lon/lat coordinates, active window and rules in order."""

    name: str
    coordinates: list[list[list[list[float]]]]
    start: float | None
    end: float | None
    rules: tuple[GbfsRule, ...]

    def active(self, at: float) -> bool:
        """Inside the zone's window [start, end); a missing bound is open."""
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


@dataclass(frozen=True, slots=True)
class GbfsRules:
    """A parsed document: zones in file order and the global rules."""

    version: str
    last_updated: float
    zones: tuple[GbfsZone, ...]
    global_rules: tuple[GbfsRule, ...]


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


def _v3_rule(r: RuleV3) -> GbfsRule:
    ids = frozenset(r.vehicle_type_ids) if r.vehicle_type_ids is not None else None
    return GbfsRule(
        ids,
        r.ride_start_allowed,
        r.ride_end_allowed,
        r.ride_through_allowed,
        r.maximum_speed_kph,
        r.station_parking,
    )


def _v2_rule(r: RuleV2) -> GbfsRule:
    ids = frozenset(r.vehicle_type_id) if r.vehicle_type_id is not None else None
    return GbfsRule(
        ids,
        r.ride_allowed,
        r.ride_allowed,
        r.ride_through_allowed,
        r.maximum_speed_kph,
        r.station_parking,
    )


def parse(doc: dict[str, Any], where: str = "") -> tuple[GbfsRules | None, list[Problem]]:
    """Check and normalise a GBFS geofencing_zones document; returns every problem found."""
    version = doc.get("version")
    if version in V3_VERSIONS:
        return _parse_v3(doc, str(version), where)
    if version in V2_VERSIONS:
        return _parse_v2(doc, str(version), where)
    loc = f"{where}.version" if where else "version"
    supported = ", ".join(V2_VERSIONS + V3_VERSIONS)
    return None, [Problem(loc, f"unsupported GBFS version {version!r}; supported: {supported}")]


def _parse_v3(
    doc: dict[str, Any], version: str, prefix: str
) -> tuple[GbfsRules | None, list[Problem]]:
    try:
        d3 = DocV3.model_validate(doc)
    except ValidationError as exc:
        return None, pydantic_problems(exc, prefix)
    zones: list[GbfsZone] = []
    for i, f in enumerate(d3.data.geofencing_zones.features):
        p = f.properties
        name = p.name[0].text if p.name else f"zone-{i}"
        zones.append(
            GbfsZone(
                name,
                f.geometry.coordinates,
                p.start.timestamp() if p.start else None,
                p.end.timestamp() if p.end else None,
                tuple(_v3_rule(r) for r in p.rules or ()),
            )
        )
    glob = tuple(_v3_rule(r) for r in d3.data.global_rules)
    return GbfsRules(version, d3.last_updated.timestamp(), tuple(zones), glob), []


def _parse_v2(
    doc: dict[str, Any], version: str, prefix: str
) -> tuple[GbfsRules | None, list[Problem]]:
    try:
        d2 = DocV2.model_validate(doc)
    except ValidationError as exc:
        return None, pydantic_problems(exc, prefix)
    zones: list[GbfsZone] = []
    for i, f in enumerate(d2.data.geofencing_zones.features):
        p = f.properties
        zones.append(
            GbfsZone(
                p.name or f"zone-{i}",
                f.geometry.coordinates,
                float(p.start) if p.start is not None else None,
                float(p.end) if p.end is not None else None,
                tuple(_v2_rule(r) for r in p.rules or ()),
            )
        )
    return GbfsRules(version, float(d2.last_updated), tuple(zones), ()), []


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
