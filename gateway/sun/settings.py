"""The ``[sun]`` configuration: key sets, active profiles, records, replay store.

Keys are hex in the file and held as ``SecretBytes``: repr, str and validation errors
never show them (``hide_input_in_errors``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretBytes,
    field_validator,
    model_validator,
)

from dockgate.gateway.sun.kdf import SDM_BACKEND_MIN_MASTER
from dockgate.gateway.sun.keys import TagKeys, make_keys
from dockgate.gateway.sun.profiles import (
    SHIPPED_PROFILES,
    TagProfile,
    load_profiles,
    parse_profiles,
)


def _key_from_hex(value: object) -> object:
    if isinstance(value, str):
        if len(value) != 32:
            raise ValueError("a key is 32 hex characters (16 bytes)")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError("a key must be hexadecimal") from None
    return value


def _master_key_from_hex(value: object) -> object:
    """A master key: 16 bytes for AN10922, 16 bytes or more for sdm-backend (checked with
    the kdf, in :meth:`KeySetSettings._complete`)."""
    if isinstance(value, str):
        if len(value) < 2 * SDM_BACKEND_MIN_MASTER or len(value) % 2:
            raise ValueError("a master key is an even number of hex characters, 32 or more")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError("a key must be hexadecimal") from None
    return value


def _hex_bytes(value: object) -> object:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be hexadecimal") from None
    return value


Key = Annotated[SecretBytes, BeforeValidator(_key_from_hex)]
MasterKey = Annotated[SecretBytes, BeforeValidator(_master_key_from_hex)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class KeySetSettings(_Model):
    """One key set: fixed keys, or a master key with a KDF."""

    mode: Literal["aes", "lrp"] | None = None
    meta_read_key: Key | None = None
    file_read_key: Key | None = None
    master_key: MasterKey | None = None
    kdf: Literal["an10922", "sdm-backend"] | None = None
    kdf_suffix: Annotated[bytes, BeforeValidator(_hex_bytes)] = b""

    @model_validator(mode="after")
    def _complete(self) -> KeySetSettings:
        if self.master_key is not None:
            if self.kdf is None:
                raise ValueError("master_key needs kdf ('an10922' or 'sdm-backend')")
            if self.kdf == "an10922" and len(self.master_key.get_secret_value()) != 16:
                raise ValueError("an an10922 master key is 32 hex characters (16 bytes)")
        elif self.file_read_key is None:
            raise ValueError("give file_read_key, or master_key with kdf")
        if len(self.kdf_suffix) > 24:
            raise ValueError("kdf_suffix is at most 24 bytes")
        return self

    def build(self) -> TagKeys:
        """The key object the verifier uses."""

        def raw(s: SecretBytes | None) -> bytes | None:
            return None if s is None else s.get_secret_value()

        return make_keys(
            meta_read_key=raw(self.meta_read_key),
            file_read_key=raw(self.file_read_key),
            master_key=raw(self.master_key),
            kdf=self.kdf,
            kdf_suffix=self.kdf_suffix,
        )


class SunSettings(_Model):
    """The whole ``[sun]`` table."""

    profiles_file: Path = SHIPPED_PROFILES
    profiles: list[str] | None = None  # active profiles in match order; None: all, file order
    extra_profiles: dict[str, dict[str, str]] = Field(default_factory=dict)
    key_sets: dict[str, KeySetSettings] = Field(default_factory=dict)
    default_key_set: str = "default"
    records: dict[str, str] = Field(default_factory=dict)  # record id -> UID (hex)
    replay_db: Path | None = None

    @field_validator("records")
    @classmethod
    def _uids(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for record, uid in value.items():
            if len(uid) != 14 or any(c not in "0123456789abcdefABCDEF" for c in uid):
                raise ValueError(f"records.{record}: a UID is 14 hex characters")
            out[record] = uid.lower()
        return out

    def load_profiles(self) -> dict[str, TagProfile]:
        """The active profiles, in match order."""
        available = load_profiles(self.profiles_file)
        available.update(parse_profiles(dict(self.extra_profiles), source="[sun.extra_profiles]"))
        if self.profiles is None:
            return available
        missing = [name for name in self.profiles if name not in available]
        if missing:
            raise ValueError(f"[sun].profiles names unknown profile(s): {missing}")
        return {name: available[name] for name in self.profiles}


def load_sun_settings(path: str | Path | None = None) -> SunSettings:
    """Read the ``[sun]`` table of a TOML file (no file: defaults with the shipped profiles).

    Relative ``profiles_file``/``replay_db`` paths are taken relative to the file.
    """
    if path is None:
        return SunSettings()
    path = Path(path)
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    table = dict(doc.get("sun", {}))
    for name in ("profiles_file", "replay_db"):
        if isinstance(table.get(name), str) and not Path(table[name]).is_absolute():
            table[name] = str(path.parent / table[name])
    return SunSettings.model_validate(table)
