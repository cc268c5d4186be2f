"""``dockgate demo``: start the site, play the day, report, then stay live or stop.

Exit codes: 0 every step did what it should (or Ctrl-C after the day), 1 a step failed (named
on the last line), 2 the site could not start (Mosquitto, pcscd, the daemon), 130 Ctrl-C
during the day.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from dockgate.gateway.daemon.settings import ConfigError
from dockgate.gateway.demo._check import StepFailed
from dockgate.gateway.demo._site import DemoSite
from dockgate.gateway.demo._steps import BREAKABLE, STEPS
from dockgate.gateway.demo._ui import LiveReport, PlainReport, StepLine
from dockgate.sim.services.process import ServiceError

T = TypeVar("T")
STEP_TIMEOUT = 45.0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived: stop what is running and clean up."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    once: bool = False
    ui: bool = True
    speed: float = 30.0  # simulated seconds per real second
    break_step: str | None = None  # self-test of the checks: make this step fail on purpose
    cluster: bool = False  # two nodes on PostgreSQL, the leader killed mid-day

    def check(self) -> None:
        if not 1.0 <= self.speed <= 120.0:
            raise ValueError("--speed must be between 1 and 120")
        if self.cluster and self.break_step is not None:
            raise ValueError("--break-step plays the single-node day; leave out --cluster")
        if self.break_step is not None and self.break_step not in BREAKABLE:
            raise ValueError(f"--break-step must be one of {', '.join(BREAKABLE)}")


def run_demo(options: DemoOptions) -> int:
    """Play the demo; returns the process exit code."""
    options.check()
    return asyncio.run(_main(options))


async def guard(work: Awaitable[T], stop: asyncio.Event, timeout: float | None = None) -> T:
    """Await ``work`` unless ``stop`` is set first (then :class:`Interrupted`)."""
    task = asyncio.ensure_future(asyncio.wait_for(work, timeout))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise Interrupted


def on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _main(opts: DemoOptions) -> int:
    lines = [StepLine(i, s.name, s.title) for i, s in enumerate(STEPS, 1)]
    live = opts.ui and sys.stdout.isatty()
    report = LiveReport(lines) if live else PlainReport(lines)
    site = DemoSite(opts.speed, opts.break_step)
    stop = asyncio.Event()
    on_signals(stop)
    began = time.monotonic()
    code = 0
    async with report:
        try:
            report.attach(site)
            try:
                await guard(site.start(report.progress), stop, timeout=90)
            except (ServiceError, ConfigError, StepFailed, OSError, TimeoutError) as exc:
                report.summary(f"the demo site could not start: {exc}")
                raise _Done(2) from None
            on_signals(stop)  # the daemon installed its own handlers; the demo stops it
            report.addresses(
                [
                    f"API {site.api_url}/api/v1 (docs {site.api_url}/docs; tokens in "
                    f"{site.token_path})",
                    f"status page {site.api_url}/status/public (the full page: /status"
                    f"?private_token=<read token from {site.token_path}>)",
                    f"gateway log {site.log_path}",
                ]
            )
            code = await play([partial(step.run, site) for step in STEPS], lines, report, stop)
            elapsed = time.monotonic() - began
            if code == 0:
                report.summary(f"all {len(lines)} steps passed in {elapsed:.1f} s")
            else:
                failed = next(line for line in lines if line.state == "FAILED")
                report.summary(f"FAILED at step {failed.number} {failed.name}: {failed.detail}")
            if not opts.once:
                report.summary(
                    f"the site stays live at {site.api_url}/status/public; Ctrl-C stops it"
                )
                await stop.wait()
        except Interrupted:
            report.summary("interrupted: stopping everything the demo started")
            code = 130
        except _Done as done:
            code = done.code
        finally:
            await site.stop(keep_files=code not in (0, 130))
            if code not in (0, 130):
                report.summary(f"kept for diagnosis: {site.data_dir}")
    return code


class _Done(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


async def play(
    runs: Sequence[Callable[[dict[str, Any]], Awaitable[str]]],
    lines: list[StepLine],
    report: PlainReport,
    stop: asyncio.Event,
) -> int:
    """Play the day's steps (each bound to its site) in order, each under ``STEP_TIMEOUT``;
    the first that fails marks the rest skipped. 0 if every step passed, else 1."""
    day: dict[str, object] = {}
    for run, line in zip(runs, lines, strict=True):
        report.step(line)
        started = time.monotonic()
        try:
            line.detail = await guard(run(day), stop, timeout=STEP_TIMEOUT)
            line.state = "ok"
        except (StepFailed, TimeoutError) as exc:
            line.state, line.detail = "FAILED", str(exc) or f"timed out after {STEP_TIMEOUT:.0f} s"
        line.seconds = time.monotonic() - started
        report.result(line)
        if line.state == "FAILED":
            for rest in lines[line.number :]:
                rest.state = "skipped"
            return 1
    return 0
