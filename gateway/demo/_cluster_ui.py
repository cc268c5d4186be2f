"""The cluster demo's live screen: the nodes and their roles above the day and the street.

Same calls as :class:`LiveReport` (``progress``, ``step``, ``result``, ``summary``); the
picture is read through the site's API, as an operator's would be: each node's ``/health``
(role, token, lease age, the leader it knows), the leader's ``/status/snapshot`` (vehicles,
alerts, readers, taps) and ``/api/v1/trips``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dockgate.gateway.demo._cluster_site import ClusterDemoSite
from dockgate.gateway.demo._ui import LiveReport

ROLE_STYLES = {"leader": "bold green", "standby": "cyan", "down": "bold red"}


@dataclass
class ClusterLiveReport(LiveReport):
    """:class:`LiveReport` with a table of the site's nodes, fed by the API."""

    _cluster: ClusterDemoSite | None = None
    _nodes: list[dict[str, Any]] = field(default_factory=list)
    _trip_rows: list[dict[str, Any]] = field(default_factory=list)

    def watch(self, site: ClusterDemoSite) -> None:
        self._cluster = site

    async def _refresh(self) -> None:
        while True:
            site = self._cluster
            if site is not None and site.nodes:
                with contextlib.suppress(Exception):
                    self._nodes = await site.node_rows()
                with contextlib.suppress(Exception):
                    await self._read_street(site)
            if self._live is not None:
                self._live.update(self._render())
            await asyncio.sleep(0.5)

    async def _read_street(self, site: ClusterDemoSite) -> None:
        leader = await site.leader()
        if leader is None or site.backend is None:
            return
        response = await site.http.get(
            f"{leader.url}/status/snapshot",
            headers={"Authorization": f"Bearer {site.keys.read_token}"},
        )
        body = response.json()
        self._snapshot = body.get("data", body)
        self._trip_rows = await site.backend.get("/api/v1/trips", page_size=20)

    def _render(self) -> Group:
        parts: list[Any] = [Text("\n".join(self._lines), style="cyan"), self._nodes_table()]
        parts.append(self._steps_table())
        snap = self._snapshot
        if snap:
            parts += [self._vehicles(snap), self._trips_table(), self._alerts(snap)]
        return Group(*parts)

    def _nodes_table(self) -> Table:
        table = Table(title="The site's nodes", title_justify="left")
        for col in ("node", "role", "token", "lease age", "leader it knows", "API"):
            table.add_column(col)
        for row in self._nodes:
            role = str(row.get("role") or ("down" if not row["alive"] else "?"))
            age = row.get("lease_age_s")
            leader = row.get("leader") or {}
            table.add_row(
                row["node"],
                Text(role, style=ROLE_STYLES.get(role, "dim")),
                str(row.get("token") if row.get("token") is not None else "-"),
                f"{age:.1f} s" if isinstance(age, int | float) else "-",
                str(leader.get("node_id", "-")),
                row["url"],
            )
        return table

    def _trips_table(self) -> Table:
        table = Table(title="Trips", title_justify="left")
        for col in ("id", "rider", "vehicle", "status", "cost"):
            table.add_column(col)
        for t in self._trip_rows[-6:]:
            cost = t.get("cost")
            table.add_row(
                str(t.get("id")),
                str(t.get("rider_id")),
                str(t.get("vehicle_id")),
                str(t.get("status")),
                f"{cost / 100:.2f} EUR" if isinstance(cost, int) else "-",
            )
        return table
