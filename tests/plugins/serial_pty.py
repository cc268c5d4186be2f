"""pytest fixtures: a private socat pty pair per test (a serial cable; started, then stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockgate.sim.services.socat import SocatPty


@pytest.fixture
def serial_pty(tmp_path: Path) -> Iterator[SocatPty]:
    """A running pty pair: ``host_path`` for the driver, ``device_path`` for the simulator."""
    pty = SocatPty(workdir=tmp_path / "socat").start()
    try:
        yield pty
    finally:
        pty.stop()
