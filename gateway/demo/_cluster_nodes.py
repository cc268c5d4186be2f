"""The cluster demo's nodes: each one ``dockgate run`` process with its own configuration file.

Why processes and not daemons in this event loop: the demo kills the leader with SIGKILL, as
a machine dies, which only a process of its own can undergo. Every node shares the site's
database URL, broker client id, KEK file and keys; each has its own node id, API port and
data directory (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dockgate.gateway.daemon.settings import DEFAULT_BUNDLE
from dockgate.gateway.demo._world import NETWORK, STATIONS, Secrets, StationSpec

LEASE_SECONDS = 3.0
RENEW_SECONDS = 1.0
#: Readers at the stations' own controllers: their taps reach whichever node leads over the
#: broker (``dockgate/1/reader/<id>/tap``); reader id -> station id.
READERS = {"R-ST01": 1, "R-ST03": 3}


@dataclass(frozen=True, slots=True)
class SiteShared:
    """What every node of the demo site has in common."""

    store_url: str
    broker_port: int
    client_id: str
    kek_file: Path
    keys: Secrets


def _value(value: object) -> str:
    """One TOML value (strings in JSON's escapes, which TOML's basic strings read alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def toml_text(doc: Mapping[str, Any], prefix: str = "") -> str:
    """``doc`` as TOML: tables, nested tables and arrays of (flat) tables."""
    lines: list[str] = []
    scalars = {k: v for k, v in doc.items() if not isinstance(v, Mapping) and not _is_table_list(v)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    lines += [f"{key} = {_value(v)}" for key, v in scalars.items()]
    for key, v in doc.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(v, Mapping):
            lines.append(toml_text(v, name))
        elif _is_table_list(v):
            for item in v:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {_value(x)}" for k, x in item.items()]
    return "\n".join(line for line in lines if line) + "\n"


def station_table(spec: StationSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "device_id": spec.device_id,
        "name": spec.name,
        "lat": spec.lat,
        "lon": spec.lon,
        "spots": spec.spots,
    }


def node_document(
    node_id: str, data_dir: Path, api_port: int, shared: SiteShared
) -> dict[str, Any]:
    """One node's configuration (validated by ``dockgate run`` when it starts)."""
    keys = shared.keys
    url = f"http://127.0.0.1:{api_port}"
    return {
        "site": {
            "name": "dockgate demo (Milano, cluster)",
            "network_id": NETWORK,
            "data_dir": str(data_dir),
        },
        "mqtt": {
            "port": shared.broker_port,
            "client_id": shared.client_id,
            "command_timeout": 2.0,
            "outcome_timeout": 10.0,
            "reconnect_max": 1.0,
        },
        "api": {
            "host": "127.0.0.1",
            "port": api_port,
            "tokens": [
                {"name": "backend", "token": keys.sync_token, "scopes": ["sync"]},
                {"name": "technician", "token": keys.read_token, "scopes": ["read"]},
            ],
        },
        "store": {"url": shared.store_url},
        "cluster": {
            "enabled": True,
            "node_id": node_id,
            "lease_seconds": LEASE_SECONDS,
            "renew_seconds": RENEW_SECONDS,
            "advertise_url": url,
        },
        "secrets": {"kek_file": str(shared.kek_file)},
        "logging": {"format": "json", "level": "INFO"},
        "rules": {"bundle": str(DEFAULT_BUNDLE)},
        "telemetry": {"enabled": False},
        "sun": {
            "profiles": ["senzu-play", "query-picc-enc-cmac"],
            "key_sets": {
                "default": {
                    "meta_read_key": keys.meta_read_key.hex(),
                    "file_read_key": keys.file_read_key.hex(),
                }
            },
        },
        "stations": [station_table(s) for s in STATIONS],
        "readers": [
            {"id": reader, "driver": "broker", "station_id": station}
            for reader, station in READERS.items()
        ],
    }


class NodeProcess:
    """``dockgate run`` for one node: started, asked, killed (SIGKILL) or stopped (SIGTERM)."""

    def __init__(self, node_id: str, workdir: Path, api_port: int, shared: SiteShared) -> None:
        self.node_id = node_id
        self.workdir = workdir
        self.api_port = api_port
        self.config = workdir / "dockgate.toml"
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)
        doc = node_document(node_id, workdir / "state", api_port, shared)
        self.config.write_text(toml_text(doc))
        os.chmod(self.config, 0o600)  # it holds the API tokens and the tag keys

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: the machine died (no goodbye to the broker, the database or the lease)."""
        if self.proc is not None and self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not left within ``timeout`` seconds."""
        if self.proc is None or not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def exit_note(self) -> str:
        """Why a node that should run does not: its exit code and last log line."""
        code = self.proc.poll() if self.proc is not None else None
        last = ""
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            last = lines[-1][:300] if lines else ""
        return f"{self.node_id} exited ({code}): {last}"

    async def cluster_state(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        """The ``cluster`` part of its ``/health`` (None: it does not answer)."""
        if not self.alive:
            return None
        try:
            response = await client.get(f"{self.url}/health", timeout=1.0)
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        data = body.get("data", body)
        state = data.get("cluster") if isinstance(data, dict) else None
        return state if isinstance(state, dict) else None

    async def leads(self, client: httpx.AsyncClient) -> bool:
        """``/health/leader`` answers 200."""
        if not self.alive:
            return False
        try:
            response = await client.get(f"{self.url}/health/leader", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
