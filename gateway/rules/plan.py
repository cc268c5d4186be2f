"""A bundle compiled for the engine: constants taken once at load, and cached lookups.

Everything here is derived from a checked bundle and never changes while the bundle runs,
so the engine's hot path reads attributes instead of walking pydantic models. Two caches
fill as vehicles are evaluated (bounded, and dropped with the bundle on a swap):

* ``CellGrid``: the plane cut into square cells; a cell (``GridCell``) remembers which zones
  cover it whole, which cross it (only those need an exact point test) and whether the
  border is farther than the hysteresis margin from every point in it (then no distance is
  computed).
* the place of a set of zones (``PlaceInfo``): its labels and speed limits, keyed by the zone
  positions, and what it means per vehicle type and trip state (``ZoneRules``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from numpy.typing import NDArray

from dockgate.gateway.rules import gbfs as gbfs_mod
from dockgate.gateway.rules.config import (
    DashboardBundle,
    Pricing,
    RentTimings,
    SpeedZone,
    VirtualParking,
)
from dockgate.gateway.rules.geometry import BorderIndex, LocalProjection, Segment, ZoneIndex
from dockgate.gateway.rules.pricing import pricing_at

SPEED, PARKING, GBFS = 0, 1, 2
MAX_CACHED = 1 << 18
# A cell's key is ``i * KEY + j`` for its column i and row j (``x // size``, ``y // size``).
# Usable fixes are within +-180 degrees of longitude and +-90 of latitude of the origin, at
# most ~4.1e7 m, so with cells of 1 m or more |j| < 2**26 < KEY / 2 and |i * KEY| < 2**53:
# every key is an integer-valued float that no other cell shares.
KEY = float(1 << 27)
_intersects_xy = shapely.lib.intersects_xy  # the ufunc itself: no wrapper per point
_points, _NAN_ALLOW = shapely.lib.points, np.intc(0)


def point(x: float, y: float) -> shapely.Point:
    """A shapely point, made by the ufunc (half the cost of ``shapely.Point(x, y)``)."""
    return _points(np.array((x, y)), _NAN_ALLOW)


@dataclass(frozen=True, slots=True)
class IndexedZone:
    """One entry of the combined zone index: its kind, its position within that kind, a label."""

    kind: int
    pos: int
    label: str


@dataclass(frozen=True, slots=True)
class GridCell:
    """What is known about every point of one grid cell, so most fixes need no geometry.

    ``covering``: zone positions that cover the whole cell (every point is in them);
    ``crossing``: zones whose boundary crosses it (a point there needs an exact test);
    ``border_distance``: the signed border distance (clamped to the margin) shared by every
    point, None where the border is within the margin; then ``border_segments`` are the only
    border segments that can be nearest, ``border_side`` is +1 (inside), -1 (outside) or 0
    (the border crosses the cell) and ``border_gap`` the least distance of any point to the
    border. ``refined``: a coarse cell a boundary crosses, looked up in the finer grid.
    """

    covering: tuple[int, ...]
    crossing: tuple[int, ...]
    border_distance: float | None
    border_segments: tuple[Segment, ...]
    refined: bool
    border_side: int
    border_gap: float


@dataclass(frozen=True, slots=True)
class ZoneRules:
    """What the zones at a fix mean for one vehicle type and trip state: the place's speed
    limits and labels, GBFS ride_end/ride_through (None: no rule says), and the virtual
    parkings there (positions in the bundle, and their ids)."""

    limits: dict[str, int]
    labels: tuple[str, ...]
    ride_end_allowed: bool | None
    ride_through_allowed: bool | None
    parkings: tuple[int, ...]
    parking_ids: tuple[int, ...]


NO_ZONE_RULES = ZoneRules({}, (), None, None, (), ())


@dataclass(frozen=True, slots=True)
class PlaceInfo:
    """What a set of zones means before the vehicle type and time are known. ``plain`` is
    its meaning without GBFS rules; ``gbfs_cache`` keeps the meaning with them per (vehicle
    type, on trip) unless a GBFS zone there has a time window (``timed``)."""

    labels: tuple[str, ...]
    limits: dict[str, int]
    gbfs: tuple[int, ...]
    parkings: tuple[int, ...]
    timed: bool
    parking_ids: tuple[int, ...]
    plain: ZoneRules
    gbfs_cache: dict[tuple[str | None, bool], ZoneRules] = field(
        default_factory=dict, compare=False
    )


class CellGrid:
    """Point lookups (zones hit, border distance) through a lazily filled two-level grid.

    Exact: a zone covering a cell whole is hit by every point in it; a zone crossing it is
    tested with the point (prepared geometry); a cell with no border segment within
    ``margin_m`` of it gets the clamped distance +-``margin_m`` for all its points. A cell
    that a zone or the border crosses is cut into 4 x 4 finer cells, so that only points
    really near a boundary pay for an exact test.
    """

    __slots__ = ("border", "cell_m", "cells", "fine", "fine_m", "geoms", "tree", "zones")

    def __init__(self, zones: ZoneIndex, border: BorderIndex | None, cell_m: float = 25.0):
        if cell_m < 4.0:  # the cell keys below must stay exact (see ``KEY``)
            raise ValueError("cell_m must be at least 4 m")
        self.zones = zones
        self.tree = zones.tree if len(zones) else None
        self.geoms: NDArray[np.object_] = np.asarray(zones.geoms, dtype=object)
        self.border = border
        self.cell_m = cell_m
        self.fine_m = cell_m / 4
        # Cells are keyed by one float, ``(x // size) * KEY + (y // size)``: cheaper to make
        # and hash than a tuple, and computed for a whole batch at once by ``evaluate_many``.
        self.cells: dict[float, GridCell] = {}
        self.fine: dict[float, GridCell] = {}

    def _classify(self, x0: float, y0: float, c: float, parent: GridCell | None) -> GridCell:
        """The cell of side ``c`` at (x0, y0); a fine cell starts from its coarse ``parent``."""
        box = shapely.box(x0, y0, x0 + c, y0 + c)
        covering, crossing = self._zones_in(box, parent)
        if parent is not None and parent.border_distance is not None:
            # The parent's border distance holds here too; a fine cell is not cut again.
            return GridCell(
                covering,
                crossing,
                parent.border_distance,
                (),
                False,
                parent.border_side,
                parent.border_gap,
            )
        dist: float | None = None
        segs: tuple[Segment, ...] = ()
        side, gap = 0, 0.0
        b = self.border
        if b is not None:
            segs, gap = b.candidates_and_gap(x0, y0, x0 + c, y0 + c)
            if not segs or gap > 0:
                side = 1 if shapely.contains_xy(b.polygon, x0 + c / 2, y0 + c / 2) else -1
            if not segs:
                dist = b.margin_m * side
        refined = parent is None and (bool(crossing) or bool(segs))
        return GridCell(covering, crossing, dist, segs, refined, side, gap)

    def _zones_in(
        self, box: shapely.Polygon, parent: GridCell | None
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(zones covering the box, zones crossing it); a fine cell tests only the zones
        that cross its parent."""
        covering: tuple[int, ...] = ()
        ids: NDArray[np.intp] | None = None
        if parent is not None:
            covering = parent.covering
            ids = np.asarray(parent.crossing, dtype=np.intp)
            if len(ids):
                ids = ids[shapely.intersects(self.geoms[ids], box)]
        elif self.tree is not None:
            ids = np.sort(self.tree.query(box, predicate="intersects"))
        if ids is None or not len(ids):
            return covering, ()
        covered = shapely.covers(self.geoms[ids], box)
        if covered.any():
            covering = tuple(sorted(covering + tuple(ids[covered].tolist())))
        return covering, tuple(ids[~covered].tolist())

    def _build(self, i: float, j: float) -> GridCell:
        c = self.cell_m
        info = self._classify(i * c, j * c, c, None)
        if len(self.cells) >= MAX_CACHED:
            self.cells.clear()
        self.cells[i * KEY + j] = info
        return info

    def _build_fine(self, i: float, j: float, parent: GridCell) -> GridCell:
        f = self.fine_m
        info = self._classify(i * f, j * f, f, parent)
        if len(self.fine) >= MAX_CACHED:
            self.fine.clear()
        self.fine[i * KEY + j] = info
        return info

    def cell(self, x: float, y: float) -> GridCell:
        """The (coarse or fine) cell of (x, y), built if it is not known yet."""
        c = self.cell_m
        i, j = x // c, y // c
        info = self.cells.get(i * KEY + j)
        if info is None:
            info = self._build(i, j)
        if info.refined:
            c = self.fine_m
            i, j = x // c, y // c
            parent = info
            info = self.fine.get(i * KEY + j)
            if info is None:
                info = self._build_fine(i, j, parent)
        return info

    def zones_at(self, x: float, y: float, cell: GridCell) -> tuple[int, ...]:
        """Zone positions hit by (x, y) in ``cell``, sorted: those covering the cell and
        those crossing it that contain the point."""
        hits = cell.covering
        crossing = cell.crossing
        if crossing:
            geoms = self.geoms
            more = [i for i in crossing if _intersects_xy(geoms[i], x, y)]
            if more:
                hits = tuple(sorted(hits + tuple(more))) if hits else tuple(more)
        return hits

    def lookup(self, x: float, y: float) -> tuple[tuple[int, ...], float | None]:
        """Zone positions hit by (x, y), sorted, and the clamped signed border distance."""
        cell = self.cell(x, y)
        dist = cell.border_distance
        if dist is None and self.border is not None:
            dist = self.border.near(x, y, cell.border_segments, cell.border_side)
        return self.zones_at(x, y, cell), dist

    def locate(self, x: float, y: float) -> tuple[tuple[int, ...], float | None, GridCell]:
        """``lookup`` that defers the exact border distance: (zones hit, distance, cell).

        The distance is None where the border is near (within the margin) of the cell; then
        the cell's ``border_side`` and ``border_gap`` often settle a comparison, and
        ``exact(x, y, cell)`` gives the distance when a decision needs it.
        """
        cell = self.cell(x, y)
        return self.zones_at(x, y, cell), cell.border_distance, cell

    def exact(self, x: float, y: float, cell: GridCell) -> float:
        """The signed border distance (clamped to +-margin) at (x, y) in ``cell``."""
        d = cell.border_distance
        if d is not None:
            return d
        if self.border is None:
            raise ValueError("the bundle has no border")
        return self.border.near(x, y, cell.border_segments, cell.border_side)


