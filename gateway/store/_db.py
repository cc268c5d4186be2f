"""One SQLite connection in WAL mode, a nestable transaction and schema migrations.

The store and the outbox share one ``Database`` so that writes which belong together (a trip,
its command journal entry and its outbox event) commit in one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal

Migration = Callable[[sqlite3.Connection], None] | str


class StoreError(RuntimeError):
    """The database could not be opened, migrated or written."""


class NotFound(StoreError):
    """The named row does not exist."""


class Conflict(StoreError):
    """The write contradicts the current state (a vehicle already on a trip, ...)."""


class Database:
    """A thread-safe SQLite connection with a nestable ``transaction()``.

    ``synchronous`` is ``NORMAL`` by default: in WAL mode that survives a killed process
    (every commit reaches the OS); ``FULL`` also survives a power cut at some cost per commit.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
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
        self.lock = threading.RLock()
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._savepoints = 0
        #: In-memory copies of small tables (the outbox's class counters), shared by every
        #: user of this connection; emptied on every rollback, so a reader reloads them.
        self.cache: dict[str, Any] = {}
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE on the outermost call, COMMIT or ROLLBACK when it ends.

        Nested calls join the outer transaction, so helpers can be composed freely.
        """
        return _Transaction(self)

    @contextmanager
    def savepoint(self) -> Iterator[sqlite3.Connection]:
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
                self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        self._depth += 1
        return outer

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
        """Roll back, unless SQLite already has (it does on a full disk or an I/O error)."""
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
        row = self.conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of ``component`` that are newer than its recorded version.

        Each migration runs in its own transaction together with the version bump, so a crash
        mid-way leaves the schema at a known version. Returns the version reached.
        """
        current = self.version(component)
        if current > len(migrations):
            raise StoreError(
                f"{component} schema version {current} is newer than this code"
                f" ({len(migrations)}): refusing to run on it"
            )
        for number, step in enumerate(migrations[current:], start=current + 1):
            with self.transaction() as conn:
                if isinstance(step, str):
                    for statement in step.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                else:
                    step(conn)
                conn.execute(
                    "INSERT INTO schema_version(component, version) VALUES (?, ?)"
                    " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, number),
                )
        return len(migrations)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Transaction:
    """``Database.transaction()``: a plain context manager (it is entered for every write)."""

    __slots__ = ("db", "outer")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = self.db.enter_transaction()
        return self.db.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        self.db.exit_transaction(self.outer, failed=exc_type is not None)
        return False
