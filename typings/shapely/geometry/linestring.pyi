from collections.abc import Sequence

from shapely.geometry.base import BaseGeometry
from shapely.geometry.point import Point

class LineString(BaseGeometry):
    def __init__(self, coordinates: Sequence[tuple[float, float]]) -> None: ...
    def interpolate(self, distance: float) -> Point: ...
    @property
    def coords(self) -> Sequence[tuple[float, float]]: ...
