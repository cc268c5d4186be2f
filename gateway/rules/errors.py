"""Problems found in a rule bundle (every one is reported, with where it is and what is wrong)
and the named warnings of what a bundle was accepted with."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a bundle; ``location`` is a dotted path, e.g. ``speed_zones.2.max_speed``."""

    location: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "message": self.message}


class BundleError(ValueError):
    """A bundle was refused; ``problems`` lists every problem, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "; ".join(f"{p.location}: {p.message}" for p in self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} problem(s) in rule bundle: {lines}{more}")

    def as_dict(self) -> dict[str, object]:
        return {"ok": False, "problems": [p.as_dict() for p in self.problems]}


def pydantic_problems(exc: object, prefix: str = "") -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into problems with dotted locations."""
    out: list[Problem] = []
    for err in exc.errors():  # type: ignore[attr-defined]
        loc = ".".join(str(part) for part in err["loc"])
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        out.append(Problem(loc or "$", err["msg"]))
    return out


class WarningCode(StrEnum):
    """Stable names of what a bundle may be accepted with; see docs/rules.md, "GBFS"."""

    NESTED_SHELLS = "gbfs-nested-shells"
    OVERLAPPING_POLYGONS = "gbfs-overlapping-polygons"
    NULL_GEOMETRY = "gbfs-null-geometry"
    EMPTY_GEOMETRY = "gbfs-empty-geometry"
    TIMESTAMP_OUT_OF_RANGE = "gbfs-timestamp-out-of-range"
    TIMESTAMP_OTHER_VERSION = "gbfs-timestamp-other-version"
    EMPTY_WINDOW = "gbfs-empty-window"
    TYPE_KEY_OTHER_VERSION = "gbfs-type-key-other-version"
    UNKNOWN_FIELD = "gbfs-unknown-field"
    RELEASE_CANDIDATE = "gbfs-release-candidate"


@dataclass(frozen=True, slots=True)
class BundleWarning:
    """Something a bundle was accepted with: what the gateway read and every place it did so.

    One warning per code and message, so a feed that spells one key the other version's way in
    500 rules gives one warning with 500 locations, not 500 lines.
    """

    code: WarningCode
    message: str
    locations: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"code": str(self.code), "message": self.message, "locations": list(self.locations)}


class Warnings:
    """Collects warnings while a bundle loads, grouped by (code, message) in order found."""

    __slots__ = ("_found", "_prefix")

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._found: dict[tuple[WarningCode, str], list[str]] = {}

    def add(self, code: WarningCode, location: str, message: str) -> None:
        loc = f"{self._prefix}.{location}" if self._prefix and location else location
        self._found.setdefault((code, message), []).append(loc or self._prefix or "$")

    def result(self) -> tuple[BundleWarning, ...]:
        return tuple(BundleWarning(c, m, tuple(locs)) for (c, m), locs in self._found.items())
