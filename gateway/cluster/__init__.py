"""A site's nodes and which one leads: a lease row in the shared PostgreSQL database with a
fencing token, renewed by the leader and checked inside each of its write transactions
(docs/cluster.md).

- :class:`Lease`: acquire, renew, release and observe the site's lease (database clock).
- :class:`Fence`: the gateway database's ``guard``; a transaction it refuses raises
  :class:`LeaseLost` and rolls back.
- :class:`Elector`: the loop that stands by or leads, and the :class:`Term` of each lead.
- :class:`ClusterStatus`: what ``/health``, ``/health/leader`` and ``/metrics`` show.
"""

from dockgate.gateway.cluster._election import Elector, Term
from dockgate.gateway.cluster._fence import Fence, LeaseLost
from dockgate.gateway.cluster._lease import Lease, LeaseRecord
from dockgate.gateway.cluster._status import SINGLE_NODE, ClusterStatus, LeaderInfo, Role

__all__ = [
    "SINGLE_NODE",
    "ClusterStatus",
    "Elector",
    "Fence",
    "LeaderInfo",
    "Lease",
    "LeaseLost",
    "LeaseRecord",
    "Role",
    "Term",
]
