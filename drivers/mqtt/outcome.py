"""What became of a command: the ack and the physical outcome, kept apart."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dockgate.gateway.protocol import Ack, DeviceRef, Outcome


class CommandStatus(StrEnum):
    """The final status of a command, from the gateway's point of view.

    `accepted` means the device acknowledged it and no physical outcome was awaited;
    `done` / `failed` are the device's report of what physically happened.
    """

    DONE = "done"
    FAILED = "failed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    NO_ACK = "no-ack"  # no ack after every retry
    NO_OUTCOME = "no-outcome"  # acked, but no physical outcome in time
    NOT_SENT = "not-sent"  # the driver could not publish (not connected, closed)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """The final report of one command; `attempts` counts publishes with the same id."""

    cmd_id: str
    cmd: str
    device: DeviceRef
    status: CommandStatus
    attempts: int
    ack: Ack | None = None
    outcome: Outcome | None = None
    ack_ms: float | None = None  # first publish -> ack
    outcome_ms: float | None = None  # first publish -> outcome

    @property
    def ok(self) -> bool:
        return self.status in (CommandStatus.DONE, CommandStatus.ACCEPTED)

    @property
    def reason(self) -> str | None:
        if self.outcome is not None and self.outcome.reason:
            return self.outcome.reason
        return self.ack.reason if self.ack is not None else None
