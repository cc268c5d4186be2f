"""Journal a command before it is sent, send it, record its outcome: never twice on the wire.

The journal entry (``journaled``) commits first, possibly with the trip or event it belongs
to; it is marked ``sent`` just before the publish and settled (acked / failed / timeout) with
an outbox event in one transaction. The ``cmd_id`` on the wire is derived from the journal
key, so even a resend after a restart is the same command to the device, which never acts
twice on one id.

Settles are grouped: every command whose end comes within ``settle_window`` seconds of the
first (acks of one burst, timeouts of one deadline tick) is settled in one transaction, and
``dispatch`` returns once that has committed. A crash before the commit leaves the command
``sent``, which ``recover()`` marks ``timeout`` (outcome unknown) and never sends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockgate.gateway.flow._types import CommandPort
from dockgate.gateway.outbox import Outbox, Publication, events
from dockgate.gateway.protocol import COMMAND_ADAPTER, Command, DeviceKind, DeviceRef
from dockgate.gateway.store import JournalEntry, Store, StoreError

log = logging.getLogger(__name__)

#: Driver status -> journal state.
JOURNAL_STATE = {
    "done": "acked",
    "accepted": "acked",
    "failed": "failed",
    "rejected": "failed",
    "not-sent": "failed",
    "expired": "timeout",
    "no-ack": "timeout",
    "no-outcome": "timeout",
}


def command_id_for(key: str) -> str:
    """The wire ``cmd_id`` of a journal key: stable across restarts, reveals nothing."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def build_command(fields: dict[str, Any], key: str) -> Command:
    return COMMAND_ADAPTER.validate_python({**fields, "cmd_id": command_id_for(key)})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the driver said of a command (``attempts``: publishes; None if never sent here)."""

    status: str
    reason: str | None
    attempts: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The journal's ``outcome`` JSON (and the outcome event's fields)."""
        if self.attempts is None:
            return {"status": self.status, "reason": self.reason}
        return {"status": self.status, "reason": self.reason, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class Settled:
    """A command's end: journal ``state`` and the driver's ``status`` and ``reason``."""

    command_id: int
    state: str
    status: str
    reason: str | None = None


class CommandRunner:
    """The journal-then-send discipline shared by taps, trips and rule decisions."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        send: CommandPort,
        clock: Callable[[], float] = time.time,
        *,
        settle_window: float = 0.002,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.send = send
        self.clock = clock
        self.settle_window = settle_window
        self._settles: list[_QueuedSettle] = []
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        # journal id -> (args text, key, device, command) of entries journaled here, so that
        # dispatch need not parse and validate the command again (checked against the entry)
        self._built: dict[int, tuple[str, str, DeviceRef, Command]] = {}

    def journal(
        self,
        key: str,
        device: DeviceRef,
        target_id: int,
        fields: dict[str, Any],
        *,
        ctx: dict[str, Any] | None = None,
        trip_id: int | None = None,
    ) -> JournalEntry | None:
        """Write the command down (joins an open transaction); None if the key exists."""
        command = build_command(fields, key)  # refuse a malformed command before journaling
        kind = "spot" if fields["cmd"] in ("unlock-spot", "lock-spot") else device.kind.value
        args = {
            "device": [device.network, device.kind.value, device.device_id],
            "cmd": fields,
            "ctx": ctx or {},
        }
        entry, created = self.store.commands.journal(
            key, kind, target_id, fields["cmd"], args, trip_id=trip_id
        )
        if not created:
            return None
        built = self._built
        if len(built) >= 100_000:  # entries never dispatched (a rolled-back batch): forget
            built.clear()
        built[entry.id] = (entry.args, key, device, command)
        return entry

    @staticmethod
    def parse(entry: JournalEntry) -> tuple[DeviceRef, dict[str, Any], dict[str, Any]] | None:
        """(device, command fields, context) of a flow-journaled entry; None for others."""
        args = json.loads(entry.args)
        if not isinstance(args, dict) or "device" not in args or "cmd" not in args:
            return None
        net, kind, device_id = args["device"]
        return DeviceRef(int(net), DeviceKind(kind), device_id), args["cmd"], args.get("ctx", {})

    async def dispatch(
        self,
        entry: JournalEntry,
        *,
        on_send: Callable[[], None] | None = None,
        marked: bool = False,
    ) -> Settled:
        """Mark sent, publish, wait for the device, settle with an outbox event.

        ``on_send`` is called just before the command is handed to the port (latency probes).
        ``marked``: the caller has already marked it ``sent`` (many at once, just before).
        """
        built = self._built.pop(entry.id, None)
        if built is not None and built[0] == entry.args and built[1] == entry.idempotency_key:
            device, command = built[2], built[3]
            fields = {"cmd": command.cmd}
        else:
            parsed = self.parse(entry)
            if parsed is None:
                raise ValueError(f"command {entry.id} was not journaled by the flow")
            device, fields, _ctx = parsed
            command = build_command(fields, entry.idempotency_key)
        if not marked:
            self.store.commands.mark(entry.id, "sent")
        if on_send is not None:
            with contextlib.suppress(Exception):  # a probe never stops a command
                on_send()
        try:
            result = await self.send(device, command)
            status = str(getattr(result.status, "value", result.status))
            reason = result.reason
            attempts = result.attempts
        except Exception as exc:  # a closed driver or a bug: the command did not settle
            log.warning("flow: sending %s failed: %s", fields["cmd"], type(exc).__name__)
            status, reason, attempts = "not-sent", type(exc).__name__, 0
        state = JOURNAL_STATE.get(status, "failed")
        await self._settle_grouped(entry, state, Outcome(status, reason, attempts))
        return Settled(entry.id, state, status, reason)

    def settle(self, entry: JournalEntry, state: str, outcome: Outcome) -> None:
        """Record a command's end and its outbox event together, now."""
        with self.store.transaction():
            self.store.commands.mark(entry.id, state, outcome.as_dict())
            self.outbox.publish_many([self._outcome_event(entry, state, outcome)])

    def _outcome_event(
        self, entry: JournalEntry, state: str, outcome: Outcome, at: float | None = None
    ) -> Publication:
        event = events.CommandSettled(
            entry.id,
            entry.command,
            entry.target_kind,
            entry.target_id,
            entry.trip_id,
            state,
            outcome.status,
            outcome.reason,
            outcome.attempts,
            self.clock() if at is None else at,
        )
        return event, f"cmd:{entry.id}:{state}", None

    # -- grouped settles -----------------------------------------------------------------------
    async def _settle_grouped(self, entry: JournalEntry, state: str, outcome: Outcome) -> None:
        """Queue a settle for the next group commit and wait until it is durable."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._settles.append(_QueuedSettle(entry, state, outcome, self.clock(), done))
        if self._flush_handle is None:
            if self.settle_window > 0:
                self._flush_handle = loop.call_later(self.settle_window, self.flush_settles)
            else:
                self._flush_handle = loop.call_soon(self.flush_settles)
        try:
            await done
        except asyncio.CancelledError:
            # Cancelled (flow closing) before the group committed: write the group now (the
            # settle is still queued), so a command that ended keeps its final state.
            if self._settles:
                try:
                    self.flush_settles()
                except Exception:
                    log.exception("flow: settling commands on cancel failed")
            raise

    def flush_settles(self) -> None:
        """Commit every queued settle in one transaction (each alone if that fails)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        group, self._settles = self._settles, []
        if not group:
            return
        try:
            with self.store.transaction():
                self.store.commands.settle_many(
                    (q.entry.id, q.state, q.outcome.as_dict()) for q in group
                )
                self.outbox.publish_many(
                    [self._outcome_event(q.entry, q.state, q.outcome, q.at) for q in group]
                )
        except (StoreError, sqlite3.Error):  # one bad entry must not fail the others
            for q in group:
                try:
                    with self.store.transaction():
                        self.store.commands.mark(q.entry.id, q.state, q.outcome.as_dict())
                        self.outbox.publish_many(
                            [self._outcome_event(q.entry, q.state, q.outcome, q.at)]
                        )
                except Exception as exc:
                    if not q.done.done():
                        q.done.set_exception(exc)
                else:
                    _resolve(q.done)
            return
        except Exception as exc:
            for q in group:
                if not q.done.done():
                    q.done.set_exception(exc)
            return
        for q in group:
            _resolve(q.done)


@dataclass(slots=True)
class _QueuedSettle:
    entry: JournalEntry
    state: str
    outcome: Outcome
    at: float
    done: asyncio.Future[None]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
