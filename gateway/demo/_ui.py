"""How the demo reports: plain lines (no terminal, ``--no-ui``) or a live rich screen.

Both get the same calls: ``progress`` while starting, ``addresses`` once the API listens,
``step`` before and ``result`` after each step, ``summary`` at the end. The live screen also
redraws the site's status (vehicles, trips, alerts, readers, last taps) twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dockgate.gateway.demo._site import DemoSite


@dataclass(slots=True)
class StepLine:
    number: int
    name: str
    title: str
    state: str = "waiting"  # waiting | running | ok | FAILED | skipped
    detail: str = ""
    seconds: float = 0.0


class PlainReport:
    """One line per event on stdout, flushed: what a log or a test reads."""

    def __init__(self, steps: list[StepLine]) -> None:
        self.steps = steps

    async def __aenter__(self) -> PlainReport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def attach(self, site: DemoSite) -> None:
        return None

    def progress(self, message: str) -> None:
        print(f"demo: {message}", flush=True)

    def addresses(self, lines: list[str]) -> None:
        for line in lines:
            print(f"demo: {line}", flush=True)

    def step(self, line: StepLine) -> None:
        line.state = "running"
        print(f"[{line.number}/{len(self.steps)}] {line.name}: {line.title} ...", flush=True)

    def result(self, line: StepLine) -> None:
        mark = "ok" if line.state == "ok" else line.state
        print(
            f"[{line.number}/{len(self.steps)}] {line.name}: {mark} ({line.seconds:.1f} s) "
            f"- {line.detail}",
            flush=True,
        )

    def summary(self, message: str) -> None:
        print(f"demo: {message}", flush=True)


@dataclass
class LiveReport(PlainReport):
    """The steps and the site's live status on one redrawn screen."""

    steps: list[StepLine]
    console: Console = field(default_factory=Console)
    _lines: list[str] = field(default_factory=list)
    _site: DemoSite | None = None
    _snapshot: dict[str, Any] = field(default_factory=dict)
    _live: Live | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveReport:
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.__enter__()
        self._task = asyncio.create_task(self._refresh())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)

    def attach(self, site: DemoSite) -> None:
        self._site = site

    def progress(self, message: str) -> None:
        self._lines.append(message)
        self._lines[:] = self._lines[-6:]

    def addresses(self, lines: list[str]) -> None:
        self._lines.extend(lines)

    def step(self, line: StepLine) -> None:
        line.state = "running"

    def result(self, line: StepLine) -> None:
        return None

    def summary(self, message: str) -> None:
        self._lines.append(message)

    async def _refresh(self) -> None:
        while True:
            site = self._site
            if site is not None and site.daemon is not None and site.daemon.api_port:
                with contextlib.suppress(Exception):
                    self._snapshot = await site.daemon.snapshot()
                    trips = site.daemon.store.trips.page(limit=20)
                    self._snapshot["trips"] = [asdict(t) for t in trips]
            if self._live is not None:
                self._live.update(self._render())
            await asyncio.sleep(0.5)

    # -- drawing ---------------------------------------------------------------------------------
    def _render(self) -> Group:
        parts: list[Any] = [Text("\n".join(self._lines), style="cyan"), self._steps_table()]
        snap = self._snapshot
        if snap:
            parts += [self._vehicles(snap), self._trips(snap), self._alerts(snap), self._taps(snap)]
        return Group(*parts)

    def _steps_table(self) -> Table:
        table = Table(title="The scripted day", expand=True, title_justify="left")
        for col in ("#", "step", "state", "what happened"):
            table.add_column(col, overflow="fold")
        colours = {"ok": "green", "FAILED": "bold red", "running": "yellow"}
        for line in self.steps:
            state = Text(line.state, style=colours.get(line.state, "dim"))
            table.add_row(str(line.number), line.name, state, line.detail or line.title)
        return table

    @staticmethod
    def _vehicles(snap: dict[str, Any]) -> Table:
        table = Table(title="Vehicles", title_justify="left")
        for col in ("serial", "battery", "lock", "trip", "position", "alert"):
            table.add_column(col)
        for v in snap["vehicles"]:
            pos = f"{v['lat']:.4f}, {v['lon']:.4f}" if v["lat"] is not None else "-"
            table.add_row(
                v["id"],
                f"{v['battery']:.0f}%" if v["battery"] is not None else "-",
                "locked" if v["locked"] else "unlocked",
                str(v["trip_id"] or "-"),
                pos,
                Text("yes", style="red") if v["alert"] else "",
            )
        return table

    @staticmethod
    def _trips(snap: dict[str, Any]) -> Table:
        table = Table(title="Trips", title_justify="left")
        for col in ("id", "rider", "vehicle", "status", "cost"):
            table.add_column(col)
        for t in snap.get("trips", [])[-6:]:
            cost = f"{t['cost'] / 100:.2f} EUR" if t["cost"] is not None else "-"
            table.add_row(str(t["id"]), str(t["rider_id"]), str(t["vehicle_id"]), t["status"], cost)
        return table

    @staticmethod
    def _alerts(snap: dict[str, Any]) -> Table:
        table = Table(title="Open alerts, readers", title_justify="left")
        table.add_column("alert / reader")
        table.add_column("detail")
        for a in snap["alerts"][:6]:
            where = (
                f"vehicle {a['vehicle_id']}" if a["vehicle_id"] else f"station {a['station_id']}"
            )
            table.add_row(Text(a["type"], style="red"), f"{a['severity']}, {where}")
        for r in snap["readers"]:
            table.add_row(str(r["reader"]), f"{r['driver']} {r['state']}, {r['taps']} taps")
        return table

    @staticmethod
    def _taps(snap: dict[str, Any]) -> Table:
        table = Table(title="Last taps", title_justify="left")
        for col in ("time", "reader", "uid", "verdict"):
            table.add_column(col)
        for t in snap["taps"][:5]:
            verdict = Text("accepted", "green") if t["valid"] else Text(str(t["reason"]), "red")
            stamp = time.strftime("%H:%M:%S", time.localtime(t["at"]))
            table.add_row(stamp, str(t["reader"]), str(t["uid"]), verdict)
        return table
