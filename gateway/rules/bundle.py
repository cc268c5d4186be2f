"""Rule bundles: load (dashboard-style or GBFS), check as a whole, compile, swap atomically."""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import shapely
from pydantic import ValidationError
from shapely.geometry.base import BaseGeometry

from dockgate.gateway.rules import gbfs as gbfs_mod
from dockgate.gateway.rules.config import DashboardBundle, Safety, VehicleSettings
from dockgate.gateway.rules.errors import BundleError, BundleWarning, Problem, pydantic_problems
from dockgate.gateway.rules.geometry import (
    BorderIndex,
    LocalProjection,
    ZoneIndex,
    closed_rings,
    polygon_from_shape,
    polygons_from_coords,
)
from dockgate.gateway.rules.plan import GBFS, PARKING, SPEED, IndexedZone, Plan
from dockgate.gateway.timezones import time_zone

__all__ = ["GBFS", "PARKING", "SPEED", "BundleHolder", "IndexedZone", "RuleBundle", "load_bundle"]


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
    vehicle_settings: dict[int, VehicleSettings] = field(default_factory=dict)
    plan: Plan | None = field(default=None, compare=False, repr=False)
    # What the bundle was accepted with (GBFS quirks a careful reader can read), in order found.
    warnings: tuple[BundleWarning, ...] = ()

    @property
    def safety(self) -> Safety:
        return self.config.safety


def _read(data: dict[str, Any] | str | Path) -> tuple[Any, list[Problem]]:
    """The bundle as an object. JSON is decoded with orjson: a city's GBFS feed is megabytes,
    and decoding was most of its load (orjson.JSONDecodeError is a json.JSONDecodeError)."""
    if isinstance(data, dict):
        return data, []
    if isinstance(data, str) and data.lstrip().startswith(("{", "[")):
        try:
            return orjson.loads(data), []
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
        return orjson.loads(raw), []
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), f"cannot parse: {exc}")]


def _polygon(shape: list[list[float]], loc: str, problems: list[Problem]) -> BaseGeometry | None:
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