class Plan:
    """Per-bundle constants for the engine and the caches derived from them."""

    def __init__(
        self,
        config: DashboardBundle,
        entries: tuple[IndexedZone, ...],
        zones: ZoneIndex,
        border: BorderIndex | None,
        projection: LocalProjection,
        gbfs: gbfs_mod.GbfsRules | None,
        timezone: ZoneInfo,
    ) -> None:
        s = config.safety
        self.version = config.version
        self.max_fix_age_s = s.max_fix_age_s
        self.max_accuracy_m = s.max_accuracy_m
        self.min_buffer_m = s.min_buffer_m
        self.dwell_s = s.dwell_s
        self.walking = s.walking_speed_kph
        self._read_speed_settings(config)
        self._read_border_settings(config)
        rs = config.rent_settings
        self.lock_battery = rs.min_battery_to_auto_lock if rs is not None else None
        self.credit_lock = bool(rs is not None and rs.credit_depletion_auto_lock and config.pricing)
        self.pricing: list[Pricing] = config.pricing
        self.timings: RentTimings | None = config.applied_rent_timings()  # trip_on_hold
        rt = self.timings
        # Below this trip age no time-based notification can fire (pause/hold checked apart).
        self.timers_from_s = (
            min(rt.trip_too_long_notifications, rt.vehicle_stolen) if rt else float("inf")
        )
        self.timezone = timezone
        self.lat0, self.lon0 = projection.lat0, projection.lon0
        self.kx, self.ky = projection.kx, projection.ky
        self.entries = entries
        self.speed_zones: list[SpeedZone] = config.speed_zones
        self.parkings: list[VirtualParking] = config.virtual_parkings
        self.parking_required = config.parking_required
        self._parking_tree: tuple[shapely.STRtree, NDArray[np.intp]] | None = None
        self.gbfs = gbfs
        self.grid = CellGrid(zones, border)
        self.has_border_geometry = border is not None
        self.bounds: list[list[float]] = (
            shapely.bounds(self.grid.geoms).tolist() if len(zones) else []
        )
        self._places: dict[tuple[int, ...], PlaceInfo] = {}
        # ``place`` for a set of zones met before, or None: the cache's own lookup (no Python
        # call on the engine's hot path).
        self.known_place: Callable[[tuple[int, ...]], PlaceInfo | None] = self._places.get
        self._resolved: dict[
            tuple[tuple[int, ...], str | None], tuple[gbfs_mod.Resolved, list[str]]
        ] = {}
        self._prices: dict[float, Pricing | None] = {}

    def _read_speed_settings(self, config: DashboardBundle) -> None:
        """The speed-mode speeds per model, the battery slow-down and the slow speed."""
        s, sp = config.safety, config.vehicle_speed_settings
        self.slow = min(s.slow_speed_kph, sp.default_low_speed) if sp else s.slow_speed_kph
        self.has_speed_settings = sp is not None
        self.mode_speed: dict[int | None, int] = {}
        self.default_mode_speed = sp.default_high_speed if sp else None
        self.auto_light: dict[int | None, bool] = {}
        for v in config.vehicle_settings:
            self.auto_light[v.model_id] = v.auto_light
            if sp is not None:
                self.mode_speed[v.model_id] = {
                    1: sp.default_low_speed,
                    2: sp.default_medium_speed,
                    3: sp.default_high_speed,
                }.get(v.speed_mode or 0, sp.default_high_speed)
        self.battery_slow_at = sp.min_battery_to_slow_down if sp else None
        self.battery_slow_speed = sp.battery_slow_down_speed if sp else None

    def _read_border_settings(self, config: DashboardBundle) -> None:
        """What leaving the border does (dashboard border settings; all off without one)."""
        bs = config.border.settings if config.border is not None else None
        self.has_border = bs is not None
        self.border_alert = bool(bs and bs.trigger_alert)
        self.border_notify = bool(bs and bs.notify_user)
        self.border_reduce = bool(bs and bs.reduce_vehicle_speed)
        self.border_sound = bool(bs and bs.play_vehicle_sound)
        self.border_lock = bool(bs and bs.lock_vehicle)

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        """A position in the bundle's metric frame (x east, y north)."""
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def parkings_near(self, x: float, y: float, distance: float) -> list[int]:
        """Positions of the virtual parkings within ``distance`` metres of (x, y), in file
        order (an STRtree of the parkings alone, built at the first use)."""
        if not self.parkings:
            return []
        t = self._parking_tree
        if t is None:
            at = [i for i, e in enumerate(self.entries) if e.kind == PARKING]
            pos = [self.entries[i].pos for i in at]
            t = self._parking_tree = (shapely.STRtree(self.grid.geoms[at]), np.asarray(pos))
        tree, positions = t
        idx = tree.query(point(x, y), predicate="dwithin", distance=distance)
        found: list[int] = positions[idx].tolist()
        return sorted(found)

    def place(self, hits: tuple[int, ...]) -> PlaceInfo:
        """Labels and speed limits of a set of zone positions (cached per set)."""
        info = self._places.get(hits)
        if info is not None:
            return info
        labels: list[str] = []
        limits: dict[str, int] = {}
        gbfs: list[int] = []
        parkings: list[int] = []
        timed = False
        for i in hits:
            e = self.entries[i]
            if e.kind == SPEED:
                z = self.speed_zones[e.pos]
                limits[f"speed_zone:{z.id}"] = z.max_speed
                labels.append(e.label)
            elif e.kind == PARKING:
                labels.append(e.label)
                parkings.append(e.pos)
            elif self.gbfs is not None:
                gbfs.append(e.pos)
                g = self.gbfs.zones[e.pos]
                timed = timed or g.start is not None or g.end is not None
        ids = tuple(self.parkings[i].id for i in parkings)
        plain = ZoneRules(limits, tuple(labels), None, None, tuple(parkings), ids)
        info = PlaceInfo(tuple(labels), limits, tuple(gbfs), tuple(parkings), timed, ids, plain)
        if len(self._places) >= MAX_CACHED:
            self._places.clear()
        self._places[hits] = info
        return info

    def resolve(
        self, info: PlaceInfo, vehicle_type: str | None, now: float
    ) -> tuple[gbfs_mod.Resolved, list[str]]:
        """The GBFS rules at a place; cached unless a zone there has a time window."""
        g = self.gbfs
        if g is None:
            raise ValueError("the bundle has no GBFS rules")
        if info.timed:
            return gbfs_mod.resolve(g.zones, g.global_rules, list(info.gbfs), vehicle_type, now)
        key = (info.gbfs, vehicle_type)
        r = self._resolved.get(key)
        if r is None:
            r = gbfs_mod.resolve(g.zones, g.global_rules, list(info.gbfs), vehicle_type, now)
            if len(self._resolved) >= MAX_CACHED:
                self._resolved.clear()
            self._resolved[key] = r
        return r

    def zone_rules(
        self, info: PlaceInfo, vehicle_type: str | None, on_trip: bool, now: float
    ) -> ZoneRules:
        """The place's limits and labels with the GBFS rules merged in, and ride_end /
        ride_through. Cached per (zones, vehicle type, on trip) unless a zone there has a
        time window; a bundle without GBFS rules gives the place's plain meaning."""
        if self.gbfs is None:
            return info.plain
        key = (vehicle_type, on_trip)
        r = None if info.timed else info.gbfs_cache.get(key)
        if r is not None:
            return r
        res, names = self.resolve(info, vehicle_type, now)
        limits = info.limits
        extra: dict[str, int] = {}
        if res.maximum_speed_kph is not None:
            extra["gbfs.maximum_speed_kph"] = res.maximum_speed_kph
        if res.ride_through_allowed is False and on_trip:
            extra["gbfs.ride_through_allowed"] = self.slow
        if extra:
            limits = {**limits, **extra}
        labels = info.labels + tuple(names) if names else info.labels
        out = ZoneRules(
            limits,
            labels,
            res.ride_end_allowed,
            res.ride_through_allowed,
            info.parkings,
            info.parking_ids,
        )
        if not info.timed:
            info.gbfs_cache[key] = out
        return out

    def price(self, started_at: float) -> Pricing | None:
        """The pricing window a trip started in (cached per start time)."""
        if started_at in self._prices:
            return self._prices[started_at]
        p = pricing_at(self.pricing, started_at, self.timezone)
        if len(self._prices) >= MAX_CACHED:
            self._prices.clear()
        self._prices[started_at] = p
        return p
