"""``dockgate demo --cluster``: start the two-node site, play its day, report, then stop.

Exit codes as the single-node demo's: 0 every step did what it should (the leader was killed,
the standby took over within 5 s, nothing was lost or done twice), 1 a step failed (named on
the last line), 2 the site could not start (PostgreSQL, Mosquitto, a node), 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial

from dockgate.gateway.daemon.settings import ConfigError
from dockgate.gateway.demo._check import StepFailed
from dockgate.gateway.demo._cluster_site import ClusterDemoSite
from dockgate.gateway.demo._cluster_steps import CLUSTER_STEPS
from dockgate.gateway.demo._cluster_ui import ClusterLiveReport
from dockgate.gateway.demo._run import DemoOptions, Interrupted, guard, on_signals, play
from dockgate.gateway.demo._ui import PlainReport, StepLine
from dockgate.sim.services.process import ServiceError

START_TIMEOUT = 120.0


def run_cluster_demo(options: DemoOptions) -> int:
    """Play the cluster demo; returns the process exit code."""
    options.check()
    return asyncio.run(_main(options))


async def _main(opts: DemoOptions) -> int:
    lines = [StepLine(i, s.name, s.title) for i, s in enumerate(CLUSTER_STEPS, 1)]
    site = ClusterDemoSite(opts.speed)
    live = opts.ui and sys.stdout.isatty()
    report = ClusterLiveReport(lines) if live else PlainReport(lines)
    if isinstance(report, ClusterLiveReport):
        report.watch(site)
    stop = asyncio.Event()
    on_signals(stop)
    began = time.monotonic()
    code = 0
    async with report:
        try:
            code = await _run(site, lines, report, stop, opts)
            elapsed = time.monotonic() - began
            if code == 0:
                report.summary(f"all {len(lines)} steps passed in {elapsed:.1f} s")
            elif code == 1:
                failed = next(line for line in lines if line.state == "FAILED")
                report.summary(f"FAILED at step {failed.number} {failed.name}: {failed.detail}")
        except Interrupted:
            report.summary("interrupted: stopping everything the demo started")
            code = 130
        finally:
            await site.stop(keep_files=code not in (0, 130))
            if code not in (0, 130):
                report.summary(f"kept for diagnosis (the nodes' logs): {site.data_dir}")
    return code


async def _run(
    site: ClusterDemoSite,
    lines: list[StepLine],
    report: PlainReport,
    stop: asyncio.Event,
    opts: DemoOptions,
) -> int:
    try:
        await guard(site.start(report.progress), stop, timeout=START_TIMEOUT)
    except (ServiceError, ConfigError, StepFailed, OSError, TimeoutError) as exc:
        report.summary(f"the demo site could not start: {exc}")
        return 2
    report.addresses(
        [f"{n.node_id}: API {n.url}/api/v1, log {n.log_path}" for n in site.nodes]
        + [f"API tokens in {site.token_path}"]
    )
    code = await play([partial(step.run, site) for step in CLUSTER_STEPS], lines, report, stop)
    if code == 0 and not opts.once:
        report.summary("the site stays live; Ctrl-C stops it")
        await stop.wait()
    return code
