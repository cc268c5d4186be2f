"""The tap-to-ride flow: a verified tap becomes an unlocked spot, a trip, and its cost.

Everything it needs is local (store, outbox, rules bundle, MQTT port): the backend is
never called, it learns what happened from the outbox. Writes that belong together commit
together (a trip, its outbox event and the vehicle command that follows from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dockgate.gateway.flow._book import RentalBook
from dockgate.gateway.flow._commands import CommandRunner, Settled
from dockgate.gateway.flow._devices import DeviceHandling
from dockgate.gateway.flow._manual import send_manual
from dockgate.gateway.flow._rent import choose_spot, rider_refusal
from dockgate.gateway.flow._types import CommandPort, Rental, TapDecision
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.protocol import DeviceRef, StationFeedback, new_command_id
from dockgate.gateway.rules import RulesEngine
from dockgate.gateway.rules.pricing import pricing_at, trip_cost
from dockgate.gateway.store import Conflict, Store
from dockgate.gateway.taps import Tap

log = logging.getLogger(__name__)
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``recover`` did with the commands a previous run left unsettled (journal ids)."""

    resent: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


def tap_key(tap: Tap) -> str:
    """The idempotency key of a tap, hashed (no UID in the journal).

    A tap whose SUN message verified: UID and read counter (a re-delivered tap, or the
    same tap after a restart, finds its journaled unlock). Any other tap also carries its
    verdict, its reader and its read's time: a replay (which repeats the UID and counter of
    the tap it copies) is never folded into the accepted original, and read errors (no URL,
    no counter) never share one key; only the very same tap handed over again does.
    """
    e = tap.event
    if tap.accepted:
        raw = f"{tap.uid}:{tap.read_ctr}" if tap.read_ctr is not None else f"{e.url}"
    else:
        raw = (
            f"refused:{tap.reason}:{tap.uid}:{tap.read_ctr}:{e.url}:{e.reader}"
            f":{e.wall_time!r}:{e.presented_at!r}"
        )
    return "tap:" + hashlib.sha256(raw.encode()).hexdigest()[:24]


