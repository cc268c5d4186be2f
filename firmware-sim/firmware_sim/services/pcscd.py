"""A private pcscd whose readers are vsmartcard-vpcd virtual readers on free loopback ports.

pcscd's client socket (/run/pcscd/pcscd.comm) is fixed, so one pcscd serves the whole machine.
``ensure_pcscd()`` therefore first looks for one already running: ours (recorded in a state
file) is reused; a foreign one is adopted when it serves the stock "Virtual PCD" readers
(vpcd's default port 35963), and refused with a clear error otherwise. Only a pcscd this
process started is ever stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from dockgate.sim.services.process import ManagedProcess, ServiceError, free_port, require_program

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PID_FILE = Path("/run/pcscd/pcscd.pid")
STATE_DIR = Path(tempfile.gettempdir()) / "dockgate-pcscd"
FRIENDLY_NAME = "Dockgate vPCD"
STOCK_NAME, STOCK_PORT = "Virtual PCD", 35963


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "pcscd"
    except OSError:
        return False


def running_pcscd_pid() -> int | None:
    """The pid of the machine's pcscd, if one runs."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(PID_FILE.read_text().split()[0])
        if _pid_alive(pid):
            return pid
    for entry in Path("/proc").iterdir():  # a pcscd without a pid file (another root)
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            return int(entry.name)
    return None


def _listening(port: int) -> bool:
    """Whether something listens on TCP ``port`` (checked without connecting to it:
    a connection to vpcd would be a card insertion)."""
    needle = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 3 and (cols[1] + " ").endswith(needle) and cols[3] == "0A":
                    return True
    return False


def _two_free_ports() -> int:
    """A port P with P+1 also free: vpcd listens on both (slots 00 00 and 00 01)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and not _listening(port + 1):
            return port
    raise ServiceError("no two consecutive free TCP ports")


def pcsc_readers() -> list[str]:
    """Reader names pcscd offers now ([] when pcscd is down)."""
    from smartcard.System import readers

    try:
        return [str(r) for r in readers()]
    except Exception:  # pyscard raises several types when the service is absent
        return []


@dataclass
class PcscdService:
    """The pcscd in use: its vpcd port(s) and reader names; ``owned`` if we started it."""

    port: int
    name: str
    pid: int
    owned: bool = False
    workdir: Path | None = None
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def readers(self) -> tuple[str, str]:
        """The two vpcd reader names: cards connect to ``port`` and ``port + 1``."""
        return f"{self.name} 00 00", f"{self.name} 00 01"

    def port_of(self, reader: str) -> int:
        return self.port + self.readers.index(reader)

    def stop(self) -> None:
        """Stop pcscd if this process started it (never someone else's)."""
        if self.owned and self.process is not None:
            self.process.stop()
            with contextlib.suppress(OSError):
                (STATE_DIR / "state.json").unlink()

    @property
    def dockgate_started(self) -> bool:
        """Started by dockgate (here or by an earlier process): its config is ours to reuse."""
        return self.workdir is not None

    def restart(self, down_seconds: float = 0.0, timeout: float = 15.0) -> None:
        """Stop and start dockgate's pcscd with the same config (readers vanish, come back).

        A pcscd an earlier dockgate process started is restarted too (its state file names
        its config); a stock or foreign one never is. After a restart this process owns it.
        """
        if self.workdir is None:
            raise ServiceError("only a pcscd started by dockgate can be restarted")
        if self.owned:
            self.stop()
        else:
            _terminate(self.pid, timeout)
        time.sleep(down_seconds)
        fresh = _start(self.workdir, self.port, self.name, timeout)
        self.pid, self.process, self.owned = fresh.pid, fresh.process, True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM a pcscd this process did not spawn, and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise ServiceError(f"pcscd (pid {pid}) did not stop within {timeout}s")


def _wait_ready(service: PcscdService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process is not None:
            service.process.check_alive()
        if _listening(service.port) and set(service.readers) <= set(pcsc_readers()):
            return
        time.sleep(0.1)
    tail = service.process.log_tail() if service.process else ""
    raise ServiceError(f"pcscd readers {service.readers} not up after {timeout}s: {tail}")


def _start(workdir: Path, port: int, name: str, timeout: float) -> PcscdService:
    confdir = workdir / "reader.conf.d"
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "dockgate-vpcd").write_text(
        f'FRIENDLYNAME "{name}"\nDEVICENAME /dev/null:{port}\n'
        f"LIBPATH {VPCD_DRIVER}\nCHANNELID {port}\n"
    )
    proc = ManagedProcess("pcscd", workdir)
    proc.spawn([require_program("pcscd"), "--foreground", "--config", str(confdir)])
    assert proc.proc is not None
    service = PcscdService(port, name, proc.proc.pid, True, workdir, proc)
    try:
        _wait_ready(service, timeout)
    except BaseException:
        proc.stop()
        raise
    (STATE_DIR / "state.json").write_text(
        json.dumps({"pid": service.pid, "port": port, "name": name, "workdir": str(workdir)})
    )
    return service


def ensure_pcscd(timeout: float = 15.0) -> PcscdService:
    """A pcscd with vpcd readers: reuse ours, adopt a stock one, or start a private one."""
    if not VPCD_DRIVER.exists():
        raise ServiceError(f"{VPCD_DRIVER} missing: install vsmartcard-vpcd (scripts/setup.sh)")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = running_pcscd_pid()
        if pid is not None:
            return _reuse(pid, timeout)
        workdir = Path(tempfile.mkdtemp(prefix="dockgate-pcscd-"))
        return _start(workdir, _two_free_ports(), FRIENDLY_NAME, timeout)


def _reuse(pid: int, timeout: float) -> PcscdService:
    with contextlib.suppress(OSError, ValueError, KeyError):
        state = json.loads((STATE_DIR / "state.json").read_text())
        if state["pid"] == pid:
            workdir = Path(state["workdir"]) if state.get("workdir") else None
            service = PcscdService(int(state["port"]), str(state["name"]), pid, workdir=workdir)
            _wait_ready(service, timeout)
            return service
    stock = PcscdService(STOCK_PORT, STOCK_NAME, pid)
    if _listening(STOCK_PORT) and set(stock.readers) <= set(pcsc_readers()):
        return stock
    raise ServiceError(
        f"a pcscd not started by dockgate runs (pid {pid}) without vpcd readers; "
        "stop it (systemctl stop pcscd.socket pcscd) so dockgate can start its own"
    )


if __name__ == "__main__":  # pragma: no cover - manual use: keep one running for a demo
    svc = ensure_pcscd()
    print(json.dumps({"pid": svc.pid, "port": svc.port, "readers": svc.readers}))
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    svc.stop()
    os._exit(0)
