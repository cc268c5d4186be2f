"""The gateway's SQLite state store (WAL, migrations) shared with the outbox."""

from dockgate.gateway.store._db import Database, StoreError
from dockgate.gateway.store._store import (
    ALERT_SEVERITIES,
    ALERT_TYPES,
    TECHNOLOGIES,
    TOKEN_ENCRYPTIONS,
    Conflict,
    NotFound,
    Store,
    new_gbfs_id,
)

__all__ = [
    "ALERT_SEVERITIES",
    "ALERT_TYPES",
    "TECHNOLOGIES",
    "TOKEN_ENCRYPTIONS",
    "Conflict",
    "Database",
    "NotFound",
    "Store",
    "StoreError",
    "new_gbfs_id",
]
