"""Telling Mosquitto to re-read its password and ACL files (SIGHUP).

A stray SIGHUP ends most programs, so a pid is signalled only once the kernel confirms it is
a mosquitto process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: What an operator runs after a change (Debian's unit reloads with `kill -HUP $MAINPID`).
RELOAD_HINT = "systemctl reload mosquitto   (or: kill -HUP $(pidof mosquitto))"
#: Mosquitto 2.0 reads its CA and CRL files only when a listener starts, never on SIGHUP.
RESTART_HINT = "systemctl restart mosquitto"
BROKER_PROGRAM = "mosquitto"


class ReloadError(RuntimeError):
    """The pid is not a running mosquitto, or the signal could not be sent."""


def reload_broker(pid: int, program: str = BROKER_PROGRAM) -> None:
    """Send SIGHUP to ``pid`` after checking that it runs ``program``."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        raise ReloadError(f"no process {pid} (or no /proc to check it)") from None
    if name != program:
        raise ReloadError(f"process {pid} is {name!r}, not {program}: no signal sent")
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise ReloadError(f"cannot signal process {pid}: {exc.strerror}") from None
