"""Test keys and tap-event builders for the SUN verifier and the tap handler."""

from __future__ import annotations

import time
from pathlib import Path

from dockgate.gateway.readers import TapEvent
from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier

__all__ = ["CLONE_REASONS", "FILE", "META", "UID", "event", "make_verifier", "sun_settings"]

META = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
FILE = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
UID = bytes.fromhex("04A1B2C3D4E580")
# Wrong keys decrypt the PICC data to noise: bad UID length, other UID, or a bad MAC.
# A clone's PICC data decrypts to noise under the real key: its tag byte may claim any
# mirroring, so the refusal is one of these, depending on the noise (never "valid").
CLONE_REASONS = ("bad_mac", "uid_length", "uid_mismatch", "no_uid", "no_counter")


def sun_settings() -> SunSettings:
    """Key set ``default`` with the test keys; shipped profiles."""
    return SunSettings.model_validate(
        {"key_sets": {"default": {"meta_read_key": META.hex(), "file_read_key": FILE.hex()}}}
    )


def make_verifier(db: Path) -> SunVerifier:
    """A real verifier with the test keys, its replay counters kept in ``db``."""
    return SunVerifier(sun_settings(), ReplayStore(db))


def event(
    url: str | None,
    at: float,
    *,
    uid: bytes | None = UID,
    reader: str = "r1",
    error: str | None = None,
) -> TapEvent:
    """A reader's tap at monotonic time ``at``, as a driver would report it."""
    return TapEvent(reader, uid, url, at, at + 0.001, time.time(), 0.0005, 7, error)
