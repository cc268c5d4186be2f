"""A real pty pair from socat, with stable link paths, standing in for a serial cable.

A reader driver opens one end (``host_path``) as if it were ``/dev/ttyUSB0``; a simulator opens
the other (``device_path``). Stopping the pair is the cable being pulled; starting it again
brings the same paths back, which is what a driver's reconnect logic must cope with.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Self

from dockgate.sim.services.process import ManagedProcess, ServiceError, require_program


class SocatPty:
    """``socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`` under a private temp directory."""

    def __init__(self, workdir: Path | None = None, name: str = "socat") -> None:
        self._process = ManagedProcess(name, workdir)
        self.host_path = self._process.workdir / "host.tty"
        self.device_path = self._process.workdir / "device.tty"

    @property
    def workdir(self) -> Path:
        return self._process.workdir

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self, timeout: float = 5.0) -> Self:
        """Launch socat and wait until both link paths exist."""
        socat = require_program("socat")
        for link in (self.host_path, self.device_path):
            link.unlink(missing_ok=True)
        self._process.spawn(
            [
                socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={self.host_path}",
                f"pty,raw,echo=0,link={self.device_path}",
            ]
        )
        deadline = time.monotonic() + timeout
        while not (self.host_path.exists() and self.device_path.exists()):
            self._process.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"socat made no pty pair in {timeout}s: {self.log_tail()}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Pull the cable: socat exits, both ptys close, the links disappear."""
        self._process.stop(grace=2.0)
        for link in (self.host_path, self.device_path):
            link.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        return self._process.log_tail(lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
