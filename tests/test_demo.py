"""`dockgate demo --once --no-ui` as a real process: every step of the scripted day passes and
says so; a step broken on purpose (`--break-step`) makes it fail with that step named."""

from __future__ import annotations

import re
import shutil

import pytest

from dockgate.gateway.demo import STEPS
from tests.support.demo import run_demo

pytestmark = pytest.mark.timeout(240)


def test_the_scripted_day_passes_every_step() -> None:
    result = run_demo()
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    for number, step in enumerate(STEPS, 1):
        assert re.search(rf"^\[{number}/{len(STEPS)}\] {step.name}: ok ", out, re.M), step.name
    assert "vehicle-out-of-network-area" in out and "set-max-speed 15" in out
    assert "clone refused (invalid_tag" in out and "replayed message refused" in out
    assert "each exactly once, none lost" in out
    assert re.search(r"status page http://127\.0\.0\.1:\d+/status", out)
    assert f"all {len(STEPS)} steps passed" in out
    assert "demo-sync-" not in out + result.stderr  # the API tokens stay in their file
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def test_a_step_broken_on_purpose_fails_the_run_and_is_named() -> None:
    result = run_demo("--break-step", "clone-replay")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert re.search(
        r"^\[5/7\] clone-replay: FAILED .*clone of the rider's card was accepted", out, re.M
    )
    assert "FAILED at step 5 clone-replay" in out
    assert "[6/7] power-cut" not in out  # later steps are not played
    kept = re.search(r"kept for diagnosis: (\S+)", out)
    assert kept, out[-1000:]
    shutil.rmtree(kept[1], ignore_errors=True)


def test_bad_options_are_refused_with_exit_2() -> None:
    result = run_demo("--break-step", "nonsense")
    assert result.returncode == 2 and "--break-step must be one of" in result.stderr
