"""A GBFS zone's MultiPolygon as one lon/lat area, read as GeoJSON means it.

A GeoJSON MultiPolygon covers the points inside any of its polygons. Simple-features validity,
which GEOS checks, also asks those polygons not to overlap; real feeds break that (the GBFS
specification's own example up to v3.0 nests a second polygon inside the first, and its
maintainers removed it as "redundant as it does not add any restriction", gbfs PR #595), yet
their meaning is plain: the union. So each polygon must be valid on its own (a ring that
crosses itself has no clear inside, and is refused), and polygons that nest or overlap are
merged with ``unary_union``, with a named warning.

A feed's shapes are built in bulk (one call makes every ring, one every polygon, one every
MultiPolygon, one checks them all): a city's feed has hundreds of zones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from dockgate.gateway.rules.errors import WarningCode

# Polygons of rings; a ring's positions are checked as they are gathered (``_ring``).
Coordinates = list[list[Any]]
Report = Callable[[str, str], None]  # (location, message): a problem
Warn = Callable[[WarningCode, str, str], None]  # (code, location, message): a warning

NESTED = "a polygon of this MultiPolygon lies inside another: the zone is their union"
OVERLAPPING = "polygons of this MultiPolygon overlap or share an edge: the zone is their union"


def zone_shapes(
    zones: Sequence[tuple[str, Coordinates]], problem: Report, warn: Warn
) -> list[BaseGeometry | None]:
    """Each zone's area in lon/lat, from (location, coordinates); None where a problem is
    reported. Rings are checked as they are gathered, so the bulk build meets only rings that
    GEOS can make (validity is checked after)."""
    batch = _Batch()
    for z, (loc, coords) in enumerate(zones):
        batch.add(z, loc, coords, problem)
    out: list[BaseGeometry | None] = [None] * len(zones)
    if not batch.zone_ids:
        return out
    multis = batch.build()
    off_earth = batch.off_earth(problem)
    valid = shapely.is_valid(multis)
    for slot, z in enumerate(batch.zone_ids):
        if slot in off_earth:
            continue
        loc = zones[z][0]
        geom: BaseGeometry | None = multis[slot]
        if not valid[slot]:
            geom = _union_of_valid(list(shapely.get_parts(multis[slot])), loc, problem, warn)
        out[z] = _with_area(geom, loc, problem)
    return out


class _Batch:
    """Every ring of every zone as one array of positions, with which polygon each ring and
    which zone each polygon belongs to."""

    __slots__ = (
        "arrays",
        "coords",
        "locs",
        "poly_zone",
        "ring_poly",
        "ring_sizes",
        "size",
        "zone_ids",
        "zone_start",
    )

    def __init__(self) -> None:
        self.arrays: list[NDArray[np.float64]] = []
        self.ring_sizes: list[int] = []
        self.ring_poly: list[int] = []
        self.poly_zone: list[int] = []
        self.zone_ids: list[int] = []  # per slot: the zone's position in the input
        self.zone_start: list[int] = []  # per slot: its first position in ``arrays``
        self.locs: list[str] = []
        self.size = 0  # positions so far
        self.coords: NDArray[np.float64] = np.empty((0, 2))

    def add(self, z: int, loc: str, coords: Coordinates, problem: Report) -> None:
        """Gather a zone's rings; a zone with a ring that is no ring is reported, not added."""
        rings: list[list[NDArray[np.float64]]] = []
        for p, poly in enumerate(coords):
            if not poly:
                problem(f"{loc}.coordinates.{p}", "a polygon needs a ring")
                return
            arrays = [
                _ring(ring, f"{loc}.coordinates.{p}.{r}", problem) for r, ring in enumerate(poly)
            ]
            if any(a is None for a in arrays):
                return
            rings.append([a for a in arrays if a is not None])
        slot = len(self.zone_ids)
        self.zone_ids.append(z)
        self.locs.append(loc)
        self.zone_start.append(self.size)
        for poly_rings in rings:
            poly_id = len(self.poly_zone)
            self.poly_zone.append(slot)
            for arr in poly_rings:
                self.arrays.append(arr)
                self.ring_sizes.append(len(arr))
                self.ring_poly.append(poly_id)
                self.size += len(arr)

    def build(self) -> NDArray[np.object_]:
        """One MultiPolygon per slot."""
        self.coords = np.concatenate(self.arrays)
        ring_index = np.repeat(np.arange(len(self.ring_sizes)), self.ring_sizes)
        rings = shapely.linearrings(self.coords, indices=ring_index)
        polys = shapely.polygons(rings, indices=np.asarray(self.ring_poly))
        return shapely.multipolygons(polys, indices=np.asarray(self.poly_zone))

    def off_earth(self, problem: Report) -> set[int]:
        """Slots with a position outside lon/lat degrees, each reported at its first one."""
        c = self.coords
        bad = np.flatnonzero((np.abs(c[:, 0]) > 180) | (np.abs(c[:, 1]) > 90))
        slots: set[int] = set()
        for i in bad.tolist():
            slot = int(np.searchsorted(self.zone_start, i, side="right")) - 1
            if slot not in slots:
                slots.add(slot)
                lon, lat = c[i].tolist()
                at = i - self.zone_start[slot]
                problem(self.locs[slot], f"position {at} ({lon}, {lat}) is not lon/lat degrees")
        return slots


def _ring(ring: object, loc: str, problem: Report) -> NDArray[np.float64] | None:
    """A GeoJSON ring as an (n, 2) array of lon/lat (a third value, altitude, is dropped)."""
    try:
        arr = np.asarray(ring, dtype=float)
    except (ValueError, TypeError):
        problem(loc, "a ring is a list of positions, each a list of numbers")
        return None
    if arr.ndim != 2 or arr.shape[1] < 2:
        problem(loc, "a position needs lon and lat")
        return None
    if len(arr) < 4:
        problem(loc, "a ring needs at least 4 positions")
        return None
    return arr[:, :2]


def _with_area(geom: BaseGeometry | None, loc: str, problem: Report) -> BaseGeometry | None:
    if geom is not None and (geom.is_empty or geom.area == 0):
        problem(loc, "polygon has no area")
        return None
    return geom


def _union_of_valid(
    polys: list[shapely.Polygon], loc: str, problem: Report, warn: Warn
) -> BaseGeometry | None:
    """The union of polygons each valid on its own; a polygon that is not is a problem."""
    bad = [i for i, p in enumerate(polys) if not p.is_valid]
    for i in bad:
        reason = shapely.is_valid_reason(polys[i])
        problem(f"{loc}.coordinates.{i}", f"invalid polygon: {reason}")
    if bad:
        return None
    parts = np.asarray(polys, dtype=object)
    inside, outside = shapely.STRtree(parts).query(parts, predicate="covered_by")
    nested = bool(np.any(inside != outside))
    warn(
        WarningCode.NESTED_SHELLS if nested else WarningCode.OVERLAPPING_POLYGONS,
        loc,
        NESTED if nested else OVERLAPPING,
    )
    return shapely.unary_union(parts)
