"""The daemon's supervisor restarts a failing part without disturbing the others."""

import asyncio

from dockgate.gateway.backoff import Backoff
from dockgate.gateway.daemon.supervisor import Supervisor


async def test_failing_part_is_restarted_and_reported_while_others_run() -> None:
    supervisor = Supervisor(backoff=Backoff(initial=0.01, cap=0.02, jitter=0))
    attempts = 0
    ticks = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError(f"broker away #{attempts}")
        steady.set()
        await asyncio.Event().wait()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    supervisor.add("mqtt", flaky)
    supervisor.add("ticker", ticker)
    runner = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(steady.wait(), 2)

    mqtt = supervisor.health["mqtt"]
    assert mqtt.restarts == 2
    assert mqtt.last_error == "ConnectionError: broker away #2"
    assert mqtt.state == "running"
    assert supervisor.health["ticker"].restarts == 0
    assert ticks > 0

    supervisor.stop()
    await asyncio.wait_for(runner, 2)
    assert {h.state for h in supervisor.health.values()} == {"stopped"}


async def test_a_part_that_returns_counts_as_failed() -> None:
    supervisor = Supervisor(backoff=Backoff(initial=0.01, cap=0.01, jitter=0))
    runs = 0

    async def returns_early() -> None:
        nonlocal runs
        runs += 1
        if runs >= 3:
            supervisor.stop()

    supervisor.add("quitter", returns_early)
    await asyncio.wait_for(supervisor.run(), 2)
    assert runs >= 3
    assert "must run until cancelled" in (supervisor.health["quitter"].last_error or "")


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=1, factor=2, cap=5, jitter=0)
    assert [backoff.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]


async def test_health_keeps_the_failure_that_began_a_run_of_failures() -> None:
    """The first failure is the cause; retries that meet its symptoms only update
    ``last_error``. A part that ran well before failing again starts a new run."""
    supervisor = Supervisor(backoff=Backoff(initial=0.01, cap=0.01, jitter=0), healthy_after=0.2)
    errors = iter(
        [
            OSError("database or disk is full"),
            ConnectionError("could not connect to the broker"),
            ConnectionError("could not connect to the broker"),
            None,  # runs well for a while, then fails anew
            ValueError("a bad frame"),
        ]
    )
    seen: list[tuple[str | None, str | None]] = []

    async def part() -> None:
        health = supervisor.health["part"]
        seen.append((health.cause, health.last_error))
        error = next(errors, None)
        if error is None:
            if len(seen) > 5:
                supervisor.stop()
                await asyncio.Event().wait()
            await asyncio.sleep(0.3)
            raise RuntimeError("stopped after a good run") from KeyError("gone")
        raise error

    supervisor.add("part", part)
    await asyncio.wait_for(supervisor.run(), 5)
    first = "OSError: database or disk is full"
    assert seen[3] == (first, "ConnectionError: could not connect to the broker")
    assert seen[4] == (
        "RuntimeError: stopped after a good run (from KeyError: 'gone')",
        "RuntimeError: stopped after a good run (from KeyError: 'gone')",
    )
    assert seen[5] == (seen[4][0], "ValueError: a bad frame")  # a follow-on: cause kept
    assert supervisor.health["part"].as_dict()["cause"] == seen[4][0]
