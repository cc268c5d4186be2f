"""What every part of the flow shares: the site's devices, background tasks, the common ports.

``RideFlow`` builds one ``FlowParts`` and hands it to each of its collaborators (taps,
rentals, trips, alerts, station and vehicle messages, recovery), so each names the few
things it uses and none of them reaches back into the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dockgate.gateway.flow._commands import CommandRunner
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.protocol import DeviceRef, StationFeedback, new_command_id
from dockgate.gateway.rules import RulesEngine
from dockgate.gateway.store import Store

log = logging.getLogger(__name__)
LOGGED_TASK_FAILURES = 10  # background failures logged in full; after that every 1000th


class Site:
    """The network's device addresses: station ids to MQTT device ids and back."""

    def __init__(self, network_id: int, station_devices: Mapping[int, str]) -> None:
        self.network_id = network_id
        self.station_devices = dict(station_devices)

    def station_device(self, station_id: int) -> DeviceRef:
        return DeviceRef.station(
            self.network_id, self.station_devices.get(station_id, str(station_id))
        )

    def vehicle_device(self, serial: str) -> DeviceRef:
        return DeviceRef.vehicle(self.network_id, serial)

    def station_id(self, device: DeviceRef) -> int | None:
        """The store's station id of a station device (its id as a number by default)."""
        for sid, dev in self.station_devices.items():
            if dev == device.device_id:
                return sid
        return int(device.device_id) if device.device_id.isdigit() else None


class Tasks:
    """Background commands and timers: kept until done, cancelled together on close.

    A task that fails is counted in ``failed`` and logged (the first ones in full), so no
    failure goes unseen and none is reported as an "exception never retrieved";
    ``on_failure`` (the daemon's: a full disk shows in its health) hears of each.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed = 0
        self.on_failure: Callable[[BaseException], object] | None = None

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        self.failed += 1
        if self.on_failure is not None:
            self.on_failure(exc)
        if self.failed <= LOGGED_TASK_FAILURES or self.failed % 1000 == 0:
            log.error(
                "flow: a background task failed [%d so far]: %s: %s",
                self.failed,
                type(exc).__name__,
                str(exc)[:200],
                exc_info=exc if self.failed <= LOGGED_TASK_FAILURES else None,
            )

    async def drain(self) -> None:
        """Wait until every task (and every task they started) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class FlowParts:
    """The state, the outbox, the rules, the command runner, the site, the background tasks
    and the clock: what the flow's collaborators have in common."""

    store: Store
    outbox: Outbox
    rules: RulesEngine
    runner: CommandRunner
    site: Site
    tasks: Tasks
    clock: Callable[[], float]


class Feedback:
    """Tells the rider at a station what became of a tap (display, buzzer).

    Fire and forget, never journaled: a lost feedback costs the rider a glance, not a ride.
    """

    def __init__(self, parts: FlowParts) -> None:
        self.parts = parts

    def show(
        self,
        station_id: int,
        result: Literal["accepted", "refused"],
        reason: str | None,
        *,
        reader: str | None = None,
        spot: int | None = None,
    ) -> None:
        try:
            cmd = StationFeedback(
                cmd_id=new_command_id(),
                reader=reader,
                spot=spot,
                result=result,
                reason=(reason or "")[:40] or None,
            )
        except ValueError:
            return
        device = self.parts.site.station_device(station_id)
        self.parts.tasks.spawn(self._send(device, cmd))

    async def _send(self, device: DeviceRef, cmd: StationFeedback) -> None:
        with contextlib.suppress(Exception):
            await self.parts.runner.send(device, cmd)
