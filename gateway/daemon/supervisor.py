"""Runs the daemon's parts in one task group and restarts a failed part with backoff.

A part is an async callable that runs until cancelled. If it raises, the supervisor records the
error in the part's health, waits (exponential backoff with jitter, capped) and starts it again;
the other parts keep running. Only cancellation (shutdown) ends a part for good.

A part that fails again and again shows two errors: ``last_error``, the latest, and ``cause``,
the first of the run of failures (a part that ran ``healthy_after`` seconds starts a new run):
the failure that began it all, not the symptom each retry meets since.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from dockgate.gateway.backoff import Backoff

log = logging.getLogger(__name__)

PartState = Literal["starting", "running", "backoff", "stopped"]
PartRunner = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class PartHealth:
    """What ``/health`` reports about one part."""

    name: str
    state: PartState = "starting"
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    cause: str | None = None  # the first failure of the latest run of failures
    cause_at: float | None = None
    started_at: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "cause": self.cause,
            "cause_at": self.cause_at,
            "started_at": self.started_at,
            **self.extra,
        }


# A failed part comes back after 0.5 s, then 1, 2, 4 ... up to 30 s, each +-20 %.
RESTART_BACKOFF = Backoff(initial=0.5, cap=30.0, jitter=0.2)


def describe(exc: BaseException) -> str:
    """``Type: message`` of a failure, with the exception it came from when there is one."""
    text = f"{type(exc).__name__}: {exc}"
    root = exc
    seen = {id(exc)}
    while (earlier := root.__cause__ or root.__context__) is not None and id(earlier) not in seen:
        seen.add(id(earlier))
        root = earlier
    if root is not exc:
        text += f" (from {type(root).__name__}: {root})"
    return text[:400]


class Supervisor:
    """Keeps named parts running until :meth:`run` is cancelled or :meth:`stop` is called."""

    def __init__(self, backoff: Backoff = RESTART_BACKOFF, healthy_after: float = 30.0) -> None:
        self.backoff = backoff
        self.healthy_after = healthy_after
        self._parts: dict[str, PartRunner] = {}
        self.health: dict[str, PartHealth] = {}
        self._stopping = asyncio.Event()

    def add(self, name: str, runner: PartRunner) -> None:
        """Register a part; call before :meth:`run`."""
        if name in self._parts:
            raise ValueError(f"part {name!r} is already registered")
        self._parts[name] = runner
        self.health[name] = PartHealth(name)

    def stop(self) -> None:
        """Ask :meth:`run` to cancel every part and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Run every part under supervision until stopped."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._keep_running(n, r)) for n, r in self._parts.items()]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()

    async def _keep_running(self, name: str, runner: PartRunner) -> None:
        health = self.health[name]
        attempt = 0
        try:
            while True:
                health.state = "running"
                health.started_at = time.time()
                started = time.monotonic()
                try:
                    await runner()
                    raise RuntimeError("part returned; parts must run until cancelled")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a failing part must not take the daemon down
                    if time.monotonic() - started > self.healthy_after:
                        attempt = 0
                    health.restarts += 1
                    health.last_error = describe(exc)
                    health.last_error_at = time.time()
                    if attempt == 0:  # the first failure since the part last ran well
                        health.cause, health.cause_at = health.last_error, health.last_error_at
                    health.state = "backoff"
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    log.warning(
                        "part failed, restarting",
                        extra={
                            "part": name,
                            "error": health.last_error,
                            "delay_s": round(delay, 2),
                        },
                    )
                    await asyncio.sleep(delay)
        finally:
            health.state = "stopped"
