"""The demo site: three stations, four scooters, a card and a ring, and the daemon's settings.

Everything is embedded so that ``dockgate demo`` needs no file: the stations stand where the
shipped rule bundle (``config/rules/demo-milano.json``) makes each step of the day happen
(station 2 inside the "Centro storico" speed zone, station 3 a few hundred metres inside the
network's east border). Tag keys and API tokens are drawn fresh for every run and never shown.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockgate.gateway.daemon.settings import DEFAULT_BUNDLE, DaemonSettings, load_settings
from dockgate.sim.routes import Route, offset

NETWORK = 1


@dataclass(frozen=True, slots=True)
class StationSpec:
    """One station: store id, MQTT device id, position and the scooters docked at start."""

    id: int
    device_id: str
    name: str
    lat: float
    lon: float
    docked: dict[int, tuple[str, float]]  # spot -> (scooter serial, battery %)
    spots: int = 4


STATIONS: tuple[StationSpec, ...] = (
    StationSpec(
        1, "ST01", "Porta Vittoria", 45.4642, 9.2015, {1: ("SXB001", 92.0), 2: ("SXB002", 71.0)}
    ),
    StationSpec(2, "ST02", "Duomo", 45.4642, 9.1960, {1: ("SXB003", 58.0)}),
    StationSpec(3, "ST03", "Lambrate", 45.4642, 9.2335, {1: ("SXB004", 84.0)}),
)


def station(device_id: str) -> StationSpec:
    return next(s for s in STATIONS if s.device_id == device_id)


def site(spec: StationSpec) -> tuple[float, float]:
    return (spec.lat, spec.lon)


def route_to_duomo() -> Route:
    """Station 1 west into the 15 km/h "Centro storico" zone, to station 2."""
    return Route("porta-vittoria-duomo", [site(STATIONS[0]), site(STATIONS[1])])


def route_out_east() -> Route:
    """Station 3 east across the network border (about 270 m away) and 2 km on."""
    start = site(STATIONS[2])
    return Route("lambrate-east", [start, offset(*start, 2000.0, 40.0)])


@dataclass(slots=True)
class Secrets:
    """Per-run keys and tokens: in memory, in the daemon's settings, and a 0600 file."""

    meta_read_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    file_read_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    sync_token: str = field(default_factory=lambda: "demo-sync-" + secrets.token_urlsafe(24))
    read_token: str = field(default_factory=lambda: "demo-read-" + secrets.token_urlsafe(24))

    def write_token_file(self, path: Path) -> Path:
        """The tokens for a person who wants to try the API during the demo (owner-only)."""
        path.touch(mode=0o600)
        path.write_text(f"sync={self.sync_token}\nread={self.read_token}\n")
        return path


def daemon_settings(
    *, data_dir: Path, broker_port: int, pcsc_readers: tuple[str, str], keys: Secrets
) -> DaemonSettings:
    """The daemon's settings for the demo site (validated as ``dockgate run`` would)."""
    doc: dict[str, Any] = {
        "site": {"name": "dockgate demo (Milano)", "network_id": NETWORK, "data_dir": data_dir},
        "mqtt": {
            "port": broker_port,
            "client_id": f"dockgate-demo-{secrets.token_hex(3)}",
            "command_timeout": 2.0,
            "outcome_timeout": 10.0,
        },
        "api": {
            "host": "127.0.0.1",
            "port": 0,  # any free port; the daemon reports the one it got
            "tokens": [
                {"name": "backend", "token": keys.sync_token, "scopes": ["sync"]},
                {"name": "technician", "token": keys.read_token, "scopes": ["read"]},
            ],
        },
        "stations": [
            {
                "id": s.id,
                "device_id": s.device_id,
                "name": s.name,
                "lat": s.lat,
                "lon": s.lon,
                "spots": s.spots,
            }
            for s in STATIONS
        ],
        "readers": [
            {
                "id": "reader-st01",
                "driver": "pcsc",
                "station_id": 1,
                "pcsc_readers": [pcsc_readers[0]],
            },
            {
                "id": "reader-st03",
                "driver": "pcsc",
                "station_id": 3,
                "pcsc_readers": [pcsc_readers[1]],
            },
        ],
        "rules": {"bundle": DEFAULT_BUNDLE},
        "telemetry": {"enabled": False},
        "sun": {
            "profiles": ["senzu-play", "query-picc-enc-cmac"],
            "key_sets": {
                "default": {
                    "meta_read_key": keys.meta_read_key.hex(),
                    "file_read_key": keys.file_read_key.hex(),
                }
            },
            "replay_db": data_dir / "sun-replay.sqlite3",
        },
    }
    return load_settings(None, **doc)
