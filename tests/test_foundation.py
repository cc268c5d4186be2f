"""The project's skeleton: the console script and the service launcher helpers."""

import subprocess
import sys

from dockgate.sim.services import ManagedProcess, ServiceError, free_port, wait_for_port


def test_console_script_lists_every_area() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dockgate.gateway.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for area in ("tag", "reader", "sim", "rules"):
        assert area in out


def test_managed_process_reports_a_port_that_never_opens() -> None:
    port = free_port()
    proc = ManagedProcess("sleeper")
    proc.spawn(["sleep", "30"])
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout=0.3)
        except ServiceError as exc:
            assert str(port) in str(exc)
        else:
            raise AssertionError("wait_for_port accepted a closed port")
        assert proc.running
    finally:
        proc.stop(grace=1)
    assert not proc.running
