"""Rule bundles: load (dashboard-style or GBFS), check as a whole, compile, swap atomically."""

from __future__ import annotations

import json
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely
from pydantic import ValidationError
from shapely.geometry.base import BaseGeometry

from gateway.rules import gbfs as gbfs_mod
from gateway.rules.config import DashboardBundle, Safety
from gateway.rules.errors import BundleError, Problem, pydantic_problems
from gateway.rules.geometry import BorderIndex, LocalProjection, ZoneIndex, polygon_from_shape

SPEED, PARKING, GBFS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class IndexedZone:
    """One entry of the combined zone index: its kind, its position within that kind, a label."""

    kind: int
    pos: int
    label: str


@dataclass(frozen=True)
class RuleBundle:
    """A checked, compiled bundle. Immutable: the engine swaps whole bundles, never edits one."""

    version: str
    source: str
    config: DashboardBundle
    gbfs: gbfs_mod.GbfsRules | None
    projection: LocalProjection
    border: BorderIndex | None
    zones: ZoneIndex
    entries: tuple[IndexedZone, ...]
    timezone: ZoneInfo
    vehicle_settings: dict[int, Any] = field(default_factory=dict)

    @property
    def safety(self) -> Safety:
        return self.config.safety


def _read(data: dict | str | Path) -> tuple[Any, list[Problem]]:
    if isinstance(data, dict):
        return data, []
    if isinstance(data, str) and data.lstrip().startswith(("{", "[")):
        try:
            return json.loads(data), []
        except json.JSONDecodeError as exc:
            return None, [Problem("$", f"invalid JSON: {exc}")]
    path = Path(data)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(str(path), f"cannot read: {exc.strerror or exc}")]
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode("utf-8")), []
        return json.loads(raw), []
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), f"cannot parse: {exc}")]


def _polygon(shape: list, loc: str, problems: list[Problem]) -> BaseGeometry | None:
    try:
        poly = polygon_from_shape(shape)
    except (ValueError, TypeError, shapely.errors.GEOSException) as exc:
        problems.append(Problem(loc, f"not a polygon: {exc}"))
        return None
    return _valid(poly, loc, problems)


def _valid(geom: BaseGeometry, loc: str, problems: list[Problem]) -> BaseGeometry | None:
    if not geom.is_valid:
        problems.append(Problem(loc, f"invalid polygon: {shapely.is_valid_reason(geom)}"))
        return None
    if geom.is_empty or geom.area == 0:
        problems.append(Problem(loc, "polygon has no area"))
        return None
    return geom


def _multipolygon(coords: list, loc: str, problems: list[Problem]) -> BaseGeometry | None:
    try:
        polys = [shapely.Polygon(p[0], p[1:]) for p in coords]
        geom = shapely.MultiPolygon(polys)
    except (ValueError, TypeError, IndexError, shapely.errors.GEOSException) as exc:
        problems.append(Problem(loc, f"not a multipolygon: {exc}"))
        return None
    for i, (lon, lat) in enumerate(shapely.get_coordinates(geom).tolist()):
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            problems.append(Problem(loc, f"position {i} ({lon}, {lat}) is not lon/lat degrees"))
            return None
    return _valid(geom, loc, problems)


def load_bundle(data: dict | str | Path) -> RuleBundle:
    """Load and check a dashboard-style bundle or a GBFS geofencing_zones document.

    ``data`` is a parsed object, JSON text, or a path to a ``.json``/``.toml`` file. Raises
    ``BundleError`` listing every problem found; never returns a partly valid bundle.
    """
    doc, problems = _read(data)
    if problems:
        raise BundleError(problems)
    if not isinstance(doc, dict):
        raise BundleError([Problem("$", "a bundle must be a JSON/TOML object")])
    if gbfs_mod.is_gbfs(doc):
        gb, problems = gbfs_mod.parse(doc)
        if gb is None:
            raise BundleError(problems)
        config = DashboardBundle(version=f"gbfs-{gb.version}@{gb.last_updated:.0f}", gbfs=doc)
        return _compile(config, gb, f"gbfs-{gb.version}")
    try:
        config = DashboardBundle.model_validate(doc)
    except ValidationError as exc:
        problems = pydantic_problems(exc) + _raw_geometry_problems(doc)
        if isinstance(doc.get("gbfs"), dict):
            problems += gbfs_mod.parse(doc["gbfs"], "gbfs")[1]
        raise BundleError(problems) from None
    gb = None
    if config.gbfs is not None:
        gb, problems = gbfs_mod.parse(config.gbfs, "gbfs")
        if gb is None:
            raise BundleError(problems)
    return _compile(config, gb, "dashboard")


