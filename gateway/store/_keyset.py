"""Keyset pages: the dashboard's ``page_size`` / ``last_primary_key`` convention, in SQL.

Why keyset rather than OFFSET: a page starts after the last row the client saw, so rows added
meanwhile neither repeat nor push others out of reach, and a deep page costs what the first
does. With a custom sort a page starts after that row's *sort value and id* (the value looked
up by id), so a walk still visits every row exactly once when many rows share a sort value.
Sort expressions never yield NULL (a nullable column is wrapped in ``COALESCE`` with
:data:`LAST` or :data:`FIRST`), so one comparison places every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dockgate.gateway.store._db import BaseDatabase, StoreError
from dockgate.gateway.store._sql import every, fetch_one, marks

T = TypeVar("T")
ASC, DESC = "ASC", "DESC"
#: "No value" after every value, and before: the largest finite doubles (an infinite literal
#: is SQLite's alone; PostgreSQL refuses to make one of ``9e999``).
LAST = "1e308"
FIRST = "-1e308"


class PageAnchorMissing(StoreError):
    """``last_primary_key`` names no row, so a custom-sorted page has no place to start."""


@dataclass(frozen=True, slots=True)
class Keyset:
    """Where a page starts and how its rows are ordered (directions ``ASC`` or ``DESC``)."""

    page_size: int = 20
    last_primary_key: int | None = None
    primary_key_dir: str = DESC
    sort_dir: str = DESC


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of rows, and how many rows the filters match across every page."""

    rows: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class Sort:
    """An SQL expression to order by (never NULL) and the arguments of its ``?``."""

    expression: str
    args: tuple[Any, ...] = ()


def direction(text: str) -> str:
    """``ASC`` or ``DESC`` (anything but ``asc`` reads as ``DESC``): never raw text in SQL."""
    return ASC if text.upper() == ASC else DESC


def _after(direction_: str) -> str:
    return ">" if direction_ == ASC else "<"


def ilike(column: str) -> str:
    """``column`` matches the ``LIKE`` pattern of the argument ``like(text)``, in any case
    (``lower`` on both sides: PostgreSQL's ``LIKE`` minds case, SQLite's ASCII-only one not)."""
    return f"lower({column}) LIKE lower(?) ESCAPE '\\'"


def like(text: str) -> str:
    """The ``LIKE`` pattern of "contains ``text``" (``%``, ``_`` and ``\\`` match themselves)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(slots=True)
class Filters:
    """A query's WHERE clauses and their arguments; a filter given ``None`` adds nothing."""

    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, clause: str, *args: Any) -> None:
        self.clauses.append(clause)
        self.args.extend(args)

    def compare(self, column: str, operator: str, value: object) -> None:
        """``column <operator> value`` when a value is given."""
        if value is not None:
            self.add(f"{column} {operator} ?", value)

    def between(self, column: str, low: object, high: object) -> None:
        """``low <= column <= high``, each bound only when given."""
        self.compare(column, ">=", low)
        self.compare(column, "<=", high)

    def one_of(self, column: str, values: Sequence[object]) -> None:
        """``column IN (values)`` when there are values (none: no restriction)."""
        if values:
            self.add(f"{column} IN ({marks(len(values))})", *values)

    def contains(self, column: str, text: str | None) -> None:
        """``column`` contains ``text`` (ASCII letters in any case; ``%`` and ``_`` literal)."""
        if text is not None:
            self.add(ilike(column), like(text))

    def where(self) -> str:
        return f" WHERE {' AND '.join(self.clauses)}" if self.clauses else ""


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """What a page reads: the row maker, its SELECT list, the FROM (joins included) and the
    primary key column the keyset walks."""

    make: Callable[..., T]
    select: str
    source: str
    id_column: str

    def page(
        self, db: BaseDatabase, filters: Filters, keyset: Keyset, sort: Sort | None = None
    ) -> Page[T]:
        """The page after ``keyset.last_primary_key`` and the total the filters match."""
        return Page(self.rows(db, filters, keyset, sort), self.count(db, filters))

    def rows(
        self, db: BaseDatabase, filters: Filters, keyset: Keyset, sort: Sort | None = None
    ) -> list[T]:
        """At most ``keyset.page_size`` rows after ``keyset.last_primary_key``, in order."""
        where = Filters(list(filters.clauses), list(filters.args))
        if keyset.last_primary_key is not None:
            self._start_after(db, where, keyset, sort)
        order = f"{self.id_column} {direction(keyset.primary_key_dir)}"
        order_args: tuple[Any, ...] = ()
        if sort is not None:
            order = f"{sort.expression} {direction(keyset.sort_dir)}, {order}"
            order_args = sort.args
        sql = f"SELECT {self.select} FROM {self.source}{where.where()} ORDER BY {order} LIMIT ?"
        return every(db, self.make, sql, [*where.args, *order_args, keyset.page_size])

    def count(self, db: BaseDatabase, filters: Filters) -> int:
        row = fetch_one(db, f"SELECT count(*) FROM {self.source}{filters.where()}", filters.args)
        return int(row[0]) if row is not None else 0

    def _start_after(
        self, db: BaseDatabase, where: Filters, keyset: Keyset, sort: Sort | None
    ) -> None:
        """Add the clause that starts the page after the row ``last_primary_key`` names."""
        last = keyset.last_primary_key
        after_id = f"{self.id_column} {_after(direction(keyset.primary_key_dir))} ?"
        if sort is None:
            where.add(after_id, last)
            return
        sql = f"SELECT {sort.expression} FROM {self.source} WHERE {self.id_column} = ?"
        anchor = fetch_one(db, sql, [*sort.args, last])
        if anchor is None:
            raise PageAnchorMissing(f"last_primary_key {last} names no row to continue after")
        s, op = sort.expression, _after(direction(keyset.sort_dir))
        where.add(
            f"({s} {op} ? OR ({s} = ? AND {after_id}))",
            *sort.args,
            anchor[0],
            *sort.args,
            anchor[0],
            last,
        )
