"""The API in a cluster: every node reads the shared database, only the leader writes.

A write (POST, PUT, PATCH, DELETE) that reaches a standby is answered, once its token has
been checked and before its body is read, with ``307`` to the leader (its ``advertise_url``,
the same path and query: a 307 keeps the method and the body) or, while no leader is known
(a failover under way), ``503`` with ``Retry-After: 1``. ``GET /health/leader`` answers 200
on the leader and 503 elsewhere, for a load balancer to route writes; ``/metrics`` shows the
role, the token, the lease's age and the transitions. A write the leader had begun when it
lost its lease was rolled back (``LeaseLost``): 503 too, to be sent again.

Alone (no cluster) the gateway always leads: nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

from dockgate.api.errors import ApiError, error_content
from dockgate.gateway.cluster import SINGLE_NODE, ClusterStatus, LeaseLost

#: This node's view of the site's leadership, read at each request.
ClusterView = Callable[[], ClusterStatus]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_AFTER = {"Retry-After": "1"}

router = APIRouter()


class WriteElsewhere(ApiError):
    """A write this node may not make: 307 to the leader, or 503 while none is known."""

    def __init__(self, status: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(status, message)
        self.headers = headers


def _target(scope: Scope) -> str:
    """The request's path and query as the client sent them (percent-encoded)."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def standby_refusal(view: ClusterView | None, scope: Scope) -> WriteElsewhere | None:
    """Why this node must not take the request (a write on a standby), or None."""
    if view is None or scope["method"] not in WRITE_METHODS:
        return None
    status = view()
    if status.leading:
        return None
    leader = status.leader
    if leader is not None and leader.url and leader.node_id != status.node_id:
        location = leader.url.rstrip("/") + _target(scope)
        message = (
            f"node {status.node_id} is a standby: writes go to the leader {leader.node_id}"
            f" at {leader.url}"
        )
        return WriteElsewhere(307, message, {"Location": location})
    message = f"node {status.node_id} is a standby and no leader is known yet: retry shortly"
    return WriteElsewhere(503, message, RETRY_AFTER)


def _status(request: Request) -> ClusterStatus:
    view: ClusterView | None = getattr(request.app.state, "cluster", None)
    return SINGLE_NODE if view is None else view()


@router.get(
    "/health/leader",
    tags=["operations"],
    summary="Whether this node leads its site (for a load balancer to route writes)",
    responses={
        503: {
            "description": "This node is a standby",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def health_leader(request: Request) -> JSONResponse:
    status = _status(request)
    if status.leading:
        return JSONResponse({"leader": True, "node_id": status.node_id})
    leader = status.leader
    known = None if leader is None else {"node_id": leader.node_id, "url": leader.url}
    body = {"leader": False, "node_id": status.node_id, "current_leader": known}
    return JSONResponse(body, 503, headers=RETRY_AFTER)


def install_cluster(app: FastAPI, view: ClusterView | None) -> None:
    """What the app needs to read: this node's view, and the answer to a write fenced out."""
    app.state.cluster = view

    @app.exception_handler(LeaseLost)
    async def _lease_lost(_: Request, exc: LeaseLost) -> JSONResponse:
        message = "this node lost the site's lease during the request; nothing of it was kept"
        return JSONResponse(error_content(503, message), 503, headers=RETRY_AFTER)


class ClusterCollector(Collector):
    """``dockgate_cluster_*`` at scrape time: role, token, lease age, transitions."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        status = self.view()
        yield _gauge("dockgate_cluster_leader", "1 while this node leads its site", status.leading)
        yield _gauge(
            "dockgate_cluster_token",
            "The fencing token of this node's lease (0: none held)",
            status.token or 0,
        )
        age = status.lease_age_s
        yield _gauge(
            "dockgate_cluster_lease_age_seconds",
            "Seconds since the site's lease was last renewed (NaN: no leader known)",
            float("nan") if age is None else age,
        )
        transitions = CounterMetricFamily(
            "dockgate_cluster_transitions",
            "Times this node became leader or standby",
            labels=["to"],
        )
        for role in ("leader", "standby"):
            transitions.add_metric([role], float(status.transitions.get(role, 0)))
        yield transitions


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc)
    gauge.add_metric([], float(value))
    return gauge
