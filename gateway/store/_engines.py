"""The one place an engine is chosen: a ``postgresql://`` URL opens PostgreSQL, anything
else is the path of an SQLite file (the embedded default)."""

from __future__ import annotations

from pathlib import Path

from dockgate.gateway.store._db import BaseDatabase, Database
from dockgate.gateway.store._url import is_postgres_url


def open_database(target: str | Path, *, data_dir: str | Path | None = None) -> BaseDatabase:
    """The database ``target`` names. ``data_dir``: where a PostgreSQL store's local state
    (the KEK's default file) lives; an SQLite file keeps it in its own directory."""
    if is_postgres_url(target):
        # psycopg is imported only by a gateway that uses PostgreSQL (it costs ~0.1 s).
        from dockgate.gateway.store._postgres import PostgresDatabase

        return PostgresDatabase(str(target), data_dir=data_dir)
    return Database(target)
