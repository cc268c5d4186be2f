"""The shipped systemd unit: systemd itself checks it, and it keeps the state and the KEK closed.

``systemd-analyze`` must be installed (scripts/setup.sh installs the ``systemd`` package): the
test fails, not skips, without it, so CI cannot pass with the unit unchecked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockgate.gateway.sealing import CREDENTIAL

UNIT = Path(__file__).resolve().parent.parent / "config" / "systemd" / "dockgate.service"
INSTALLED_BINARY = "/opt/dockgate/.venv/bin/dockgate"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze is missing: install the systemd package"
    return path


def settings() -> dict[str, list[str]]:
    """The [Service] section's settings, every value of each (some are given more than once)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            name, _, value = line.partition("=")
            found.setdefault(name, []).append(value)
    return found


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart on this virtualenv's ``dockgate``: systemd-analyze verify checks
    that the command exists, and /opt/dockgate is where it is installed, not here."""
    here = Path(sys.executable).parent / "dockgate"
    assert here.exists(), f"{here} is missing: the project is not installed in the venv"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_BINARY} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={here} "))
    return copy


def test_systemd_verifies_the_unit_without_a_word(checkable_unit: Path) -> None:
    """An unknown or misspelt setting is only a warning to systemd: any output fails here."""
    done = subprocess.run(
        [systemd_analyze(), "verify", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).strip() == ""


def test_systemd_rates_the_unit_well_hardened(checkable_unit: Path) -> None:
    """systemd's own exposure score (0 best, 10 worst); the unit as it came was 8.5."""
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert done.returncode == 0 and score is not None, done.stdout + done.stderr
    assert float(score.group(1)) <= 2.0, done.stdout


def test_the_state_directory_and_new_files_are_the_services_alone() -> None:
    unit = settings()
    assert unit["StateDirectory"] == ["dockgate"]
    assert unit["StateDirectoryMode"] == ["0700"]
    assert unit["UMask"] == ["0077"]
    assert "ReadWritePaths" not in unit  # the state directory is writable; nothing else is


def test_the_kek_comes_as_a_credential_the_code_looks_for() -> None:
    assert settings()["LoadCredential"] == [f"{CREDENTIAL}:/etc/dockgate/kek"]


def test_the_service_runs_confined() -> None:
    unit = settings()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
    }
    assert {name: unit.get(name) for name in expected} == {
        name: [value] for name, value in expected.items()
    }
    families = set(" ".join(unit["RestrictAddressFamilies"]).split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # readers: serial ports and USB devices only, no PrivateDevices= (it would hide them)
    assert "PrivateDevices" not in unit
    assert sorted(unit["DeviceAllow"]) == [
        "char-ttyACM rw",
        "char-ttyS rw",
        "char-ttyUSB rw",
        "char-usb_device rw",
    ]
