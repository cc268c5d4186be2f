"""`dockgate demo --cluster --once --no-ui` as a real process: two nodes on the PostgreSQL it
starts, the leader killed mid-day, the standby taking over, and every step saying so."""

from __future__ import annotations

import re

import pytest

from dockgate.gateway.demo import CLUSTER_STEPS
from tests.support.demo import run_demo

pytestmark = pytest.mark.timeout(240)


def test_the_cluster_day_survives_the_leaders_death_with_nothing_lost() -> None:
    result = run_demo("--cluster")
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    steps = len(CLUSTER_STEPS)
    for number, step in enumerate(CLUSTER_STEPS, 1):
        assert re.search(rf"^\[{number}/{steps}\] {step.name}: ok ", out, re.M), step.name
    took_over = re.search(r"(node-[ab]) killed \(SIGKILL\); (node-[ab]) led ([\d.]+) s later", out)
    assert took_over, out[-3000:]
    assert took_over[1] != took_over[2] and float(took_over[3]) < 5.0
    assert re.search(rf"ended at ST01 under {took_over[2]}", out)
    assert f"{took_over[1]} restarted and stands by" in out
    assert re.search(r"each once and in cursor order; 3 trips, .* 3 unlocks for 3 taps", out)
    assert f"all {steps} steps passed" in out and "kept for diagnosis" not in out
    assert "demo-sync-" not in out + result.stderr  # the API tokens stay in their file
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def test_break_step_is_for_the_single_node_day() -> None:
    result = run_demo("--cluster", "--break-step", "catch-up")
    assert result.returncode == 2 and "leave out --cluster" in result.stderr