def load_bundle(data: dict[str, Any] | str | Path) -> RuleBundle:
    """Load and check a dashboard-style bundle or a GBFS geofencing_zones document.

    ``data`` is a parsed object, JSON text, or a path to a ``.json``/``.toml`` file. Raises
    ``BundleError`` listing every problem found; never returns a partly valid bundle. What it
    was accepted with despite quirks (a GBFS feed's nested polygons, a null geometry, ...) is
    in ``RuleBundle.warnings``.
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
    return _compile(config, gb, "dashboard", problems)


def _raw_geometry_problems(doc: dict[str, Any]) -> list[Problem]:
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


def _compile(
    config: DashboardBundle,
    gb: gbfs_mod.GbfsRules | None,
    source: str,
    found: Sequence[Problem] = (),
) -> RuleBundle:
    """Check the bundle as a whole and build its indexes; ``found``: problems already found
    (an embedded GBFS document's), reported with the rest."""
    problems = list(found)
    zone = time_zone(config.timezone)
    if zone is None:
        problems.append(Problem("timezone", f"unknown IANA time zone {config.timezone!r}"))
    tz = zone or ZoneInfo("UTC")
    _unique(config.speed_zones, "speed_zones", problems)
    _unique(config.virtual_parkings, "virtual_parkings", problems)
    _unique(config.vehicle_settings, "vehicle_settings", problems, key="model_id")
    if config.parking_required and not config.virtual_parkings:
        problems.append(
            Problem("parking_required", "a trip could end nowhere: no virtual_parkings given")
        )
    shapes: list[list[list[float]]] = []
    locs: list[str] = []
    entries: list[IndexedZone] = []
    for i, z in enumerate(config.speed_zones):
        shapes.append(z.shape)
        locs.append(f"speed_zones.{i}.shape")
        entries.append(IndexedZone(SPEED, i, z.name or f"speed-zone-{z.id}"))
    for i, p in enumerate(config.virtual_parkings):
        shapes.append(p.shape)
        locs.append(f"virtual_parkings.{i}.shape")
        entries.append(IndexedZone(PARKING, i, p.name or f"virtual-parking-{p.id}"))
    gbfs_geoms: list[BaseGeometry] = []
    if gb is not None:
        for i, gz in enumerate(gb.zones):
            gbfs_geoms.append(gz.shape)
            entries.append(IndexedZone(GBFS, i, gz.name))
    # The frame is centred on the border (or on every zone): the middle of their bounds.
    if config.border is not None:
        anchor, _ = closed_rings([config.border.shape])
    else:
        parts = [closed_rings(shapes)[0]] if shapes else []
        parts += [shapely.get_coordinates(g) for g in gbfs_geoms]
        anchor = np.concatenate(parts) if parts else np.zeros((0, 2))
    if len(anchor):
        lo, hi = anchor.min(axis=0), anchor.max(axis=0)
        proj = LocalProjection((lo[1] + hi[1]) / 2, (lo[0] + hi[0]) / 2)
    else:
        proj = LocalProjection(0.0, 0.0)
    border = None
    if config.border is not None:
        border = _projected_polygons([config.border.shape], ["border.shape"], proj, problems)[0]
    geoms = _projected_polygons(shapes, locs, proj, problems)
    if gbfs_geoms:  # projected in one call: a city's feed has hundreds of zones
        geoms += shapely.transform(np.asarray(gbfs_geoms, dtype=object), proj.coords).tolist()
    if problems:
        raise BundleError(problems)
    margin = max(config.safety.max_accuracy_m, config.safety.min_buffer_m) + 1.0
    border_idx = BorderIndex(border, margin) if border is not None else None
    zone_idx = ZoneIndex([g for g in geoms if g is not None])  # all there: no problem was found
    entries_t = tuple(entries)
    return RuleBundle(
        version=config.version,
        source=source,
        config=config,
        gbfs=gb,
        projection=proj,
        border=border_idx,
        zones=zone_idx,
        entries=entries_t,
        timezone=tz,
        vehicle_settings={v.model_id: v for v in config.vehicle_settings},
        plan=Plan(config, entries_t, zone_idx, border_idx, proj, gb, tz),
        warnings=gb.warnings if gb is not None else (),
    )


def _projected_polygons(
    shapes: list[list[list[float]]],
    locs: list[str],
    proj: LocalProjection,
    problems: list[Problem],
) -> list[BaseGeometry | None]:
    """Dashboard shapes as polygons in the bundle's metric frame, built and checked in bulk.

    An affine projection keeps validity and turns zero area into zero area, so the checks run
    on the projected polygons; a problem is reported in lon/lat, as the operator wrote it.
    """
    out: list[BaseGeometry | None] = [None] * len(shapes)
    if not shapes:
        return out
    coords, ring = closed_rings(shapes)
    counts = np.bincount(ring, minlength=len(shapes))
    for i in np.flatnonzero(counts < 4).tolist():
        problems.append(Problem(locs[i], "not a polygon: a ring needs at least 3 distinct points"))
    ok = counts >= 4
    if not ok.any():
        return out
    keep = ok[ring]
    sel, ring_ok = np.unique(ring[keep], return_inverse=True)
    polys = polygons_from_coords(proj.coords(coords[keep]), ring_ok)
    valid = shapely.is_valid(polys)
    area = shapely.area(polys)
    for j, i in enumerate(sel.tolist()):
        if not valid[j]:
            reason = shapely.is_valid_reason(polygon_from_shape(shapes[i]))
            problems.append(Problem(locs[i], f"invalid polygon: {reason}"))
        elif not area[j] > 0:
            problems.append(Problem(locs[i], "polygon has no area"))
        else:
            out[i] = polys[j]
    return out


def _unique(items: Sequence[object], where: str, problems: list[Problem], key: str = "id") -> None:
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

    __slots__ = ("_lock", "current")

    def __init__(self, bundle: RuleBundle) -> None:
        # A plain attribute, not a property: the engine reads it once per evaluation.
        # Replace it through ``swap`` only.
        self.current = bundle
        self._lock = threading.Lock()

    def swap(self, bundle: RuleBundle) -> RuleBundle:
        """Install ``bundle``; returns the one it replaced."""
        with self._lock:
            old, self.current = self.current, bundle
        return old

    def load_and_swap(self, data: dict[str, Any] | str | Path) -> RuleBundle:
        """Check ``data`` as a whole, then swap; on ``BundleError`` nothing changes."""
        bundle = load_bundle(data)
        self.swap(bundle)
        return bundle
