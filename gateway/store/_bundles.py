"""Configuration bundles the backend pushed: each version above the last, the latest applies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dockgate.gateway.store._db import BaseDatabase, Conflict
from dockgate.gateway.store._rows import Bundle
from dockgate.gateway.store._sql import fetch_one


class Bundles:
    """Save a bundle (only a newer version), read the current one."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def save(self, version: int, kind: str, body: dict[str, Any]) -> None:
        with self.db.transaction() as c:
            latest = fetch_one(self.db, "SELECT max(version) AS v FROM bundles")
            if latest and latest["v"] is not None and version <= latest["v"]:
                raise Conflict(
                    f"bundle version {version} is not newer than the current {latest['v']}"
                )
            c.execute(
                "INSERT INTO bundles(version, kind, body, applied_at) VALUES (?,?,?,?)",
                (version, kind, json.dumps(body), self.clock()),
            )

    def current(self) -> Bundle | None:
        row = fetch_one(
            self.db,
            "SELECT version, kind, body, applied_at FROM bundles ORDER BY version DESC LIMIT 1",
        )
        if row is None:
            return None
        return Bundle(row["version"], row["kind"], json.loads(row["body"]), row["applied_at"])
