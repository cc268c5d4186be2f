"""API tokens and a command channel that answers at once, for tests that drive the local API."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from dockgate.api import CommandOutcome
from dockgate.api.ports import CommandStatus

__all__ = ["READ_TOKEN", "SYNC_TOKEN", "AckingSender"]

SYNC_TOKEN = "sync-token-0123456789abcdef"
READ_TOKEN = "tech-token-0123456789abcdef"


class AckingSender:
    """A command channel that answers at once (the MQTT driver takes its place in the flow).

    ``status`` is the outcome every command gets; ``"slow"`` never answers within the API's
    command timeout, to exercise it.
    """

    def __init__(self, status: str = "acked") -> None:
        self.status = status
        self.sent: list[tuple[str, int, str, dict[str, Any], str]] = []

    async def send_command(
        self,
        target_kind: str,
        target_id: int,
        command: str,
        args: dict[str, Any],
        *,
        idempotency_key: str,
    ) -> CommandOutcome:
        self.sent.append((target_kind, target_id, command, args, idempotency_key))
        if self.status == "slow":
            await asyncio.sleep(10)
        # "slow" is not a status a device reports: the sleep above outlasts every test's timeout.
        return CommandOutcome(cast(CommandStatus, self.status), None)
