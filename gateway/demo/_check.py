"""What a step's check raises, and the wait every check is built on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StepFailed(AssertionError):
    """A step of the day did not do what it should; the message says what was missing."""


async def until(check: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy; else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not seen within {timeout:.0f} s")
        await asyncio.sleep(0.05)
