"""Connection settings of the MQTT driver (env prefix `DOCKGATE_MQTT_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MqttSettings(BaseSettings):
    """Where the broker is, who we are, and how patient to be.

    The password is a `SecretStr`: it never shows in `repr`, logs or errors.
    """

    model_config = SettingsConfigDict(env_prefix="DOCKGATE_MQTT_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="dockgate-gateway", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = None
    # TLS: set `tls` to use it; `ca_file` pins the CA, cert/key for client authentication.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # Broker keeps our subscriptions and queued QoS 1 messages this long while we are away.
    session_expiry: int = Field(default=3600, ge=0)
    network: int | None = Field(default=None, ge=1, description="only this network; None: all")
    queue_size: int = Field(default=50_000, ge=1, description="inbound messages not yet consumed")
    reconnect_min: float = Field(default=0.05, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=2.0, gt=0, description="seconds to wait for an ack")
    command_retries: int = Field(default=2, ge=0, le=10)
    outcome_timeout: float = Field(
        default=15.0, gt=0, description="seconds to wait for the outcome"
    )
    # A device clock further ahead or behind than these is skewed: its messages are still
    # taken, stamped with the gateway's receive time (docs/mqtt-protocol.md, "Device clocks").
    max_future_ms: int = Field(default=5 * 60 * 1000, ge=0)
    max_past_ms: int = Field(default=24 * 3600 * 1000, ge=0)
