"""A bundle compiled for the engine: constants taken once at load, and cached lookups.

Everything here is derived from a checked bundle and never changes while the bundle runs,
so the engine's hot path reads attributes instead of walking pydantic models. Two caches
fill as vehicles are evaluated (bounded, and dropped with the bundle on a swap):

* ``CellGrid``: the plane cut into square cells; a cell remembers which zones cover it
  whole, which cross it (only those need an exact point test) and whether the border is
  farther than the hysteresis margin from every point in it (then no distance is computed).
* the place of a set of zones: its labels and speed limits, keyed by the zone positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from dockgate.gateway.rules import gbfs as gbfs_mod
from dockgate.gateway.rules.geometry import BorderIndex, ZoneIndex

SPEED, PARKING, GBFS = 0, 1, 2
MAX_CACHED = 1 << 18
# A cell's key is ``i * KEY + j`` for its column i and row j (``x // size``, ``y // size``).
# Usable fixes are within +-180 degrees of longitude and +-90 of latitude of the origin, at
# most ~4.1e7 m, so with cells of 1 m or more |j| < 2**26 < KEY / 2 and |i * KEY| < 2**53:
# every key is an integer-valued float that no other cell shares.
KEY = float(1 << 27)
_intersects_xy = shapely.lib.intersects_xy  # the ufunc itself: no wrapper per point
_points, _NAN_ALLOW = shapely.lib.points, np.intc(0)


def point(x: float, y: float) -> Any:
    """A shapely point, made by the ufunc (half the cost of ``shapely.Point(x, y)``)."""
    return _points(np.array((x, y)), _NAN_ALLOW)


@dataclass(frozen=True, slots=True)
class IndexedZone:
    """One entry of the combined zone index: its kind, its position within that kind, a label."""

    kind: int
    pos: int
    label: str


@dataclass(frozen=True, slots=True)
class PlaceInfo:
    """What a set of zones means before the vehicle type and time are known."""

    labels: tuple[str, ...]
    limits: dict[str, int]
    gbfs: tuple[int, ...]
    parkings: tuple[int, ...]
    timed: bool
    parking_ids: tuple[int, ...] = ()
    gbfs_cache: dict = field(default_factory=dict, compare=False)


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
        self.geoms = np.asarray(zones.geoms, dtype=object)
        self.border = border
        self.cell_m = cell_m
        self.fine_m = cell_m / 4
        # Cells are keyed by one float, ``(x // size) * KEY + (y // size)``: cheaper to make
        # and hash than a tuple, and computed for a whole batch at once by ``evaluate_many``.
        self.cells: dict[float, tuple] = {}
        self.fine: dict[float, tuple] = {}

    def _classify(
        self, x0: float, y0: float, c: float, ids: np.ndarray | None, inside: tuple[int, ...]
    ) -> tuple:
        box = shapely.box(x0, y0, x0 + c, y0 + c)
        edge: tuple[int, ...] = ()
        if ids is None and self.tree is not None:
            ids = np.sort(self.tree.query(box, predicate="intersects"))
        elif ids is not None and len(ids):
            ids = ids[shapely.intersects(self.geoms[ids], box)]
        if ids is not None and len(ids):
            covered = shapely.covers(self.geoms[ids], box)
            if covered.any():
                inside = tuple(sorted(inside + tuple(ids[covered].tolist())))
            edge = tuple(ids[~covered].tolist())
        dist: float | None = None
        segs: tuple = ()
        side, gap = 0, 0.0
        b = self.border
        if b is not None:
            segs, gap = b.candidates_and_gap(x0, y0, x0 + c, y0 + c)
            if not segs or gap > 0:
                side = 1 if shapely.contains_xy(b.polygon, x0 + c / 2, y0 + c / 2) else -1
            if not segs:
                dist = b.margin_m * side
        return (inside, edge, dist, segs, bool(edge) or bool(segs), side, gap)

    def _build(self, i: float, j: float) -> tuple:
        c = self.cell_m
        info = self._classify(i * c, j * c, c, None, ())
        if len(self.cells) >= MAX_CACHED:
            self.cells.clear()
        self.cells[i * KEY + j] = info
        return info

    def _build_fine(self, i: float, j: float, parent: tuple) -> tuple:
        f = self.fine_m
        ids = np.asarray(parent[1], dtype=np.intp)
        info = self._classify(i * f, j * f, f, ids, parent[0])
        if parent[2] is not None:  # the parent's border distance holds here too
            info = (info[0], info[1], parent[2], (), bool(info[1]), parent[5], parent[6])
        if len(self.fine) >= MAX_CACHED:
            self.fine.clear()
        self.fine[i * KEY + j] = info
        return info

    def cell(self, x: float, y: float) -> tuple:
        """The (coarse or fine) cell of (x, y), built if it is not known yet."""
        c = self.cell_m
        i, j = x // c, y // c
        info = self.cells.get(i * KEY + j)
        if info is None:
            info = self._build(i, j)
        if info[4]:
            c = self.fine_m
            i, j = x // c, y // c
            parent = info
            info = self.fine.get(i * KEY + j)
            if info is None:
                info = self._build_fine(i, j, parent)
        return info

    def lookup(self, x: float, y: float) -> tuple[tuple[int, ...], float | None]:
        """Zone positions hit by (x, y), sorted, and the clamped signed border distance."""
        info = self.cell(x, y)
        hits, edge, dist, segs = info[:4]
        if edge:
            geoms = self.geoms
            more = [i for i in edge if _intersects_xy(geoms[i], x, y)]
            if more:
                hits = tuple(sorted(hits + tuple(more))) if hits else tuple(more)
        if dist is None and self.border is not None:
            dist = self.border.near(x, y, segs, info[5])
        return hits, dist

    def locate(self, x: float, y: float) -> tuple[tuple[int, ...], float | None, tuple]:
        """``lookup`` that defers the exact border distance: (zones hit, distance, cell).

        The distance is None where the border is near (within the margin) of the cell; then
        the cell's ``side`` (``cell[5]``: +1 inside, -1 outside, 0 crossed) and ``gap``
        (``cell[6]``: every point is at least this far from the border) often settle a
        comparison, and ``exact(x, y, cell)`` gives the distance when a decision needs it.
        """
        c = self.cell_m
        info = self.cells.get((x // c) * KEY + (y // c))
        if info is None or info[4]:
            info = self.cell(x, y)
        hits = info[0]
        edge = info[1]
        if edge:
            geoms = self.geoms
            more = [i for i in edge if _intersects_xy(geoms[i], x, y)]
            if more:
                hits = tuple(sorted(hits + tuple(more))) if hits else tuple(more)
        return hits, info[2], info

    def exact(self, x: float, y: float, cell: tuple) -> float:
        """The signed border distance (clamped to +-margin) at (x, y) in ``cell``."""
        d = cell[2]
        if d is not None:
            return d  # type: ignore[no-any-return]
        return self.border.near(x, y, cell[3], cell[5])  # type: ignore[union-attr]


class Plan:
    """Per-bundle constants for the engine and the caches derived from them."""

    def __init__(
        self,
        config: Any,
        entries: tuple[IndexedZone, ...],
        zones: ZoneIndex,
        border: BorderIndex | None,
        projection: Any,
        gbfs: gbfs_mod.GbfsRules | None,
        timezone: Any,
    ) -> None:
        s = config.safety
        self.version = config.version
        self.max_fix_age_s = s.max_fix_age_s
        self.max_accuracy_m = s.max_accuracy_m
        self.min_buffer_m = s.min_buffer_m
        self.dwell_s = s.dwell_s
        self.walking = s.walking_speed_kph
        sp = config.vehicle_speed_settings
        self.slow = min(s.slow_speed_kph, sp.default_low_speed) if sp else s.slow_speed_kph
        self.has_speed_settings = sp is not None
        self.mode_speed: dict[int, int] = {}
        self.default_mode_speed = sp.default_high_speed if sp else None
        self.auto_light: dict[int, bool] = {}
        for v in config.vehicle_settings:
            self.auto_light[v.model_id] = v.auto_light
            if sp is not None:
                self.mode_speed[v.model_id] = {
                    1: sp.default_low_speed,
                    2: sp.default_medium_speed,
                    3: sp.default_high_speed,
                }.get(v.speed_mode, sp.default_high_speed)
        self.battery_slow_at = sp.min_battery_to_slow_down if sp else None
        self.battery_slow_speed = sp.battery_slow_down_speed if sp else None
        bs = config.border.settings if config.border is not None else None
        self.has_border = bs is not None
        self.border_alert = bool(bs and bs.trigger_alert)
        self.border_notify = bool(bs and bs.notify_user)
        self.border_reduce = bool(bs and bs.reduce_vehicle_speed)
        self.border_sound = bool(bs and bs.play_vehicle_sound)
        self.border_lock = bool(bs and bs.lock_vehicle)
        rs = config.rent_settings
        self.lock_battery = rs.min_battery_to_auto_lock if rs is not None else None
        self.credit_lock = bool(rs is not None and rs.credit_depletion_auto_lock and config.pricing)
        self.pricing = config.pricing
        self.timings = rt = config.rent_timings
        # Below this trip age no time-based notification can fire (pause/hold checked apart).
        self.timers_from_s = (
            min(rt.trip_too_long_notifications, rt.vehicle_stolen) if rt else float("inf")
        )
        self.timezone = timezone
        self.lat0, self.lon0 = projection.lat0, projection.lon0
        self.kx, self.ky = projection.kx, projection.ky
        self.entries = entries
        self.speed_zones = config.speed_zones
        self.parkings = config.virtual_parkings
        self.parking_required = config.parking_required
        self._parking_tree: Any = None
        self.gbfs = gbfs
        self.grid = CellGrid(zones, border)
        self.has_border_geometry = border is not None
        self.bounds = shapely.bounds(self.grid.geoms).tolist() if len(zones) else []
        self._places: dict[tuple[int, ...], PlaceInfo] = {}
        self._resolved: dict[tuple, tuple[gbfs_mod.Resolved, list[str]]] = {}
        self._prices: dict[float, Any] = {}

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
        tree, pos = t
        idx = tree.query(point(x, y), predicate="dwithin", distance=distance)
        return sorted(pos[idx].tolist())

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
            else:
                gbfs.append(e.pos)
                z = self.gbfs.zones[e.pos]  # type: ignore[union-attr]
                timed = timed or z.start is not None or z.end is not None
        ids = tuple(self.parkings[i].id for i in parkings)
        info = PlaceInfo(tuple(labels), limits, tuple(gbfs), tuple(parkings), timed, ids)
        if len(self._places) >= MAX_CACHED:
            self._places.clear()
        self._places[hits] = info
        return info

    def resolve(
        self, info: PlaceInfo, vehicle_type: str | None, now: float
    ) -> tuple[gbfs_mod.Resolved, list[str]]:
        """The GBFS rules at a place; cached unless a zone there has a time window."""
        g = self.gbfs
        assert g is not None
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

    def gbfs_place(
        self, info: PlaceInfo, vehicle_type: str | None, on_trip: bool, now: float
    ) -> tuple[dict[str, int], tuple[str, ...], bool | None, bool | None]:
        """Place limits and labels with the GBFS rules merged in, and ride_end/ride_through.

        Cached per (zones, vehicle type, on trip) unless a zone there has a time window.
        """
        key = (vehicle_type, on_trip)
        r = None if info.timed else info.gbfs_cache.get(key)
        if r is not None:
            return r  # type: ignore[no-any-return]
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
        out = (limits, labels, res.ride_end_allowed, res.ride_through_allowed)
        if not info.timed:
            info.gbfs_cache[key] = out
        return out

    def price(self, started_at: float) -> Any:
        """The pricing window a trip started in (cached per start time)."""
        from dockgate.gateway.rules.pricing import pricing_at

        p = self._prices.get(started_at, self)
        if p is self:
            p = pricing_at(self.pricing, started_at, self.timezone)
            if len(self._prices) >= MAX_CACHED:
                self._prices.clear()
            self._prices[started_at] = p
        return p
