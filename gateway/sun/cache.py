"""Small bounded caches for objects derived from key material (contexts, derived keys)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict that builds missing values and forgets the oldest entry when full.

    Insertion-ordered eviction is enough here: hot keys are re-inserted after eviction at
    the cost of one rebuild, and a lookup stays a single dict access.
    """

    __slots__ = ("_build", "_data", "_max")

    def __init__(self, build: Callable[[K], V], max_entries: int = 4096) -> None:
        self._build = build
        self._data: dict[K, V] = {}
        self._max = max_entries

    def get(self, key: K) -> V:
        """The value for ``key``, built on first use."""
        try:
            return self._data[key]
        except KeyError:
            pass
        value = self._build(key)
        data = self._data
        if len(data) >= self._max:
            del data[next(iter(data))]
        data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:  # never show cached key material
        return f"BoundedCache(entries={len(self._data)}, max={self._max})"
