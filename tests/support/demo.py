"""`dockgate demo --once --no-ui` run as its own process, as a newcomer runs it."""

from __future__ import annotations

import os
import subprocess
import sys


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """The demo's run to its end (200 s at most), with its output."""
    return subprocess.run(
        [sys.executable, "-m", "dockgate.gateway.cli", "demo", "--once", "--no-ui", *args],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
