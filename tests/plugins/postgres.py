"""pytest set-up for the store's two engines: a real PostgreSQL, and which engine a test uses.

- ``--store=sqlite|postgresql`` (default ``sqlite``): the engine of every test that opens its
  database through ``tests.support.stores`` (``open_test_database``, ``open_test_store``) and
  of the system tests' daemons (their ``[store] url``).
- ``@pytest.mark.engines("sqlite", "postgresql")`` (or a module's ``pytestmark``): the test
  runs once on each engine named, whatever ``--store`` says (ids ``[sqlite]``,
  ``[postgresql]``); a test's own mark overrides its module's (``engines("sqlite")``: a test
  of what only an SQLite file has).
- ``postgres_server``: one PostgreSQL for the session (``initdb`` and ``pg_ctl`` as the
  ``postgres`` user in a temporary directory, a free loopback port, ``fsync`` off), started
  when the first test needs it and stopped at the end. Missing binaries fail the test, they
  never skip it.
- ``store_engine``: the current test's engine; ``databases`` (autouse): its
  :class:`tests.support.stores.TestDatabases`, whose PostgreSQL databases (each a fresh one
  from ``template0``) are dropped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dockgate.sim.services.postgres import PostgresServer
from tests.support import stores
from tests.support.stores import ENGINES, TestDatabases, running_postgres


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=ENGINES,
        default="sqlite",
        help="the store engine tests run on (default sqlite); tests marked engines(...) run"
        " on the engines they name",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines(*names): run the test once on each store engine named"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("engines")
    if mark is None or "store_engine" not in metafunc.fixturenames:
        return
    unknown = set(mark.args) - set(ENGINES)
    if unknown or not mark.args:
        raise pytest.UsageError(f"engines(...) takes some of {ENGINES}, not {mark.args}")
    metafunc.parametrize("store_engine", mark.args, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from running_postgres(durable=False)


@pytest.fixture
def store_engine(request: pytest.FixtureRequest) -> str:
    engine: str = getattr(request, "param", None) or request.config.getoption("store")
    return engine


@pytest.fixture(autouse=True)
def databases(request: pytest.FixtureRequest, store_engine: str) -> Iterator[TestDatabases]:
    server = request.getfixturevalue("postgres_server") if store_engine == "postgresql" else None
    opened = TestDatabases(store_engine, server)
    stores.use(opened)
    try:
        yield opened
    finally:
        stores.use(None)
        opened.close()
