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
from numpy.typing import NDArray
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

EARTH_RADIUS_M = 6_371_008.8
# A border segment as ``near`` reads it: start (ax, ay), direction (dx, dy), squared length.
Segment = tuple[float, float, float, float, float]
Floats = NDArray[np.float64]


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

    def xy_many(self, lats: Floats, lons: Floats) -> tuple[Floats, Floats]:
        return (lons - self.lon0) * self.kx, (lats - self.lat0) * self.ky

    def geometry(self, geom: BaseGeometry) -> BaseGeometry:
        """Project a lon/lat geometry into this frame (vectorised over its coordinates)."""
        lon0, lat0, kx, ky = self.lon0, self.lat0, self.kx, self.ky

        def f(c: Floats) -> Floats:
            return np.column_stack(((c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * ky))

        return shapely.transform(geom, f)

    def coords(self, lonlat: Floats) -> Floats:
        """Project an (n, 2) array of lon/lat pairs."""
        out = np.empty_like(lonlat, dtype=float)
        out[:, 0] = (lonlat[:, 0] - self.lon0) * self.kx
        out[:, 1] = (lonlat[:, 1] - self.lat0) * self.ky
        return out


class ZoneIndex:
    """Point-in-zone lookups: an STRtree over prepared, projected geometries.

    Results are zone positions (indices into the list given), sorted, so callers keep the
    precedence order of the source file.
    """

    __slots__ = ("_empty", "geoms", "tree")

    def __init__(self, geoms: Sequence[BaseGeometry]) -> None:
        self.geoms = list(geoms)
        if self.geoms:
            shapely.prepare(np.asarray(self.geoms, dtype=object))
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
        out: list[int] = hits.tolist()
        return out

    def at_many(self, xs: Floats, ys: Floats) -> list[list[int]]:
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

    Exact distances to a border of thousands of vertices are costly, so the border is cut
    into its segments, indexed by an STRtree: a distance looks only at the segments within
    ``margin_m`` of the point, and a point farther than that is reported at +-``margin_m``.
    No buffered copies of the border are built, so a bundle loads fast.
    """

    __slots__ = ("boundary", "margin_m", "polygon", "seg_tree", "segments")

    def __init__(self, polygon: BaseGeometry, margin_m: float) -> None:
        self.polygon = polygon
        self.margin_m = margin_m
        self.boundary = polygon.boundary
        shapely.prepare(polygon)
        parts = shapely.get_parts(self.boundary)
        segs = []
        for line in parts:
            c = shapely.get_coordinates(line)
            segs.append(np.column_stack((c[:-1], c[1:])))
        self.segments = np.concatenate(segs) if segs else np.empty((0, 4))
        s = self.segments
        self.seg_tree = STRtree(shapely.linestrings(np.stack((s[:, :2], s[:, 2:]), axis=1)))

    def candidates(self, x0: float, y0: float, x1: float, y1: float) -> tuple[Segment, ...]:
        """The segments that may be the nearest, within ``margin_m``, to a point in the box.

        A segment farther from the box than some other segment is from the box's farthest
        point can be nearest to no point in it, and is left out; so a small box keeps only a
        few segments, and ``near`` stays cheap.
        """
        return self.candidates_and_gap(x0, y0, x1, y1)[0]

    def candidates_and_gap(
        self, x0: float, y0: float, x1: float, y1: float
    ) -> tuple[tuple[Segment, ...], float]:
        """``candidates`` and the gap: the least distance from the box to the border (0 if
        the border crosses the box; ``margin_m`` if no segment is within it). Every point of
        the box is at least the gap from the border, on the side of the box's centre."""
        m = self.margin_m
        box = shapely.box(x0, y0, x1, y1)
        idx = np.sort(self.seg_tree.query(box, predicate="dwithin", distance=m))
        if len(idx) == 0:
            return (), m
        geoms = self.seg_tree.geometries[idx]
        near_box = shapely.distance(geoms, box)
        centre = shapely.Point((x0 + x1) / 2, (y0 + y1) / 2)
        reach = shapely.distance(geoms, centre).min() + math.hypot(x1 - x0, y1 - y0) / 2
        keep = near_box <= reach
        gap = float(near_box.min())
        idx = idx[keep]
        out: list[Segment] = []
        for ax, ay, bx, by in self.segments[idx].tolist():
            dx, dy = bx - ax, by - ay
            out.append((ax, ay, dx, dy, dx * dx + dy * dy))
        return tuple(out), gap

    def near(self, x: float, y: float, segs: tuple[Segment, ...], side: int = 0) -> float:
        """Signed distance using candidate segments; clamped to +-margin_m. ``side`` (+1
        inside, -1 outside, 0 unknown) spares the point-in-polygon test when known."""
        best = self.margin_m * self.margin_m
        for ax, ay, dx, dy, l2 in segs:
            px, py = x - ax, y - ay
            t = (px * dx + py * dy) / l2 if l2 > 0 else 0.0
            if t < 0.0:
                t = 0.0
            elif t > 1.0:
                t = 1.0
            ex, ey = px - t * dx, py - t * dy
            best = min(best, ex * ex + ey * ey)
        d = math.sqrt(best)
        if side:
            return d if side > 0 else -d
        return d if shapely.contains_xy(self.polygon, x, y) else -d

    def signed_distance(self, x: float, y: float) -> float:
        """Metres to the border, positive inside; clamped to +-margin_m when farther."""
        return self.near(x, y, self.candidates(x, y, x, y))

    def exact(self, x: float, y: float) -> float:
        d = float(shapely.distance(self.boundary, shapely.Point(x, y)))
        return d if shapely.contains_xy(self.polygon, x, y) else -d

    def signed_distance_many(self, xs: Floats, ys: Floats) -> Floats:
        return np.array(
            [self.signed_distance(x, y) for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
        )


def polygon_from_shape(shape: Sequence[Sequence[float]]) -> shapely.Polygon:
    """A polygon from a dashboard shape (closed or not), in lon/lat."""
    pts = [(float(p[0]), float(p[1])) for p in shape]
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return shapely.Polygon(pts)


def closed_rings(
    shapes: Sequence[Sequence[Sequence[float]]],
) -> tuple[Floats, NDArray[np.intp]]:
    """All shapes' points, each ring closed, as one (n, 2) array and the ring index per point."""
    flat: list[Sequence[float]] = []
    counts: list[int] = []
    for shape in shapes:
        flat.extend(shape)
        n = len(shape)
        if list(shape[0]) != list(shape[-1]):
            flat.append(shape[0])
            n += 1
        counts.append(n)
    coords = np.asarray(flat, dtype=float).reshape(-1, 2)
    return coords, np.repeat(np.arange(len(shapes)), counts)


def polygons_from_coords(coords: Floats, ring_index: NDArray[np.intp]) -> NDArray[np.object_]:
    """Polygons (no holes) from closed ring coordinates, built in one vectorised call."""
    if len(coords) == 0:
        return np.empty(0, dtype=object)
    return shapely.polygons(shapely.linearrings(coords, indices=ring_index))
