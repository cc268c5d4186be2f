"""A private PostgreSQL (Debian's ``postgresql``) in its own directory on a free loopback port.

``initdb`` and the server refuse to run as root: as root, both run as the ``postgres`` user
the package creates (``runuser``), in a directory that user owns. The cluster trusts local
connections (loopback and its socket directory) for the user ``dockgate``; ``durable=False``
(tests) turns ``fsync`` off. Databases are made from ``template0`` (``create_database``).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import psycopg
from psycopg.rows import TupleRow

from dockgate.sim.services.process import ServiceError, free_port

SERVICE_USER = "postgres"  # the system user Debian's package creates
_BINDIRS = "/usr/lib/postgresql/*/bin"


def postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    found = sorted(
        Path("/").glob(_BINDIRS.lstrip("/")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(found):
        if (bindir / "pg_ctl").exists() and (bindir / "initdb").exists():
            return bindir
    raise ServiceError("PostgreSQL is not installed: no initdb/pg_ctl (run scripts/setup.sh)")


class PostgresServer:
    """``start()`` (or ``with``) makes and starts the cluster; ``url(name)`` reaches a database.

    ``stop()`` stops it (fast shutdown), ``kill()`` stops it as a crash would (immediate),
    ``start()`` again brings the same cluster back; ``cleanup()`` stops it and removes its
    directory.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        user: str = "dockgate",
        durable: bool = True,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dockgate-postgres-"))
        self.port = port or free_port()
        self.user = user
        self.durable = durable
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self._names = itertools.count(1)
        self._admin: psycopg.Connection[TupleRow] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    # -- life cycle ------------------------------------------------------------------------
    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        """One of the cluster's programs, as the service user when we are root."""
        prefix = ["runuser", "-u", SERVICE_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *argv],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
                f"\n{self.log_tail()}"
            )

    def _initdb(self, bindir: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVICE_USER)
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        self._run(
            str(bindir / "initdb"),
            f"--pgdata={self.data}",
            "--auth=trust",
            f"--username={self.user}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self, timeout: float = 30.0) -> Self:
        bindir = postgres_bindir()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        options = [
            f"-p {self.port}",
            f"-k {self.workdir}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=300",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            str(bindir / "pg_ctl"),
            f"--pgdata={self.data}",
            f"--log={self.log_path}",
            f"--options={' '.join(options)}",
            "--wait",
            f"--timeout={int(timeout)}",
            "start",
            timeout=timeout + 10,
        )
        return self

    def _pg_ctl_stop(self, mode: str) -> None:
        self._close_admin()
        if (self.data / "postmaster.pid").exists():
            self._run(
                str(postgres_bindir() / "pg_ctl"), f"--pgdata={self.data}", "-m", mode, "stop"
            )

    def stop(self) -> None:
        self._pg_ctl_stop("fast")

    def kill(self) -> None:
        """Stop without a checkpoint, as a crash would (recovery runs at the next start)."""
        self._pg_ctl_stop("immediate")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- databases -------------------------------------------------------------------------
    def _admin_conn(self) -> psycopg.Connection[TupleRow]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url(), autocommit=True)
        return self._admin

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def create_database(self, prefix: str = "db") -> str:
        """A new empty database (from ``template0``); its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin_conn().execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def terminate_sessions(self, name: str) -> int:
        """End every session on database ``name`` (as a server restart would); how many."""
        rows = self._admin_conn().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        return len(rows.fetchall())

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still on it."""
        self._admin_conn().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
