from collections.abc import Sequence

from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import Polygon

class MultiPolygon(BaseGeometry):
    def __init__(self, polygons: Sequence[Polygon]) -> None: ...
