"""How much the HTTP API accepts from one client, and for how long it waits.

One object carries every bound so the app (body sizes, nesting, body read time) and the
server (header time, idle keep-alive, connection cap, header size) are configured together.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds on requests; the defaults suit a gateway on a station computer.

    ``body_bytes`` holds for every route but those marked ``large_body`` (rule bundles), which
    get ``large_body_bytes``. ``json_depth`` bounds ``[``/``{`` nesting before anything parses
    or hashes a body. ``body_timeout`` is the whole body's read time, ``header_timeout`` the
    time from connection (or the previous response) to a complete request head.
    """

    body_bytes: int = 64 * KIB
    large_body_bytes: int = 8 * MIB
    json_depth: int = 64
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    keep_alive: int = 5
    max_connections: int = 100
    max_header_bytes: int = 16 * KIB

    def __post_init__(self) -> None:
        if not 0 < self.body_bytes <= self.large_body_bytes:
            raise ValueError("need 0 < body_bytes <= large_body_bytes")
        if self.json_depth < 2:
            raise ValueError("json_depth must be at least 2")
        if min(self.body_timeout, self.header_timeout, self.keep_alive) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1 or self.max_header_bytes < KIB:
            raise ValueError("need max_connections >= 1 and max_header_bytes >= 1 KiB")
