"""The gateway's SQLite state (WAL, one schema history): a ``Store`` of small aggregates,
each returning typed rows, over the ``Database`` it shares with the outbox."""

from dockgate.gateway.store._alerts import (
    ALERT_SEVERITIES,
    ALERT_TYPES,
    AlertQuery,
    Alerts,
    Energy,
    NewAlert,
    Outages,
)
from dockgate.gateway.store._bundles import Bundles
from dockgate.gateway.store._commands import COMMAND_STATES, CommandJournal
from dockgate.gateway.store._db import Conflict, Database, NotFound, StoreError
from dockgate.gateway.store._idempotency import IdempotencyKeys
from dockgate.gateway.store._products import (
    TECHNOLOGIES,
    TOKEN_ENCRYPTIONS,
    Products,
    Records,
    TagKeys,
)
from dockgate.gateway.store._rentals import PendingRentals
from dockgate.gateway.store._replay import ReplayStore
from dockgate.gateway.store._riders import Riders
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
from dockgate.gateway.store._store import Store
from dockgate.gateway.store._topology import Topology
from dockgate.gateway.store._trips import Trips
from dockgate.gateway.store._vehicles import Vehicles, new_gbfs_id

__all__ = [
    "ALERT_SEVERITIES",
    "ALERT_TYPES",
    "COMMAND_STATES",
    "TECHNOLOGIES",
    "TOKEN_ENCRYPTIONS",
    "Alert",
    "AlertQuery",
    "Alerts",
    "Bundle",
    "Bundles",
    "Cluster",
    "ClusterSummary",
    "CommandJournal",
    "Conflict",
    "Database",
    "DockedVehicle",
    "Energy",
    "EnergyUse",
    "IdempotencyKeys",
    "JournalEntry",
    "Network",
    "NewAlert",
    "NotFound",
    "Outage",
    "Outages",
    "PendingRental",
    "PendingRentals",
    "Product",
    "Products",
    "Record",
    "Records",
    "ReplayStore",
    "Rider",
    "Riders",
    "Spot",
    "SpotWithVehicle",
    "Station",
    "StationWithSpots",
    "Store",
    "StoreError",
    "StoredResponse",
    "TagKeyInfo",
    "TagKeys",
    "Topology",
    "Trip",
    "Trips",
    "Vehicle",
    "Vehicles",
    "migrate",
    "new_gbfs_id",
]
