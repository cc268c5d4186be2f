"""Routes through a small demo city, and where along one a scooter is after riding d metres.

Geometry is done in a local metric frame (equirectangular around the city centre, good to a
few centimetres over a few kilometres) with shapely, so a route is a LineString in metres and
"where am I after d metres" is ``LineString.interpolate``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from shapely.geometry import LineString, Point

CENTRE: tuple[float, float] = (45.4642, 9.19)
"""The demo city's centre (lat, lon)."""

_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Metres east/north of an origin, and back to (lat, lon)."""

    lat0: float = CENTRE[0]
    lon0: float = CENTRE[1]

    @property
    def _m_per_deg_lon(self) -> float:
        return _M_PER_DEG_LAT * math.cos(math.radians(self.lat0))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self._m_per_deg_lon, (lat - self.lat0) * _M_PER_DEG_LAT)

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return (self.lat0 + y / _M_PER_DEG_LAT, self.lon0 + x / self._m_per_deg_lon)


FRAME = LocalFrame()


@dataclass(frozen=True, slots=True)
class Fix:
    """A position on a route: coordinates and heading (degrees clockwise from north)."""

    lat: float
    lon: float
    heading: float


@dataclass(slots=True)
class Route:
    """A polyline of (lat, lon) waypoints; a looped route starts again after its end."""

    name: str
    points: Sequence[tuple[float, float]]
    loop: bool = False
    _line: LineString = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError(f"route {self.name!r} needs at least two points")
        xy = [FRAME.to_xy(lat, lon) for lat, lon in self.points]
        if self.loop and xy[0] != xy[-1]:
            xy.append(xy[0])
        self._line = LineString(xy)
        if self._line.length <= 0:
            raise ValueError(f"route {self.name!r} has zero length")

    @property
    def length_m(self) -> float:
        return float(self._line.length)

    def finished(self, distance_m: float) -> bool:
        """True once a non-looped route has been ridden to its end."""
        return not self.loop and distance_m >= self.length_m

    def fix_at(self, distance_m: float) -> Fix:
        """Where a rider is after ``distance_m`` metres (clamped or wrapped at the end)."""
        length = self.length_m
        d = distance_m % length if self.loop else min(max(distance_m, 0.0), length)
        here = self._line.interpolate(d)
        ahead = self._line.interpolate(min(d + 1.0, length))
        if ahead.equals(here):
            behind = self._line.interpolate(max(d - 1.0, 0.0))
            dx, dy = here.x - behind.x, here.y - behind.y
        else:
            dx, dy = ahead.x - here.x, ahead.y - here.y
        lat, lon = FRAME.to_latlon(here.x, here.y)
        return Fix(lat, lon, math.degrees(math.atan2(dx, dy)) % 360.0)

    def distance_to(self, lat: float, lon: float) -> float:
        """Metres from a point to the route (for tests and scripted stops)."""
        return float(self._line.distance(Point(*FRAME.to_xy(lat, lon))))


def _ring(radius_m: float, n: int, phase: float = 0.0) -> list[tuple[float, float]]:
    return [
        FRAME.to_latlon(
            radius_m * math.sin(phase + 2 * math.pi * i / n),
            radius_m * math.cos(phase + 2 * math.pi * i / n),
        )
        for i in range(n)
    ]


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres away from (lat, lon)."""
    x, y = FRAME.to_xy(lat, lon)
    return FRAME.to_latlon(x + east_m, y + north_m)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lat, lon) points of the demo city."""
    (ax, ay), (bx, by) = FRAME.to_xy(*a), FRAME.to_xy(*b)
    return math.hypot(bx - ax, by - ay)


def default_routes() -> list[Route]:
    """The demo city's routes: an inner ring, an outer ring, two crossings and one excursion.

    The crossings pass through the centre (the example bundle's slow zone sits there) and the
    excursion heads 6 km east, beyond the network border, so the demo shows both rules.
    """
    c = CENTRE
    return [
        Route("inner-ring", _ring(700.0, 16), loop=True),
        Route("outer-ring", _ring(1800.0, 24, phase=0.1), loop=True),
        Route(
            "north-south",
            [
                offset(*c, 150, 2500),
                offset(*c, 40, 300),
                offset(*c, -40, -300),
                offset(*c, -150, -2500),
            ],
        ),
        Route(
            "west-east",
            [
                offset(*c, -2500, -100),
                offset(*c, -300, 20),
                offset(*c, 300, -20),
                offset(*c, 2500, 100),
            ],
        ),
        Route(
            "excursion-east",
            [
                offset(*c, 500, 0),
                offset(*c, 2500, 400),
                offset(*c, 4500, 600),
                offset(*c, 6500, 500),
            ],
        ),
    ]


def random_route(
    rng: random.Random,
    start: tuple[float, float] = CENTRE,
    legs: int = 6,
    leg_m: tuple[float, float] = (150.0, 600.0),
    radius_m: float = 2500.0,
    name: str = "random",
) -> Route:
    """A random walk of ``legs`` straight legs from ``start`` that stays within ``radius_m``."""
    points = [start]
    x, y = FRAME.to_xy(*start)
    heading = rng.uniform(0, 2 * math.pi)
    for _ in range(legs):
        heading += rng.uniform(-math.pi / 2, math.pi / 2)
        step = rng.uniform(*leg_m)
        nx, ny = x + step * math.sin(heading), y + step * math.cos(heading)
        if math.hypot(nx, ny) > radius_m:  # turn back towards the centre
            heading = math.atan2(-x, -y)
            nx, ny = x + step * math.sin(heading), y + step * math.cos(heading)
        x, y = nx, ny
        points.append(FRAME.to_latlon(x, y))
    return Route(name, points)


def station_sites(count: int, radius_m: float = 1200.0) -> list[tuple[float, float]]:
    """Where ``count`` stations stand: on rings around the centre, 8 per ring at most."""
    sites: list[tuple[float, float]] = []
    ring = 0
    while len(sites) < count:
        n = min(8, count - len(sites))
        sites.extend(_ring(radius_m * (0.5 + 0.5 * ring), n, phase=0.3 * ring))
        ring += 1
    return sites
