"""pytest fixtures: a private victoria for the tests (started on loopback, stopped after)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockgate.sim.services.victoria import VictoriaMetrics


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A running VictoriaMetrics; fails (never skips) if the package is missing."""
    workdir: Path = tmp_path_factory.mktemp("victoria")
    with VictoriaMetrics(workdir) as vm:
        yield vm
