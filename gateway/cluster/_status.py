"""What a node says about the site's leadership: its role, its token, the leader it knows.

One value, read by ``/health``, ``/health/leader``, ``/metrics`` and the API's write check,
so that they never disagree about which node leads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["leader", "standby"]


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The node that holds the lease, and its API as other nodes should reach it."""

    node_id: str
    url: str | None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """This node's view of the site's leadership.

    ``token``: the fencing token this node holds (None on a standby); ``lease_age_s``: seconds
    since the leader last renewed its lease (None when no leader is known); ``transitions``:
    how often this node became ``leader`` and ``standby``.
    """

    enabled: bool
    node_id: str | None
    role: Role
    token: int | None = None
    lease_age_s: float | None = None
    leader: LeaderInfo | None = None
    transitions: Mapping[Role, int] = field(default_factory=dict)

    @property
    def leading(self) -> bool:
        return self.role == "leader"

    def as_dict(self) -> dict[str, Any]:
        """The ``cluster`` block of ``/health``."""
        leader = self.leader
        return {
            "enabled": self.enabled,
            "node_id": self.node_id,
            "role": self.role,
            "token": self.token,
            "lease_age_s": None if self.lease_age_s is None else round(self.lease_age_s, 3),
            "leader": None if leader is None else {"node_id": leader.node_id, "url": leader.url},
        }


#: A gateway that runs alone: it leads its site, with no lease and no token.
SINGLE_NODE = ClusterStatus(enabled=False, node_id=None, role="leader")
