"""pytest fixtures: a private pcscd with vpcd readers, shared by every test of the session.

pcscd is one per machine, so the fixture is session-scoped; a test that restarts it leaves it
running on the same ports. A missing pcscd or vpcd fails the test (ServiceError), never skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dockgate.sim.services.pcscd import PcscdService, ensure_pcscd


@pytest.fixture(scope="session")
def pcscd_service() -> Iterator[PcscdService]:
    """The running pcscd: ``.readers`` are its two vpcd reader names, ``.port`` the first's."""
    service = ensure_pcscd()
    yield service
    service.stop()
