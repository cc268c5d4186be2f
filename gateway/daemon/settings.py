"""The daemon's configuration: one TOML file, environment overrides, every problem listed.

The file has one table per part (``[site]``, ``[mqtt]``, ``[api]``, ``[[readers]]``,
``[rules]``, ``[telemetry]``, ``[outbox]``, ``[storage]``, ``[store]``, ``[cluster]``,
``[logging]``, ``[secrets]``, ``[sun]``). Any field can be
overridden from the environment as ``DOCKGATE_<TABLE>__<FIELD>``, e.g.
``DOCKGATE_MQTT__PORT=1884``. Secrets (API tokens, the broker password, tag keys) are secret
types: they never show in a repr, a log line or a validation error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dockgate.api.gbfs import GbfsSettings
from dockgate.drivers.mqtt.settings import MqttSettings
from dockgate.gateway.protocol.topics import READER_ID_RE
from dockgate.gateway.store import is_postgres_url, redact_url
from dockgate.gateway.sun.settings import SunSettings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_BUNDLE = CONFIG_DIR / "rules" / "demo-milano.json"


class ConfigError(ValueError):
    """The configuration is not usable; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"- {p}" for p in problems))


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSettings(_Part):
    """Who this gateway is and where it keeps its state."""

    name: str = Field(default="dockgate site", min_length=1, max_length=80)
    network_id: int = Field(default=1, ge=1, lt=10**9)
    data_dir: Path = Path("/var/lib/dockgate")


class StationSettings(_Part):
    """One docking station of this site: its id in the store and its MQTT device id."""

    id: int = Field(ge=1)
    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
    name: str = Field(default="", max_length=80)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    spots: int = Field(default=8, ge=1, le=64)
    badge_reader: bool = True
    max_unlock_distance: int = Field(default=25, ge=25, le=500)


Scope = Literal["sync", "read"]


def _read_scope() -> list[Scope]:
    return ["read"]


class ApiToken(_Part):
    """One API token: ``sync`` for the fleet backend, ``read`` for a technician."""

    name: str = Field(min_length=1, max_length=40)
    token: SecretStr = Field(min_length=16)
    scopes: list[Scope] = Field(default_factory=_read_scope, min_length=1)


