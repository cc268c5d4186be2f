"""The gateway's one database: a nestable transaction and schema migrations over one connection.

The store and the outbox share one database so that writes which belong together (a trip,
its command journal entry and its outbox event) commit in one transaction. Two engines give
it: :class:`Database`, an SQLite file in WAL mode (the embedded default), and
``PostgresDatabase`` (``_postgres.py``, a site's shared server). Both are a
:class:`BaseDatabase`, which holds what they share (the transaction nesting, savepoints,
after-commit hooks, the migration runner); the aggregates type against it and write SQL
that runs on both. Where the engines must differ (column types in the schema, how a new
row's generated id is read), the database's :class:`Dialect` says so.

Callers use ``db.conn.execute(sql, args)`` with ``?`` placeholders on either engine; on SQLite
``conn`` is the ``sqlite3`` connection itself, so the hot paths pay nothing for the second engine.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast


class StoreError(RuntimeError):
    """The database could not be opened, migrated or written."""


class NotFound(StoreError):
    """The named row does not exist."""


class Conflict(StoreError):
    """The write contradicts the current state (a vehicle already on a trip, ...)."""


class Row(Protocol):
    """A result row: by index (``row[0]``), by column name (``row["id"]``), or unpacked."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What a statement gives back (``sqlite3.Cursor`` is one)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The statements callers run (``sqlite3.Connection`` is one): ``?`` placeholders."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class EngineSql(str):
    """A migration whose text must differ by engine (one entry of the one history): the
    string itself is SQLite's text, ``postgresql`` PostgreSQL's. Both are written in the
    schema's SQL (SQLite's), which each dialect then spells."""

    postgresql: str

    def __new__(cls, sqlite: str, postgresql: str) -> EngineSql:
        text = super().__new__(cls, sqlite)
        text.postgresql = postgresql
        return text


Migration = Callable[[Connection], None] | str  # or an EngineSql


class Dialect:
    """Where the engines' SQL must differ; everything else is written once for both.

    This is SQLite's (the schema's own dialect); ``PostgresDialect`` overrides it.
    """

    name: ClassVar[str] = "sqlite"

    def schema(self, ddl: str) -> str:
        """A migration's text as this engine runs it (SQLite: as written)."""
        return ddl

    def migration(self, step: str) -> str:
        """The text of a migration step as this engine runs it."""
        if self.name == "postgresql" and isinstance(step, EngineSql):
            step = step.postgresql
        return self.schema(step)

    def returning(self, insert: str, column: str) -> str:
        """``insert`` made so that its cursor's ``lastrowid`` is the new row's ``column``
        (SQLite: the rowid, which an ``INTEGER PRIMARY KEY`` column is: as written)."""
        return insert

    def last_inserted(self, table: str, column: str) -> str:
        """A query of one row and column: the ``column`` value of the row this connection
        inserted last into ``table`` (after an ``executemany``: its last row's)."""
        return "SELECT last_insert_rowid()"

    def last_generated(self, table: str, column: str) -> str:
        """A query of one row and column: the last value ``table``'s ``AUTOINCREMENT``
        ``column`` handed out (no row, or NULL, before the first)."""
        return f"SELECT seq FROM sqlite_sequence WHERE name='{table}'"


