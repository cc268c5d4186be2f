"""Problems found in a rule bundle: every one is reported, with where it is and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


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
