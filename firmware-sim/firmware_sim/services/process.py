"""Start, watch and stop one external program that a test, benchmark or the demo needs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


class ServiceError(RuntimeError):
    """An external service could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]  # (host, port) for AF_INET; typeshed says Any
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"nothing listens on {host}:{port} after {timeout}s") from exc
            time.sleep(0.05)


def require_program(name: str) -> str:
    """The absolute path of ``name``, or a clear error naming the package to install."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if not found:
        raise ServiceError(f"{name} is not installed (run scripts/setup.sh)")
    return found


class ManagedProcess:
    """One child process with its own working directory and log file.

    ``start`` launches it and waits until it is ready (a TCP port, or a custom check);
    ``stop`` sends SIGTERM, then SIGKILL after ``grace`` seconds. Usable as a context manager.
    """

    def __init__(self, name: str, workdir: Path | None = None) -> None:
        self.name = name
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"dockgate-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Launch ``argv`` with stdout and stderr appended to the log file."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()

    def check_alive(self) -> None:
        """Raise with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the process group; kill it if it does not leave within ``grace``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=grace)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, for tests of crash recovery."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