def _raw_geometry_problems(doc: dict) -> list[Problem]:
    """Geometry problems of shapes that are well-formed even though the bundle is not."""
    problems: list[Problem] = []

    def check(shape: Any, loc: str) -> None:
        ok = isinstance(shape, list) and len(shape) >= 3
        ok = ok and all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in p)
            for p in shape
        )
        if ok:
            _polygon(shape, loc, problems)

    border = doc.get("border")
    if isinstance(border, dict):
        check(border.get("shape"), "border.shape")
    for key in ("speed_zones", "virtual_parkings"):
        items = doc.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    check(item.get("shape"), f"{key}.{i}.shape")
    return problems


def _compile(config: DashboardBundle, gb: gbfs_mod.GbfsRules | None, source: str) -> RuleBundle:
    problems: list[Problem] = []
    try:
        tz = ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(Problem("timezone", f"unknown IANA time zone {config.timezone!r}"))
        tz = ZoneInfo("UTC")
    _unique(config.speed_zones, "speed_zones", problems)
    _unique(config.virtual_parkings, "virtual_parkings", problems)
    _unique(config.vehicle_settings, "vehicle_settings", problems, key="model_id")
    border = None
    if config.border is not None:
        border = _polygon(config.border.shape, "border.shape", problems)
    geoms: list[BaseGeometry | None] = []
    entries: list[IndexedZone] = []
    for i, z in enumerate(config.speed_zones):
        geoms.append(_polygon(z.shape, f"speed_zones.{i}.shape", problems))
        entries.append(IndexedZone(SPEED, i, z.name or f"speed-zone-{z.id}"))
    for i, p in enumerate(config.virtual_parkings):
        geoms.append(_polygon(p.shape, f"virtual_parkings.{i}.shape", problems))
        entries.append(IndexedZone(PARKING, i, p.name or f"virtual-parking-{p.id}"))
    if gb is not None:
        pre = "gbfs." if source == "dashboard" else ""
        for i, z in enumerate(gb.zones):
            loc = f"{pre}data.geofencing_zones.features.{i}.geometry"
            geoms.append(_multipolygon(z.coordinates, loc, problems))
            entries.append(IndexedZone(GBFS, i, z.name))
    if problems:
        raise BundleError(problems)
    real = [g for g in geoms if g is not None]
    anchor = border if border is not None else (shapely.GeometryCollection(real) if real else None)
    if anchor is not None and not anchor.is_empty:
        c = anchor.envelope.centroid
        proj = LocalProjection(c.y, c.x)
    else:
        proj = LocalProjection(0.0, 0.0)
    margin = max(config.safety.max_accuracy_m, config.safety.min_buffer_m) + 1.0
    border_idx = BorderIndex(proj.geometry(border), margin) if border is not None else None
    zone_idx = ZoneIndex([proj.geometry(g) for g in geoms])  # type: ignore[arg-type]
    return RuleBundle(
        version=config.version,
        source=source,
        config=config,
        gbfs=gb,
        projection=proj,
        border=border_idx,
        zones=zone_idx,
        entries=tuple(entries),
        timezone=tz,
        vehicle_settings={v.model_id: v for v in config.vehicle_settings},
    )


def _unique(items: list, where: str, problems: list[Problem], key: str = "id") -> None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        k = getattr(item, key)
        if k in seen:
            problems.append(Problem(f"{where}.{i}.{key}", f"duplicate {key} {k} (see {seen[k]})"))
        seen.setdefault(k, i)


class BundleHolder:
    """Holds the running bundle; ``swap`` replaces it in one reference assignment.

    Readers take ``holder.current`` once per evaluation, so they see the old bundle or the
    new one, never a mix. A refused bundle leaves the running one in place.
    """

    def __init__(self, bundle: RuleBundle) -> None:
        self._bundle = bundle
        self._lock = threading.Lock()

    @property
    def current(self) -> RuleBundle:
        return self._bundle

    def swap(self, bundle: RuleBundle) -> RuleBundle:
        """Install ``bundle``; returns the one it replaced."""
        with self._lock:
            old, self._bundle = self._bundle, bundle
        return old

    def load_and_swap(self, data: dict | str | Path) -> RuleBundle:
        """Check ``data`` as a whole, then swap; on ``BundleError`` nothing changes."""
        bundle = load_bundle(data)
        self.swap(bundle)
        return bundle