class RideFlow(DeviceHandling):
    """Taps, rentals, trips and rule decisions for one network of docking stations.

    ``readers`` maps a reader id to its station id; ``station_devices`` maps a station id to
    its MQTT device id (default: the id as text). ``send`` is the MQTT command port.
    ``on_unlock_latency(seconds)`` (or ``metrics``, whose ``tap_to_unlock`` histogram is then
    observed) gets the gateway's time from a verified tap to its unlock handed to the port.
    After a restart, a rental whose unlock may have reached the station (``unknown``) is
    cancelled only by a fresh status (``settle_margin``, ``outcome_timeout``) and is then
    kept ``tombstone_ttl`` seconds, so a late undock of its vehicle still starts the trip.
    """

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        rules: RulesEngine,
        send: CommandPort,
        *,
        network_id: int,
        readers: Mapping[str, int],
        station_devices: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.time,
        undock_timeout: float = 60.0,
        resend_max_age: float = 30.0,
        metrics: Any | None = None,
        on_unlock_latency: Callable[[float], None] | None = None,
        settle_margin: float = 2.0,
        outcome_timeout: float = 15.0,
        tombstone_ttl: float = 300.0,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.rules = rules
        self.network_id = network_id
        self.readers = dict(readers)
        self.station_devices = dict(station_devices or {})
        self.clock = clock
        self.undock_timeout = undock_timeout
        self.resend_max_age = resend_max_age
        self.settle_margin = settle_margin
        self.outcome_timeout = outcome_timeout
        self.tombstone_ttl = tombstone_ttl
        self.runner = CommandRunner(store, outbox, send, clock)
        if on_unlock_latency is None and metrics is not None:
            on_unlock_latency = metrics.tap_to_unlock.observe
        self.on_unlock_latency = on_unlock_latency
        self.book = RentalBook(store.db)
        self.rentals: dict[tuple[int, int], Rental] = {}  # (station id, spot number)
        # unknown rentals cancelled: (rental, expiry); a late undock still starts the trip
        self.tombstones: dict[tuple[int, int], tuple[Rental, float]] = {}
        self._recent: OrderedDict[str, TapDecision] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._held: list[list[Row]] | None = None  # sends waiting for a batch's commit
        DeviceHandling.__init__(self)

    # --- helpers ---------------------------------------------------------------------------
    def station_device(self, station_id: int) -> DeviceRef:
        return DeviceRef.station(
            self.network_id, self.station_devices.get(station_id, str(station_id))
        )

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; kept until done, cancelled by ``aclose``."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for every background command and timer (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _active_rentals(self, rider_id: int) -> int:
        pending = sum(1 for r in self.rentals.values() if r.rider_id == rider_id)
        return len(self.store.open_trips(rider_id)) + pending

    def _remember(self, key: str, decision: TapDecision) -> TapDecision:
        self._recent[key] = decision
        while len(self._recent) > 4096:
            self._recent.popitem(last=False)
        return decision

    async def send_api_command(
        self, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
    ) -> Settled:
        """Send a command the API journaled (lock, unlock, max_speed of a spot or vehicle)."""
        return await send_manual(self, target_kind, target_id, command, args, key)

    # --- taps ------------------------------------------------------------------------------
    async def on_tap(self, tap: Tap, *, station_id: int | None = None) -> TapDecision:
        """Refuse (recorded, rider told) or unlock a spot; returns once the spot answered."""
        started = time.monotonic()
        decision, entry = self.prepare(tap, station_id=station_id)
        if entry is None:
            return decision
        probe = None
        if self.on_unlock_latency is not None:
            since = tap.verified_at or started  # monotonic, like the reader's timestamps
            observe = self.on_unlock_latency

            def probe() -> None:
                observe(max(0.0, time.monotonic() - since))

        settled = await self.runner.dispatch(entry, on_send=probe)
        return self._after_unlock(decision, settled)

    def prepare(self, tap: Tap, *, station_id: int | None = None) -> tuple[TapDecision, Row | None]:
        """Decide on a tap and, if accepted, journal the unlock (nothing is sent yet).

        Returns the decision and the journal entry to dispatch (None when refused or when
        this tap was already handled: a re-delivered tap never makes a second command).
        """
        if tap.duplicate:
            return TapDecision(tap.accepted, "duplicate", tap.reason), None
        key = tap_key(tap)
        seen = self._recent.get(key)
        if seen is not None:
            return replace(seen, status="duplicate"), None
        if station_id is None:
            station_id = self.readers.get(tap.event.reader)
        if station_id is None:
            return self._refuse(tap, key, None, "unknown_reader"), None
        if not tap.accepted:
            return self._refuse(tap, key, station_id, "invalid_tag", detail=tap.reason), None
        journaled = self.store.command_by_key(key)
        if journaled is not None:
            decision = TapDecision(
                True, "duplicate", station_id=station_id, command_id=journaled["id"]
            )
            return self._remember(key, decision), None
        record = self.store.record_by_uid(tap.uid) if tap.uid else None
        if record is None:
            return self._refuse(tap, key, station_id, "unknown_record"), None
        rider = self.store.rider_for_record(record["id"])
        if rider is None:
            return self._refuse(tap, key, station_id, "not_paired", record=record), None
        now = self.clock()
        active = self._active_rentals(rider["id"])
        why = rider_refusal(rider, self.rules, active, now)
        if why is not None:
            return self._refuse(tap, key, station_id, why, record=record, rider=rider), None
        reserved = {r.spot_id for r in self.rentals.values() if r.station_id == station_id}
        station = self.store.station(station_id)
        choice, why = choose_spot(self.store, self.rules, station, active, reserved, now)
        if choice is None:
            return self._refuse(
                tap, key, station_id, why or "no_vehicle", record=record, rider=rider
            ), None
        ctx = {
            "rental": True,
            "rider_id": rider["id"],
            "record_id": record["id"],
            "vehicle_id": choice.vehicle_id,
            "serial": choice.serial,
            "station_id": station_id,
            "spot_id": choice.spot_id,
            "reader": tap.event.reader,
        }
        with self.store.transaction():
            entry = self.runner.journal(
                key,
                self.station_device(station_id),
                choice.spot_id,
                {"cmd": "unlock-spot", "spot": choice.spot},
                ctx=ctx,
            )
            if entry is None:  # the same tap, raced in concurrently
                return TapDecision(True, "duplicate", station_id=station_id), None
            self.store.count_scan(record["id"])
            self._add_rental(entry, ctx, now)
            self.outbox.append(
                "tap.accepted",
                {**ctx, "read_ctr": tap.read_ctr, "command_id": entry["id"], "at": now},
                idempotency_key=f"{key}:accepted",
                priority=Priority.OUTCOME,
            )
        decision = TapDecision(
            True,
            "unlocking",
            None,
            None,
            station_id,
            rider["id"],
            record["id"],
            choice.vehicle_id,
            choice.spot_id,
            choice.spot,
            entry["id"],
        )
        return self._remember(key, decision), entry

    def _refuse(
        self,
        tap: Tap,
        key: str,
        station_id: int | None,
        reason: str,
        *,
        detail: str | None = None,
        record: Row | None = None,
        rider: Row | None = None,
    ) -> TapDecision:
        """Record the refusal (scan counted, outbox event) and tell the rider at the station."""
        decision = TapDecision(
            False,
            "refused",
            reason,
            detail,
            station_id,
            rider["id"] if rider else None,
            record["id"] if record else None,
        )
        with self.store.transaction():
            if record is not None:
                self.store.count_scan(record["id"])
            self.outbox.append(
                "tap.refused",
                {
                    "reason": reason,
                    "detail": detail,
                    "reader": tap.event.reader,
                    "station_id": station_id,
                    "record_id": decision.record_id,
                    "rider_id": decision.rider_id,
                    "read_ctr": tap.read_ctr,
                    "at": self.clock(),
                },
                idempotency_key=f"{key}:refused",
                priority=Priority.OUTCOME,
            )
        if station_id is not None:
            self.feedback(station_id, "refused", reason, reader=tap.event.reader)
        return self._remember(key, decision)

    def feedback(
        self,
        station_id: int,
        result: str,
        reason: str | None,
        *,
        reader: str | None = None,
        spot: int | None = None,
    ) -> None:
        """Tell the rider at the station (display/buzzer); fire and forget, not journaled."""
        try:
            cmd = StationFeedback(
                cmd_id=new_command_id(),
                reader=reader,
                spot=spot,
                result=result,
                reason=(reason or "")[:40] or None,
            )
        except ValueError:
            return
        self.spawn(self._send_feedback(self.station_device(station_id), cmd))

    async def _send_feedback(self, device: DeviceRef, cmd: StationFeedback) -> None:
        with contextlib.suppress(Exception):
            await self.runner.send(device, cmd)

    # --- rentals ---------------------------------------------------------------------------
    def _add_rental(
        self, entry: Row, ctx: dict[str, Any], at: float, state: str = "unlocking"
    ) -> Rental:
        rental = Rental(
            entry["idempotency_key"],
            entry["id"],
            ctx["rider_id"],
            ctx.get("record_id"),
            ctx["vehicle_id"],
            ctx["serial"],
            ctx["station_id"],
            ctx["spot_id"],
            int(entry_spot(entry)),
            ctx.get("reader"),
            at,
            state,  # type: ignore[arg-type]
        )
        self.rentals[(rental.station_id, rental.spot)] = rental
        self.book.add(rental)
        return rental

    def _set_state(self, rental: Rental, state: str) -> None:
        rental.state = state  # type: ignore[assignment]
        self.book.set_state(rental.key, state)

    def _resume(self, rental: Rental, state: str, *, timer: bool = True) -> None:
        """Take back a rental of a previous run (its undock may still come)."""
        self.rentals[(rental.station_id, rental.spot)] = rental
        self._set_state(rental, state)
        if timer:
            self.spawn(self._undock_timer(rental))

    def _after_unlock(self, decision: TapDecision, settled: Settled) -> TapDecision:
        rental = self.rentals.get((decision.station_id, decision.spot))  # type: ignore[arg-type]
        if settled.state == "failed":
            if rental is not None:
                self._cancel_rental(rental, "unlock_failed", relock=False)
            self.feedback(
                decision.station_id,
                "refused",
                "unlock_failed",  # type: ignore[arg-type]
                reader=rental.reader if rental else None,
                spot=decision.spot,
            )
            return replace(
                decision,
                accepted=False,
                status="refused",
                reason="unlock_failed",
                detail=settled.reason,
            )
        # acked, or timed out (the spot may have opened): wait for the vehicle to leave
        if rental is not None:
            self._set_state(rental, "open")
            self.spawn(self._undock_timer(rental))
        status = "unlocked" if settled.state == "acked" else "unlocking"
        return replace(decision, status=status, detail=settled.status)

    async def _undock_timer(self, rental: Rental) -> None:
        left = self.undock_timeout - max(0.0, self.clock() - rental.created_at)
        try:
            await asyncio.wait_for(rental.done.wait(), max(0.0, left))
        except TimeoutError:
            if self.rentals.get((rental.station_id, rental.spot)) is rental:
                self._cancel_rental(rental, "not_undocked", relock=True)

    def _cancel_rental(self, rental: Rental, reason: str, *, relock: bool) -> None:
        """The vehicle never left: forget the rental, lock the spot again if it was opened.

        An ``unknown`` rental (its unlock may have reached the station) is kept as a
        tombstone for ``tombstone_ttl``: if its vehicle leaves the spot after all, the
        rider's trip still starts (``rental.cancelled`` then ``trip.started``).
        """
        self.rentals.pop((rental.station_id, rental.spot), None)
        rental.done.set()
        if rental.state == "unknown":
            self._bury(rental)
        entry = None
        with self.store.transaction():
            self.book.remove(rental.key)
            if relock:
                entry = self.runner.journal(
                    f"{rental.key}:relock",
                    self.station_device(rental.station_id),
                    rental.spot_id,
                    {"cmd": "lock-spot", "spot": rental.spot},
                )
            self.outbox.append(
                "rental.cancelled",
                {
                    "command_id": rental.command_id,
                    "rider_id": rental.rider_id,
                    "station_id": rental.station_id,
                    "spot_id": rental.spot_id,
                    "vehicle_id": rental.vehicle_id,
                    "reason": reason,
                    "at": self.clock(),
                },
                idempotency_key=f"{rental.key}:cancelled",
                priority=Priority.OUTCOME,
            )
        if entry is not None:
            self.spawn(self.runner.dispatch(entry))

    def _bury(self, rental: Rental) -> None:
        now = self.clock()
        for where, (_, expiry) in list(self.tombstones.items()):
            if expiry <= now:
                del self.tombstones[where]
        self.tombstones[(rental.station_id, rental.spot)] = (rental, now + self.tombstone_ttl)

    def unearth(self, station_id: int, spot: int, serial: str | None) -> Rental | None:
        """The cancelled-unknown rental of this spot and vehicle, if still kept (taken)."""
        kept = self.tombstones.get((station_id, spot))
        if kept is None:
            return None
        rental, expiry = kept
        if expiry <= self.clock():
            del self.tombstones[(station_id, spot)]
            return None
        if serial is not None and serial != rental.serial:
            return None
        del self.tombstones[(station_id, spot)]
        return rental

    def start_trip(self, rental: Rental) -> int | None:
        """The vehicle left its spot: trip, outbox event and vehicle unlock in one commit."""
        self.rentals.pop((rental.station_id, rental.spot), None)
        rental.done.set()
        now = self.clock()
        try:
            with self.store.transaction():
                self.book.remove(rental.key)
                trip_id = self.store.start_trip(
                    rental.rider_id,
                    rental.vehicle_id,
                    record_id=rental.record_id,
                    station_id=rental.station_id,
                    spot_id=rental.spot_id,
                )
                self.outbox.append(
                    "trip.started",
                    {
                        "trip_id": trip_id,
                        "rider_id": rental.rider_id,
                        "vehicle_id": rental.vehicle_id,
                        "station_id": rental.station_id,
                        "spot_id": rental.spot_id,
                        "command_id": rental.command_id,
                        "at": now,
                    },
                    idempotency_key=f"trip:{trip_id}:started",
                    priority=Priority.OUTCOME,
                )
                entry = self.runner.journal(
                    f"trip:{trip_id}:unlock-vehicle",
                    DeviceRef.vehicle(self.network_id, rental.serial),
                    rental.vehicle_id,
                    {"cmd": "unlock-vehicle", "light": self._auto_light()},
                    trip_id=trip_id,
                )
        except Conflict as exc:
            log.warning("flow: rental %s not started: %s", rental.command_id, exc)
            return None
        if entry is not None:
            self.spawn(self.runner.dispatch(entry))
        return trip_id

    def _auto_light(self) -> bool:
        settings = self.rules.bundle.config.vehicle_settings
        return any(v.auto_light for v in settings)

    def trip_cost(self, trip: Row, now: float) -> int:
        """The trip's cost in cents from the pricing window it started in."""
        b = self.rules.bundle
        p = pricing_at(b.config.pricing, trip["started_at"], b.timezone)
        if p is None:
            return 0
        hold = self.store.hold_seconds(trip, now)
        ride = max(0.0, now - trip["started_at"] - hold)
        return round(trip_cost(p, ride, hold) * 100)

    def end_trip(
        self, trip: Row, *, station_id: int | None, spot_id: int | None, reason: str, serial: str
    ) -> Row | None:
        """Close a trip with its cost and lock the vehicle, in one commit."""
        now = self.clock()
        cost = self.trip_cost(trip, now)
        try:
            with self.store.transaction():
                ended = self.store.end_trip(
                    trip["id"], cost=cost, station_id=station_id, spot_id=spot_id
                )
                self.outbox.append(
                    "trip.ended",
                    {
                        "trip_id": trip["id"],
                        "rider_id": trip["rider_id"],
                        "vehicle_id": trip["vehicle_id"],
                        "station_id": station_id,
                        "spot_id": spot_id,
                        "cost": cost,
                        "reason": reason,
                        "started_at": trip["started_at"],
                        "ended_at": ended["ended_at"],
                    },
                    idempotency_key=f"trip:{trip['id']}:ended",
                    priority=Priority.OUTCOME,
                )
                entry = self.runner.journal(
                    f"trip:{trip['id']}:lock-vehicle",
                    DeviceRef.vehicle(self.network_id, serial),
                    trip["vehicle_id"],
                    {"cmd": "lock-vehicle", "trip_on_hold": False},
                    trip_id=trip["id"],
                )
        except Conflict:
            return None
        if entry is not None:
            self._send_after(entry)
        return ended

    def _send_after(self, entry: Row) -> None:
        """Dispatch in the background; inside a telemetry batch, once it has committed and
        in the order of the batch's other commands."""
        if self._held is not None:
            self._held.append([entry])
        else:
            self.spawn(self.runner.dispatch(entry))

    # --- start-up --------------------------------------------------------------------------
    async def recover(self) -> Recovery:
        """Settle what a previous run left: resend only what never reached the wire.

        ``journaled``: never published, so it is sent now (same cmd_id) unless older than
        ``resend_max_age``. ``sent``: it may have reached the device, so it is never sent
        again: marked ``timeout`` (outcome unknown); its rental waits in state ``unknown`` for
        an undock, or a station status that is fresh (not retained, device ``ts`` later than
        the send plus ``settle_margin``; any status once ``outcome_timeout`` has passed) to
        settle it. Rentals whose spot had opened before the crash are taken back, so their
        undock still starts the trip.
        """
        report = Recovery()
        now = self.clock()
        by_command = {r.command_id: r for r in self.book.load()}
        to_send: list[tuple[Row, Rental | None]] = []
        for entry in self.store.unfinished_commands():
            parsed = self.runner.parse(entry)
            rental = by_command.pop(entry["id"], None)
            if entry["state"] == "sent":
                if rental is not None:
                    rental.sent_at = float(entry["updated_at"])  # marked sent: on the wire
                self.runner.settle(
                    entry, "timeout", {"status": "unknown", "reason": "gateway restarted"}
                )
                report.unknown.append(entry["id"])
                if rental is not None:
                    self._resume(rental, "unknown")
            elif parsed is None or now - entry["created_at"] > self.resend_max_age:
                self.runner.settle(
                    entry, "failed", {"status": "not-sent", "reason": "stale at restart"}
                )
                report.dropped.append(entry["id"])
                if rental is not None:
                    self.book.remove(rental.key)
            else:
                to_send.append((entry, rental))
        for rental in by_command.values():  # settled before the crash: acked or timed out
            command = self.store.command(rental.command_id)
            if command["state"] == "failed":
                self.book.remove(rental.key)
            elif rental.state == "unknown":  # still unsettled when the last run died too
                rental.sent_at = float(command["updated_at"])
                self._resume(rental, "unknown")
            else:
                self._resume(rental, "open")
        for entry, rental in to_send:
            report.resent.append(entry["id"])
            if rental is None:
                self.spawn(self.runner.dispatch(entry))
                continue
            self._resume(rental, "unlocking", timer=False)
            decision = TapDecision(
                True,
                "unlocking",
                station_id=rental.station_id,
                spot=rental.spot,
                spot_id=rental.spot_id,
                command_id=entry["id"],
            )
            self._after_unlock(decision, await self.runner.dispatch(entry))
        return report


def entry_spot(entry: Row) -> int:
    parsed = CommandRunner.parse(entry)
    return int(parsed[1]["spot"]) if parsed else 0