class ApiSettings(_Part):
    """The local HTTP API and the status page."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests, the demo)
    tokens: list[ApiToken] = Field(default_factory=list)
    # request body limits in bytes, enforced after the token check (rule bundles get the second)
    max_body: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_bundle_body: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024, le=256 * 1024 * 1024)

    @model_validator(mode="after")
    def _unique_tokens(self) -> ApiSettings:
        values = [t.token.get_secret_value() for t in self.tokens]
        if len(set(values)) != len(values):
            raise ValueError("two API tokens have the same value")
        return self


class ReaderSettings(_Part):
    """One NFC reader and the station it sits at.

    ``driver = "broker"``: the reader is attached elsewhere (a standby, a station controller)
    and publishes its taps on the broker (``dockgate reader publish``); nothing is opened
    here, and its id is its topic's (``dockgate/<network>/reader/<id>/tap``).
    """

    id: str = Field(min_length=1, max_length=64)
    driver: Literal["pcsc", "nfcpy", "pn532", "broker"]
    station_id: int = Field(ge=1)
    # pcsc: reader names to watch (empty: all); nfcpy: a ContactlessFrontend path
    # (usb, usb:054c:06c3, udp:HOST:PORT); pn532: a serial port.
    pcsc_readers: list[str] = Field(default_factory=list)
    path: str | None = None

    @property
    def local(self) -> bool:
        """Attached to this machine (not one whose taps come over the broker)."""
        return self.driver != "broker"

    @model_validator(mode="after")
    def _path_for_driver(self) -> ReaderSettings:
        if self.driver in ("nfcpy", "pn532") and not self.path:
            raise ValueError(f"a {self.driver} reader needs 'path'")
        if not self.local and not READER_ID_RE.fullmatch(self.id):
            raise ValueError(f"a broker reader's id is its topic's: {READER_ID_RE.pattern}")
        return self


class RulesSettings(_Part):
    """The rule bundle enforced at start-up (the backend can push newer ones)."""

    bundle: Path = DEFAULT_BUNDLE


class TelemetrySettings(_Part):
    """The time-series sink (InfluxDB v2 write API: InfluxDB 2/3, VictoriaMetrics)."""

    enabled: bool = False
    url: str = "http://127.0.0.1:8428"
    token: SecretStr = SecretStr("")
    org: str = "dockgate"
    bucket: str = "dockgate"
    max_queue: int = Field(default=50_000, ge=100)


class OutboxSettings(_Part):
    """Bounds of the durable outbox. Only STATE events (latest state) are ever dropped,
    oldest first; alerts and outcomes (trips, taps, command outcomes) never are: they count
    towards ``max_pending`` and their bound is the disk (``[storage] min_free_bytes``).

    ``outcome`` and ``telemetry`` are the keys of earlier versions, accepted and ignored
    with a warning (``deprecations``): outcomes are never dropped, no event is telemetry.
    """

    state: int | None = Field(default=200_000, ge=1)
    max_pending: int | None = Field(default=2_000_000, ge=1)
    outcome: int | None = Field(default=None, ge=1, description="ignored (earlier versions)")
    telemetry: int | None = Field(default=None, ge=1, description="ignored (earlier versions)")

    def deprecations(self) -> list[str]:
        """A warning per old key the configuration still sets."""
        old = {
            "outcome": "outcome events (trips, taps, command outcomes) are never dropped",
            "telemetry": "no outbox event is of a telemetry class (vehicle state is STATE)",
        }
        return [
            f"[outbox] {key} is ignored: {why}"
            for key, why in old.items()
            if key in self.model_fields_set
        ]


class StorageSettings(_Part):
    """The disk the state lives on.

    Below ``min_free_bytes`` of free space the gateway stops taking device messages (they
    wait at the broker), keeping the rest for the journal, taps, command outcomes and alerts;
    it takes them again once the free space is back a quarter above it. While the disk
    refuses writes it probes every ``probe_interval`` seconds with a one-row commit.
    """

    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    probe_interval: float = Field(default=1.0, gt=0, le=60)


class StoreSettings(_Part):
    """Which database holds the gateway's state.

    ``url`` left out: the embedded SQLite file in ``[site] data_dir`` (the default, and the
    demo's). A ``postgresql://user:password@host:port/dbname`` URL: that PostgreSQL database
    (the same schema and migrations). The KEK stays in ``[secrets]`` or the data directory
    either way, never in the database. The URL's password is never shown: not in a repr, a
    log line or an error (``shown_url``).
    """

    url: str | None = Field(default=None, repr=False)

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        if url is not None and not is_postgres_url(url):
            scheme = url.split("://", 1)[0][:20] if "://" in url else "none"
            raise ValueError(
                "must be a postgresql:// URL, or left out for the embedded SQLite file"
                f" (its scheme is {scheme!r})"
            )
        return url

    @property
    def shown_url(self) -> str | None:
        """The URL as logs and errors may show it: without its password."""
        return None if self.url is None else redact_url(self.url)


class ClusterSettings(_Part):
    """Several nodes of one site sharing its PostgreSQL database and its broker: one leads,
    the others stand by warm and take over when its lease runs out (docs/cluster.md).

    ``enabled = false`` (the default): this gateway runs alone, as it always has.
    ``node_id`` names this node (unique in the site); ``advertise_url`` is its API as the
    other nodes' clients should reach it (a standby redirects writes there). A leader that
    has not renewed its lease for ``lease_seconds`` is replaced; it renews every
    ``renew_seconds`` (below half the lease, so one renewal may fail without losing it).
    """

    enabled: bool = False
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    lease_seconds: float = Field(default=3.0, ge=0.5, le=60)
    renew_seconds: float = Field(default=1.0, gt=0, le=30)
    advertise_url: str | None = Field(
        default=None, max_length=200, pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"
    )

    @model_validator(mode="after")
    def _node_and_timings(self) -> ClusterSettings:
        if self.renew_seconds >= self.lease_seconds / 2:
            raise ValueError("renew_seconds must be below half of lease_seconds")
        if self.enabled and self.node_id is None:
            raise ValueError("a cluster node needs its node_id")
        return self


class SecretsSettings(_Part):
    """Where the key-encryption key (KEK) that seals the stored tag and record keys comes from.

    First found: the systemd credential ``dockgate-kek`` (``LoadCredential=``), ``kek_file``,
    the environment variable ``DOCKGATE_KEK``, else ``<data_dir>/kek`` (generated, 0600).
    """

    kek_file: Path | None = None


class LoggingSettings(_Part):
    """Structured logs: ``console`` for people, ``json`` for collectors."""

    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DaemonSettings(BaseSettings):
    """Everything ``dockgate run`` needs."""

    model_config = SettingsConfigDict(
        env_prefix="DOCKGATE_", env_nested_delimiter="__", extra="forbid"
    )

    site: SiteSettings = Field(default_factory=SiteSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    stations: list[StationSettings] = Field(default_factory=list)
    readers: list[ReaderSettings] = Field(default_factory=list)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    # the public GBFS feeds: [gbfs] public_url, vehicle_types, ... (see GbfsSettings)
    gbfs: GbfsSettings = Field(default_factory=GbfsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    sun: SunSettings = Field(default_factory=SunSettings)

    @model_validator(mode="after")
    def _unique_readers(self) -> DaemonSettings:
        ids = [r.id for r in self.readers]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"reader ids must be unique: {dupes}")
        station_ids = {st.id for st in self.stations}
        if len(station_ids) != len(self.stations):
            raise ValueError("station ids must be unique")
        unknown = [r.id for r in self.readers if self.stations and r.station_id not in station_ids]
        if unknown:
            raise ValueError(f"readers at stations not in [[stations]]: {unknown}")
        return self

    @model_validator(mode="after")
    def _cluster_on_postgres(self) -> DaemonSettings:
        if self.cluster.enabled and self.store.url is None:
            raise ValueError(
                "[cluster] enabled needs the site's shared database: a postgresql [store] url"
            )
        return self


def _describe(exc: ValidationError) -> list[str]:
    """One line per problem, with its location and no input value (it may be a secret)."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    return lines


def _relative_paths(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in the file are relative to the file, not to the working directory."""
    fixes = [
        ("site", "data_dir"),
        ("rules", "bundle"),
        ("sun", "profiles_file"),
        ("secrets", "kek_file"),
    ]
    for table, key in [*fixes, ("sun", "replay_db")]:
        section = doc.get(table)
        if not isinstance(section, dict):
            continue
        value = section.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            section[key] = str((base / value).resolve())
    return doc


def load_settings(path: Path | None = None, **overrides: Any) -> DaemonSettings:
    """Read ``path`` (TOML), then the environment, then ``overrides``; raise :class:`ConfigError`
    listing every problem if the result is not valid."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = _relative_paths(tomllib.loads(Path(path).read_text()), Path(path).parent)
        except FileNotFoundError as exc:
            raise ConfigError([f"{path}: no such file"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc

    class _FromFile(DaemonSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _DictSource(settings_cls, doc))

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    return loaded


class _DictSource(PydanticBaseSettingsSource):
    """A settings source over an already parsed (and path-fixed) TOML document."""

    def __init__(self, settings_cls: type[BaseSettings], doc: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._doc = doc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._doc.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._doc)
