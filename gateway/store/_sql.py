"""Small read helpers the aggregates share: rows into dataclasses, existence checks, id chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from dockgate.gateway.store._db import BaseDatabase, Cursor, NotFound, Row

T = TypeVar("T")
CHUNK = 500  # ids per ``IN (...)`` query: well below SQLite's variable limit


def fetch_one(db: BaseDatabase, sql: str, args: Iterable[Any] = ()) -> Row | None:
    with db.lock:
        row: Row | None = db.conn.execute(sql, tuple(args)).fetchone()
        return row


def fetch_all(db: BaseDatabase, sql: str, args: Iterable[Any] = ()) -> list[Row]:
    with db.lock:
        return db.conn.execute(sql, tuple(args)).fetchall()


def one(db: BaseDatabase, make: Callable[..., T], sql: str, args: Iterable[Any] = ()) -> T | None:
    """The first row of ``sql`` made into ``make(*columns)``, or None."""
    row = fetch_one(db, sql, args)
    return None if row is None else make(*row)


def every(db: BaseDatabase, make: Callable[..., T], sql: str, args: Iterable[Any] = ()) -> list[T]:
    """Every row of ``sql``, each made into ``make(*columns)``."""
    return [make(*row) for row in fetch_all(db, sql, args)]


def must(row: T | None, what: str) -> T:
    """``row``, or ``NotFound`` naming ``what`` (``"vehicle 7"``)."""
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def require(db: BaseDatabase, table: str, id_: int, what: str) -> None:
    """``NotFound`` unless ``table`` has a row with this id (``what``: ``"station"``)."""
    if fetch_one(db, f"SELECT 1 FROM {table} WHERE id = ?", (id_,)) is None:
        raise NotFound(f"{what} {id_} not found")


def exists(db: BaseDatabase, table: str, id_: int) -> bool:
    return fetch_one(db, f"SELECT 1 FROM {table} WHERE id = ?", (id_,)) is not None


def marks(count: int) -> str:
    """``?,?,?`` for ``count`` values."""
    return ",".join("?" * count)


def chunked(values: Iterable[T]) -> Iterator[list[T]]:
    """Distinct ``values`` (first seen order) in lists of at most ``CHUNK``."""
    wanted = list(dict.fromkeys(values))
    for i in range(0, len(wanted), CHUNK):
        yield wanted[i : i + CHUNK]


def last_id(cursor: Cursor) -> int:
    """The id an ``INSERT ... RETURNING id`` gave (both engines: no ``lastrowid``)."""
    row = cursor.fetchone()
    if row is None:  # pragma: no cover - only after a statement that inserted nothing
        raise NotFound("the insert gave no row id")
    return int(row[0])


def next_id(table: str) -> str:
    """SQL for an id given or else the next one of ``table`` (``COALESCE(?, max(id) + 1)``,
    what SQLite gives an ``INTEGER PRIMARY KEY`` left NULL), written for both engines."""
    return f"COALESCE(?, (SELECT COALESCE(max(id), 0) + 1 FROM {table}))"
