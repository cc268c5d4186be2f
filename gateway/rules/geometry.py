"""Geometry in metres: a local projection, an STRtree zone index and a border with margins.

Shapes arrive in WGS 84 degrees; distances there are meaningless (a degree of longitude is
~78 km at Milan, ~111 km at the equator), so every shape is projected once, at bundle load,
into a local equirectangular frame in metres centred on the bundle. Over a city (tens of km)
its error is far below GPS accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

EARTH_RADIUS_M = 6_371_008.8


class LocalProjection:
    """Equirectangular projection around (lat0, lon0): x east, y north, in metres."""

    __slots__ = ("kx", "ky", "lat0", "lon0")

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0 = lat0
        self.lon0 = lon0
        self.ky = math.radians(1) * EARTH_RADIUS_M
        self.kx = self.ky * math.cos(math.radians(lat0))

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def xy_many(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (lons - self.lon0) * self.kx, (lats - self.lat0) * self.ky

    def geometry(self, geom: BaseGeometry) -> BaseGeometry:
        """Project a lon/lat geometry into this frame (vectorised over its coordinates)."""
        lon0, lat0, kx, ky = self.lon0, self.lat0, self.kx, self.ky

        def f(c: np.ndarray) -> np.ndarray:
            return np.column_stack(((c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * ky))

        return shapely.transform(geom, f)


class ZoneIndex:
    """Point-in-zone lookups: an STRtree over prepared, projected geometries.

    Results are zone positions (indices into the list given), sorted, so callers keep the
    precedence order of the source file.
    """

    __slots__ = ("_empty", "geoms", "tree")

    def __init__(self, geoms: Sequence[BaseGeometry]) -> None:
        self.geoms = list(geoms)
        for g in self.geoms:
            shapely.prepare(g)
        self.tree = STRtree(self.geoms)
        self._empty = len(self.geoms) == 0

    def __len__(self) -> int:
        return len(self.geoms)

    def at(self, x: float, y: float) -> list[int]:
        if self._empty:
            return []
        hits = self.tree.query(shapely.Point(x, y), predicate="intersects")
        if len(hits) > 1:
            hits.sort()
        return hits.tolist()

    def at_many(self, xs: np.ndarray, ys: np.ndarray) -> list[list[int]]:
        """Bulk lookup: one STRtree call for many points."""
        out: list[list[int]] = [[] for _ in range(len(xs))]
        if self._empty or len(xs) == 0:
            return out
        pairs = self.tree.query(shapely.points(xs, ys), predicate="intersects")
        order = np.lexsort((pairs[1], pairs[0]))
        for p, z in zip(pairs[0][order].tolist(), pairs[1][order].tolist(), strict=True):
            out[p].append(z)
        return out


class BorderIndex:
    """The network border with a signed distance in metres (positive inside).

    Exact distances to a border of thousands of vertices are costly, so two prepared
    polygons, the border shrunk and grown by ``margin_m``, answer the common case: a point
    in the shrunk one is at least ``margin_m`` inside, a point outside the grown one at
    least ``margin_m`` outside. Only points in the band between pay for the exact distance.
    """

    __slots__ = ("boundary", "core", "margin_m", "outer", "polygon")

    def __init__(self, polygon: BaseGeometry, margin_m: float) -> None:
        self.polygon = polygon
        self.margin_m = margin_m
        self.boundary = polygon.boundary
        self.core = polygon.buffer(-margin_m)
        self.outer = polygon.buffer(margin_m)
        for g in (self.polygon, self.core, self.outer, self.boundary):
            shapely.prepare(g)

    def signed_distance(self, x: float, y: float) -> float:
        """Metres to the border, positive inside; clamped to +-margin_m when farther."""
        if shapely.contains_xy(self.core, x, y):
            return self.margin_m
        if not shapely.contains_xy(self.outer, x, y):
            return -self.margin_m
        return self.exact(x, y)

    def exact(self, x: float, y: float) -> float:
        d = float(shapely.distance(self.boundary, shapely.Point(x, y)))
        return d if shapely.contains_xy(self.polygon, x, y) else -d

    def signed_distance_many(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        out = np.full(len(xs), -self.margin_m)
        out[shapely.contains_xy(self.core, xs, ys)] = self.margin_m
        band = shapely.contains_xy(self.outer, xs, ys) & (out < 0)
        for i in np.flatnonzero(band).tolist():
            out[i] = self.exact(float(xs[i]), float(ys[i]))
        return out


def polygon_from_shape(shape: Sequence[Sequence[float]]) -> shapely.Polygon:
    """A polygon from a dashboard shape (closed or not), in lon/lat."""
    pts = [(float(p[0]), float(p[1])) for p in shape]
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return shapely.Polygon(pts)