class BaseDatabase:
    """One connection (``conn``) with a nestable ``transaction()``, shared by every user.

    ``path`` says where the database is, fit for messages (a file, or a URL without its
    password); ``disk`` is the directory whose filesystem holds it (None: not on this
    machine); ``data_dir`` is where local state beside it lives (the KEK's default file).
    """

    conn: Connection
    dialect: Dialect
    path: str
    disk: Path | None
    data_dir: Path | None
    #: The outermost transaction's BEGIN: SQLite takes the write lock up front.
    BEGIN: ClassVar[str] = "BEGIN"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._savepoints = 0
        #: In-memory copies of small tables (the outbox's class counters), shared by every
        #: user of this connection; emptied on every rollback, so a reader reloads them.
        self.cache: dict[str, Any] = {}
        #: Run on the connection right after the BEGIN of every outermost transaction (a
        #: cluster's fencing check, ``dockgate.gateway.cluster.Fence``); what it raises
        #: rolls the transaction back and reaches the caller.
        self.guard: Callable[[Connection], None] | None = None

    def _create_version_table(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def transaction(self) -> AbstractContextManager[Connection]:
        """BEGIN on the outermost call, COMMIT or ROLLBACK when it ends.

        Nested calls join the outer transaction, so helpers can be composed freely.
        """
        return _Transaction(self)

    @contextmanager
    def savepoint(self) -> Iterator[Connection]:
        """A part of the open transaction that can fail alone: an exception undoes only the
        writes made inside it (ROLLBACK TO) and propagates; the transaction goes on.

        Outside a transaction it is a transaction of its own.
        """
        with self.lock:
            if self._depth == 0:
                with self.transaction() as conn:
                    yield conn
                return
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # a full disk rolls the whole transaction back
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                self.cache.clear()
                raise
            finally:
                self._savepoints -= 1
            self.conn.execute(f"RELEASE {name}")

    @property
    def depth(self) -> int:
        """How many ``transaction()`` blocks are open (0: none)."""
        return self._depth

    def enter_transaction(self) -> bool:
        """Take the lock and BEGIN on the outermost entry; True if this one is the outermost.

        ``transaction()`` calls it (and ``exit_transaction``): use that, not this.
        """
        self.lock.acquire()
        try:
            outer = self._depth == 0
            if outer:
                self.conn.execute(self.BEGIN)
                if self.guard is not None:
                    self._guarded()
        except BaseException:
            self.lock.release()
            raise
        self._depth += 1
        return outer

    def _guarded(self) -> None:
        """Run ``guard`` in the transaction just begun; if it refuses, roll back."""
        assert self.guard is not None
        try:
            self.guard(self.conn)
        except BaseException:
            self._undo()
            raise

    def exit_transaction(self, outer: bool, *, failed: bool) -> None:
        """COMMIT (and run the after-commit hooks) or ROLLBACK the outermost; release the lock."""
        try:
            self._depth -= 1
            if not outer:
                return
            if failed:
                self._undo()
                return
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._undo()  # a refused COMMIT (full disk, I/O error) keeps nothing
                raise
            hooks, self._after_commit = self._after_commit, []
            for hook in hooks:
                hook()
        finally:
            self.lock.release()

    def _undo(self) -> None:
        """Roll back, unless the engine already has (SQLite does on a full disk)."""
        self._after_commit.clear()
        self.cache.clear()
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once the current transaction commits (now, if none is open)."""
        with self.lock:
            if self._depth:
                self._after_commit.append(hook)
                return
        hook()

    def version(self, component: str) -> int:
        with self.lock:
            row = self.conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            ).fetchone()
        return int(row[0]) if row else 0

    def _lock_migrations(self, conn: Connection) -> None:
        """Keep other processes from migrating until this transaction ends (SQLite: the
        write lock BEGIN IMMEDIATE took already does)."""

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of ``component`` that are newer than its recorded version.

        Each migration runs in its own transaction together with the version bump, so a crash
        mid-way leaves the schema at a known version; the version is read again inside it, so
        two processes opening one database apply each migration once. Returns the version
        reached.
        """
        current = self.version(component)
        if current > len(migrations):
            raise StoreError(
                f"{component} schema version {current} is newer than this code"
                f" ({len(migrations)}): refusing to run on it"
            )
        for number, step in enumerate(migrations[current:], start=current + 1):
            with self.transaction() as conn:
                self._lock_migrations(conn)
                if self.version(component) >= number:
                    continue  # another process applied it meanwhile
                if callable(step):
                    step(conn)
                else:
                    for statement in self.dialect.migration(step).split(";"):
                        if statement.strip():
                            conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version(component, version) VALUES (?, ?)"
                    " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, number),
                )
        return len(migrations)

    def close(self) -> None:
        raise NotImplementedError


class Database(BaseDatabase):
    """The embedded engine: a thread-safe SQLite connection to one file in WAL mode.

    ``synchronous`` is ``NORMAL`` by default: in WAL mode that survives a killed process
    (every commit reaches the OS); ``FULL`` also survives a power cut at some cost per commit.
    """

    conn: sqlite3.Connection
    BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        super().__init__()
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
        self.dialect = Dialect()
        in_memory = self.path in ("", ":memory:")
        self.disk = None if in_memory else Path(self.path).resolve().parent
        self.data_dir = self.disk
        try:
            self.conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=30.0,
                cached_statements=256,  # prepared once, reused by every hot-path write
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._create_version_table()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE on the outermost call, COMMIT or ROLLBACK when it ends."""
        return cast(AbstractContextManager[sqlite3.Connection], _Transaction(self))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Transaction:
    """``transaction()``: a plain context manager (it is entered for every write)."""

    __slots__ = ("db", "outer")

    def __init__(self, db: BaseDatabase) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> Connection:
        self.outer = self.db.enter_transaction()
        return self.db.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        self.db.exit_transaction(self.outer, failed=exc_type is not None)
        return False
