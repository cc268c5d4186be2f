"""Reader taps as a reader on the broker publishes them, written without the gateway's encoder.

The JSON is built by hand (``orjson`` over a dict), so a test that decodes it with the
protocol checks the gateway against the documented wire format, not against itself.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

__all__ = ["tap_bytes", "tap_topic"]


def tap_topic(reader: str, network: int = 1) -> str:
    return f"dockgate/{network}/reader/{reader}/tap"


def tap_bytes(
    reader: str,
    seq: int,
    url: str | None,
    uid: bytes | None,
    *,
    ts: int | None = None,
    replace: dict[str, Any] | None = None,
    **extra: Any,
) -> bytes:
    """One tap's payload (docs/mqtt-protocol.md, "Reader taps"); ``extra`` adds fields and
    ``replace`` overrides any (``None`` values are left out, as the gateway's encoder does)."""
    body: dict[str, Any] = {
        "v": 1,
        "ts": time.time_ns() // 1_000_000 if ts is None else ts,
        "device_id": reader,
        "seq": seq,
        "url": url,
        "uid": uid.hex() if uid is not None else None,
        "read_ms": 25,
        **extra,
        **(replace or {}),
    }
    return orjson.dumps({k: v for k, v in body.items() if v is not None})
