"""The database a test opens, on the engine the run chose: SQLite files or PostgreSQL.

``--store=sqlite`` (the default) or ``--store=postgresql`` picks the engine of the whole run;
a test marked ``engines(...)`` runs once on each it names (``tests/plugins/postgres.py``).
Tests open
their databases here instead of ``Database(path)``, so that every one of them can run on
either engine:

- ``open_test_database(tmp_path / "x.db")``: the SQLite file at that path, or a fresh
  PostgreSQL database standing for it (the same one each time the test opens that path, so a
  reopen is a restart); its KEK, as an SQLite file's, lives in the path's directory.
- ``open_test_store(path, **kwargs)``: a ``Store`` on it (``Store.open`` for tests).
- ``database_target(path)``: what a subprocess or a daemon's ``[store] url`` opens for it
  (the path itself, or the database's URL).

The PostgreSQL databases a test made are dropped when it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockgate.gateway.store import BaseDatabase, Store, open_database
from dockgate.sim.services import ServiceError
from dockgate.sim.services.postgres import PostgresServer

ENGINES = ("sqlite", "postgresql")


class TestDatabases:
    """The databases of one test on one engine (``server``: PostgreSQL's, if that is it)."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, engine: str, server: PostgresServer | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown store engine {engine!r}")
        if engine == "postgresql" and server is None:
            raise ValueError("the postgresql engine needs a server")
        self.engine = engine
        self.server = server
        self._names: dict[Path, str] = {}
        self._opened: list[BaseDatabase] = []

    def target(self, path: str | Path) -> str:
        """What opens the database the test keeps at ``path``: the path, or a URL."""
        if self.server is None:
            return str(path)
        key = Path(path).resolve()
        if key not in self._names:
            self._names[key] = self.server.create_database("test")
        return self.server.url(self._names[key])

    def open(self, path: str | Path) -> BaseDatabase:
        db = open_database(self.target(path), data_dir=Path(path).resolve().parent)
        self._opened.append(db)
        return db

    def close(self) -> None:
        """Close what the test left open, drop the PostgreSQL databases it made."""
        for db in self._opened:
            with contextlib.suppress(Exception):
                db.close()
        self._opened.clear()
        if self.server is not None:
            for name in self._names.values():
                self.server.drop_database(name)
        self._names.clear()


_current = TestDatabases("sqlite")


def use(databases: TestDatabases | None) -> None:
    """The plugin's hook: the current test's databases (None: SQLite, outside a test)."""
    global _current
    _current = databases or TestDatabases("sqlite")


def current() -> TestDatabases:
    return _current


def engine() -> str:
    """``sqlite`` or ``postgresql``: the engine the current test runs on."""
    return _current.engine


def open_test_database(path: str | Path) -> BaseDatabase:
    return _current.open(path)


def open_test_store(path: str | Path, **kwargs: Any) -> Store:
    return Store(_current.open(path), **kwargs)


def database_target(path: str | Path) -> str:
    return _current.target(path)


def running_postgres(*, durable: bool) -> Iterator[PostgresServer]:
    """A started PostgreSQL for a fixture to yield, removed after; a server that cannot
    start fails the test (it does not skip it)."""
    server = PostgresServer(durable=durable)
    try:
        server.start()
    except ServiceError as exc:
        server.cleanup()
        pytest.fail(f"cannot start PostgreSQL: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()
