from collections.abc import Sequence

from shapely.geometry.base import BaseGeometry

class Polygon(BaseGeometry):
    def __init__(
        self,
        shell: Sequence[Sequence[float]],
        holes: Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> None: ...
