"""The gateway's state (one schema history): a ``Store`` of small aggregates, each returning
typed rows, over the database it shares with the outbox: an SQLite file in WAL mode
(``Database``, the embedded default) or a PostgreSQL server (``open_database(url)``)."""

from dockgate.gateway.store._alerts import (
    ALERT_SEVERITIES,
    ALERT_SORTS,
    ALERT_TYPES,
    AlertQuery,
    Alerts,
    Energy,
    NewAlert,
    Outages,
)
from dockgate.gateway.store._bundles import Bundles
from dockgate.gateway.store._commands import COMMAND_STATES, CommandJournal
from dockgate.gateway.store._db import (
    BaseDatabase,
    Conflict,
    Connection,
    Cursor,
    Database,
    NotFound,
    Row,
    StoreError,
)
from dockgate.gateway.store._engines import open_database
from dockgate.gateway.store._health import StorageChange, StorageState, StoreHealth, refused_write
from dockgate.gateway.store._idempotency import IdempotencyKeys
from dockgate.gateway.store._inbox import DeviceClock, Inbox
from dockgate.gateway.store._keyset import Keyset, Page, PageAnchorMissing
from dockgate.gateway.store._products import (
    TECHNOLOGIES,
    TOKEN_ENCRYPTIONS,
    Products,
    Records,
    SealedKeys,
    TagKeys,
)
from dockgate.gateway.store._rentals import PendingRentals
from dockgate.gateway.store._replay import ReplayStore
from dockgate.gateway.store._riders import RIDER_SORTS, RiderQuery, Riders
from dockgate.gateway.store._rows import (
    Alert,
    Bundle,
    Cluster,
    ClusterSummary,
    DockedVehicle,
    EnergyUse,
    JournalEntry,
    Network,
    Outage,
    PendingRental,
    Product,
    Record,
    Rider,
    Spot,
    SpotWithVehicle,
    Station,
    StationWithSpots,
    StoredResponse,
    TagKeyInfo,
    Trip,
    Vehicle,
)
from dockgate.gateway.store._schema import migrate
from dockgate.gateway.store._store import Store, default_keyring
from dockgate.gateway.store._topology import Topology
from dockgate.gateway.store._trips import (
    OPEN_TRIP_STATES,
    TRIP_SORTS,
    TRIP_STATES,
    TripQuery,
    Trips,
    TripState,
)
from dockgate.gateway.store._url import is_postgres_url, redact_url
from dockgate.gateway.store._vehicles import Vehicles, new_gbfs_id

__all__ = [
    "ALERT_SEVERITIES",
    "ALERT_SORTS",
    "ALERT_TYPES",
    "COMMAND_STATES",
    "OPEN_TRIP_STATES",
    "RIDER_SORTS",
    "TECHNOLOGIES",
    "TOKEN_ENCRYPTIONS",
    "TRIP_SORTS",
    "TRIP_STATES",
    "Alert",
    "AlertQuery",
    "Alerts",
    "BaseDatabase",
    "Bundle",
    "Bundles",
    "Cluster",
    "ClusterSummary",
    "CommandJournal",
    "Conflict",
    "Connection",
    "Cursor",
    "Database",
    "DeviceClock",
    "DockedVehicle",
    "Energy",
    "EnergyUse",
    "IdempotencyKeys",
    "Inbox",
    "JournalEntry",
    "Keyset",
    "Network",
    "NewAlert",
    "NotFound",
    "Outage",
    "Outages",
    "Page",
    "PageAnchorMissing",
    "PendingRental",
    "PendingRentals",
    "Product",
    "Products",
    "Record",
    "Records",
    "ReplayStore",
    "Rider",
    "RiderQuery",
    "Riders",
    "Row",
    "SealedKeys",
    "Spot",
    "SpotWithVehicle",
    "Station",
    "StationWithSpots",
    "StorageChange",
    "StorageState",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoredResponse",
    "TagKeyInfo",
    "TagKeys",
    "Topology",
    "Trip",
    "TripQuery",
    "TripState",
    "Trips",
    "Vehicle",
    "Vehicles",
    "default_keyring",
    "is_postgres_url",
    "migrate",
    "new_gbfs_id",
    "open_database",
    "redact_url",
    "refused_write",
]
