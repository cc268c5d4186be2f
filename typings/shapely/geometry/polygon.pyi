from collections.abc import Sequence

from shapely.geometry.base import BaseGeometry
from shapely.geometry.linestring import LineString

class LinearRing(LineString):
    @property
    def is_ccw(self) -> bool: ...

class Polygon(BaseGeometry):
    def __init__(
        self,
        shell: Sequence[Sequence[float]],
        holes: Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> None: ...
    @property
    def exterior(self) -> LinearRing: ...
    @property
    def interiors(self) -> Sequence[LinearRing]: ...
