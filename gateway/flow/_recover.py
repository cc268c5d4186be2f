"""Start-up: settle what a previous run left unsettled, resend only what never reached the wire.

``journaled``: never published, so it is sent now (same cmd_id) unless older than
``resend_max_age``. ``sent``: it may have reached the device, so it is never sent again:
marked ``timeout`` (outcome unknown); its rental waits in state ``unknown`` for an undock, or
a station status fresh enough to settle it. Rentals whose spot had opened before the crash
are taken back, so their undock still starts the trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockgate.gateway.flow._commands import Outcome
from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.flow._rentals import Rentals
from dockgate.gateway.flow._types import Rental, TapDecision
from dockgate.gateway.store import JournalEntry


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``recover`` did with the commands a previous run left unsettled (journal ids)."""

    resent: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


class Recoverer:
    """Settles the journal and takes back the rentals of a previous run, once, at start-up."""

    def __init__(self, parts: FlowParts, rentals: Rentals, resend_max_age: float) -> None:
        self.parts = parts
        self.rentals = rentals
        self.resend_max_age = resend_max_age

    async def recover(self) -> Recovery:
        report = Recovery()
        by_command = {r.command_id: r for r in self.rentals.load()}
        to_send: list[tuple[JournalEntry, Rental | None]] = []
        now = self.parts.clock()
        for entry in self.parts.store.commands.unfinished():
            rental = by_command.pop(entry.id, None)
            if entry.state == "sent":
                self._unknown(entry, rental, report)
            elif self.parts.runner.parse(entry) is None or (
                now - entry.created_at > self.resend_max_age
            ):
                self._drop(entry, rental, report)
            else:
                to_send.append((entry, rental))
        for rental in by_command.values():  # settled before the crash: acked or timed out
            self._take_back(rental)
        for entry, rental in to_send:
            report.resent.append(entry.id)
            await self._resend(entry, rental)
        return report

    def _unknown(self, entry: JournalEntry, rental: Rental | None, report: Recovery) -> None:
        """Marked sent: it may be on the wire. Never sent again; its outcome is unknown."""
        if rental is not None:
            rental.sent_at = entry.updated_at  # marked sent: on the wire
        self.parts.runner.settle(entry, "timeout", Outcome("unknown", "gateway restarted"))
        report.unknown.append(entry.id)
        if rental is not None:
            self.rentals.resume(rental, "unknown")

    def _drop(self, entry: JournalEntry, rental: Rental | None, report: Recovery) -> None:
        """Never sent, and too old (or not the flow's): failed, its rental forgotten."""
        self.parts.runner.settle(entry, "failed", Outcome("not-sent", "stale at restart"))
        report.dropped.append(entry.id)
        if rental is not None:
            self.rentals.forget(rental)

    def _take_back(self, rental: Rental) -> None:
        command = self.parts.store.commands.get(rental.command_id)
        if command.state == "failed":
            self.rentals.forget(rental)
        elif rental.state == "unknown":  # still unsettled when the last run died too
            rental.sent_at = command.updated_at
            self.rentals.resume(rental, "unknown")
        else:
            self.rentals.resume(rental, "open")

    async def _resend(self, entry: JournalEntry, rental: Rental | None) -> None:
        """Never on the wire: sent now, with the cmd_id of its key (the device acts once)."""
        runner = self.parts.runner
        if rental is None:
            self.parts.tasks.spawn(runner.dispatch(entry))
            return
        self.rentals.resume(rental, "unlocking", timer=False)
        decision = TapDecision(
            True,
            "unlocking",
            station_id=rental.station_id,
            spot=rental.spot,
            spot_id=rental.spot_id,
            command_id=entry.id,
        )
        self.rentals.after_unlock(decision, await runner.dispatch(entry))
