"""A private Mosquitto on a free loopback port, from a generated config.

Tests, benchmarks and the fleet simulator start one per run. It can be stopped and started
again on the same port (with its persistence file) to test reconnects. Started as root,
mosquitto drops to the `mosquitto` user, so the work directory and every file in it are
handed to that user.

    with Mosquitto(users={"gateway": "pw"}, acl=acl_text(devices)) as broker:
        broker.port

With ``tls=TlsFiles(ca, cert, key)`` the listener speaks only TLS; the files are copied into
the work directory for the broker's user (the key readable by it alone). With
``client_identity=True`` it also requires a client certificate signed by the CA and takes its
CN as the username (``crlfile`` refuses revoked ones).

``users=`` and ``acl=`` may also be the paths of existing files (e.g. those `dockgate devices`
writes): the broker reads them where they are, as they are; ``broker.pid`` is for SIGHUP.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from dockgate.sim.services.process import (
    ManagedProcess,
    ServiceError,
    free_port,
    require_program,
    wait_for_port,
)

#: Per-client queue above in-flight: large enough that a 50k burst to a QoS 1 subscriber that
#: is briefly slow or offline is kept (the default 1000 loses it), small enough to bound memory.
DEFAULT_MAX_QUEUED = 200_000


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A TLS listener's files (PEM): CA certificate, server certificate and key."""

    cafile: Path
    certfile: Path
    keyfile: Path
    client_identity: bool = False  # require_certificate + use_identity_as_username
    crlfile: Path | None = None


def render_config(
    *,
    port: int,
    workdir: Path,
    password_file: Path | None,
    acl_file: Path | None,
    max_queued_messages: int = DEFAULT_MAX_QUEUED,
    persistence: bool = True,
    tls: TlsFiles | None = None,
) -> str:
    """The mosquitto.conf text for a loopback broker (same choices as config/mosquitto/)."""
    lines = [
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        "set_tcp_nodelay true",
        f"max_queued_messages {max_queued_messages}",
        "max_inflight_messages 0",
        "max_packet_size 65536",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
    ]
    if tls is not None:
        lines += [f"cafile {tls.cafile}", f"certfile {tls.certfile}", f"keyfile {tls.keyfile}"]
        if tls.client_identity:
            lines += ["require_certificate true", "use_identity_as_username true"]
        if tls.crlfile is not None:
            lines.append(f"crlfile {tls.crlfile}")
    if persistence:
        lines += ["persistence true", f"persistence_location {workdir}/data/"]
    else:
        lines.append("persistence false")
    if password_file is not None:
        # Each session belongs to its account: a device credential cannot connect under the
        # gateway's client id and take its session over (nor under another device's).
        lines += [
            "allow_anonymous false",
            f"password_file {password_file}",
            "use_username_as_clientid true",
        ]
    else:
        lines.append("allow_anonymous true")
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    return "\n".join(lines) + "\n"


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """Write a hashed (sha512-pbkdf2) mosquitto password file for ``users``.

    Plain text is written first and hashed in place by `mosquitto_passwd -U`, one process for
    the whole fleet; the plain file is never left behind on success or failure.
    """
    tool = require_program("mosquitto_passwd")
    for name in users:
        if not name or ":" in name or any(c.isspace() for c in name):
            raise ValueError(f"invalid broker username {name!r}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{u}:{p}\n" for u, p in users.items())
        done = subprocess.run([tool, "-U", str(path)], capture_output=True, timeout=60)
        if done.returncode != 0:
            raise ServiceError("mosquitto_passwd -U failed")  # its output may echo secrets
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _give_to_mosquitto(path: Path) -> None:
    """As root, hand ``path`` to the user mosquitto drops to; otherwise nothing to do."""
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _private_tls_copy(tls: TlsFiles, workdir: Path) -> TlsFiles:
    """Copies of the listener's files that the broker's user can read (the key: only it)."""
    folder = workdir / "tls"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o755)
    crl = folder / "crl.pem" if tls.crlfile is not None else None
    copies = TlsFiles(
        folder / "ca.pem", folder / "server.pem", folder / "server.key", tls.client_identity, crl
    )
    pairs = [
        (tls.cafile, copies.cafile, 0o644),
        (tls.certfile, copies.certfile, 0o644),
        (tls.keyfile, copies.keyfile, 0o600),
    ]
    if tls.crlfile is not None and crl is not None:
        pairs.append((tls.crlfile, crl, 0o644))
    for src, dst, mode in pairs:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Path(src).read_bytes())
        _give_to_mosquitto(dst)
    return copies


class Mosquitto:
    """One private broker. `start`, `stop`, `restart` (same port, same data), `kill`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: Path | None = None,
        users: dict[str, str] | Path | None = None,
        acl: str | Path | None = None,
        max_queued_messages: int = DEFAULT_MAX_QUEUED,
        persistence: bool = True,
        tls: TlsFiles | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._proc = ManagedProcess("mosquitto", workdir)
        self.workdir = self._proc.workdir
        self.tls = tls
        self.config_path = self.workdir / "mosquitto.conf"
        os.chmod(self.workdir, 0o755)
        password_file = users if isinstance(users, Path) else None
        acl_file = acl if isinstance(acl, Path) else None
        if isinstance(users, dict):
            password_file = self.workdir / "passwd"
            write_password_file(password_file, users)
            _give_to_mosquitto(password_file)
        if isinstance(acl, str):
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl)
            os.chmod(acl_file, 0o640)
            _give_to_mosquitto(acl_file)
        listener_tls = _private_tls_copy(tls, self.workdir) if tls is not None else None
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        _give_to_mosquitto(data)
        _give_to_mosquitto(self._proc.log_path.parent)
        self.config_path.write_text(
            render_config(
                port=self.port,
                workdir=self.workdir,
                password_file=password_file,
                acl_file=acl_file,
                max_queued_messages=max_queued_messages,
                persistence=persistence,
                tls=listener_tls,
            )
        )
        os.chmod(self.config_path, 0o644)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (``kill -HUP`` reloads its files)."""
        proc = self._proc.proc
        return proc.pid if proc is not None and self.running else None

    def start(self, timeout: float = 10.0) -> Self:
        binary = require_program("mosquitto")
        self._proc.spawn([binary, "-c", str(self.config_path)])
        try:
            wait_for_port(self.host, self.port, timeout)
        except ServiceError as exc:
            self._proc.stop()
            raise ServiceError(f"mosquitto did not start: {self._proc.log_tail()}") from exc
        self._proc.check_alive()
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and leaves."""
        self._proc.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave."""
        self._proc.kill()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for ``down_for`` seconds, start again on the same port."""
        import time

        self.stop()
        time.sleep(down_for)
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines)

    def cleanup(self) -> None:
        """Stop and remove the work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
