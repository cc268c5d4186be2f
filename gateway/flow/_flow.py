"""The tap-to-ride flow: a verified tap becomes an unlocked spot, a trip, and its cost.

Everything it needs is local (store, outbox, rules bundle, MQTT port): the backend is
never called, it learns what happened from the outbox. Writes that belong together commit
together (a trip, its outbox event and the vehicle command that follows from it).

``RideFlow`` only composes: taps (:class:`TapDesk`), pending rentals (:class:`Rentals`),
trips (:class:`TripKeeper`), alerts (:class:`AlertDesk`), device messages
(:class:`DeviceMessages`, :class:`StationMessages`, :class:`TelemetryRuns`), start-up
recovery (:class:`Recoverer`) and operator commands (:class:`ManualCommands`), each given
the few parts it uses.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Unpack

from dockgate.gateway.flow._alerts import AlertDesk
from dockgate.gateway.flow._commands import CommandRunner, Settled
from dockgate.gateway.flow._devices import DeviceMessages
from dockgate.gateway.flow._manual import ManualCommands
from dockgate.gateway.flow._parts import Feedback, FlowParts, Site, Tasks
from dockgate.gateway.flow._reader_taps import ReaderTaps
from dockgate.gateway.flow._recover import Recoverer, Recovery
from dockgate.gateway.flow._rentals import Rentals, Where
from dockgate.gateway.flow._settings import FlowOptions, FlowSettings
from dockgate.gateway.flow._stations import StationMessages
from dockgate.gateway.flow._taps import TapDesk
from dockgate.gateway.flow._telemetry import TelemetryRuns
from dockgate.gateway.flow._trips import TripKeeper
from dockgate.gateway.flow._types import CommandPort, Rental, TapDecision
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.protocol import DeviceMessage
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.rules import RulesEngine
from dockgate.gateway.store import JournalEntry, Store, Trip
from dockgate.gateway.taps import Tap


class RideFlow:
    """Taps, rentals, trips and rule decisions for one network of docking stations.

    ``send`` is the MQTT command port; the site and the timings are keyword arguments
    (:class:`FlowOptions`: ``network_id``, ``readers``, ``station_devices``,
    ``undock_timeout``, ...). ``on_unlock_latency(seconds)`` (or ``metrics``, whose
    ``tap_to_unlock`` histogram is then observed) gets the gateway's time from a verified tap
    to its unlock handed to the port. After a restart, a rental whose unlock may have reached
    the station (``unknown``) is cancelled only by a fresh status (``settle_margin``,
    ``outcome_timeout``) and is then kept ``tombstone_ttl`` seconds, so a late undock of its
    vehicle still starts the trip.
    """

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        rules: RulesEngine,
        send: CommandPort,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Any | None = None,
        on_unlock_latency: Callable[[float], None] | None = None,
        enroll_vehicles: bool = False,
        **options: Unpack[FlowOptions],
    ) -> None:
        settings = FlowSettings(**options)
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.rules = rules
        self.network_id = settings.network_id
        self.readers = dict(settings.readers)
        self.clock = clock
        self.runner = CommandRunner(store, outbox, send, clock)
        self.tasks = Tasks()
        site = Site(settings.network_id, settings.station_devices or {})
        parts = FlowParts(store, outbox, rules, self.runner, site, self.tasks, clock)
        if on_unlock_latency is None and metrics is not None:
            on_unlock_latency = metrics.tap_to_unlock.observe
        feedback = Feedback(parts)
        #: messages the flow could not place, by why
        self.ignored: Counter[str] = Counter()
        self._rentals = Rentals(parts, feedback, settings)
        self._trips = TripKeeper(parts, self._rentals)
        self._taps = TapDesk(parts, self._rentals, feedback, self.readers, on_unlock_latency)
        #: alerts the flow opened and resolved, by type (``alerts.raised``, ``alerts.cleared``)
        self.alerts = alerts = AlertDesk(parts)
        #: device messages screened: ``stale`` (older than the state applied), ``duplicate``
        #: (a redelivery recognised), ``clock_skew`` (restamped), ``failed`` (rolled back)
        self.inbound: Counter[str] = Counter()
        inbound, enroll = self.inbound, enroll_vehicles  # enroll: unknown vehicles join
        self._reader_taps = ReaderTaps(parts, self._taps, self.ignored)
        self._devices = DeviceMessages(
            parts,
            StationMessages(
                parts, self._rentals, self._trips, alerts, self.ignored, settings, inbound
            ),
            TelemetryRuns(
                parts, self._trips, alerts, self.ignored, inbound, enroll_vehicles=enroll
            ),
            alerts,
            self.ignored,
            inbound,
            enroll_vehicles=enroll,
            reader_taps=self._reader_taps,
        )
        self._recoverer = Recoverer(parts, self._rentals, settings.resend_max_age)
        self._manual = ManualCommands(parts)

    # --- taps ------------------------------------------------------------------------------
    async def on_tap(self, tap: Tap, *, station_id: int | None = None) -> TapDecision:
        """Refuse (recorded, rider told) or unlock a spot; returns once the spot answered."""
        return await self._taps.on_tap(tap, station_id=station_id)

    def prepare(
        self, tap: Tap, *, station_id: int | None = None
    ) -> tuple[TapDecision, JournalEntry | None]:
        """Decide on a tap and, if accepted, journal the unlock (nothing is sent yet)."""
        return self._taps.prepare(tap, station_id=station_id)

    def verify_reader_taps(self, verify: Callable[[TapEvent], Tap]) -> None:
        """Taps that readers publish on the broker are verified with ``verify`` (the
        daemon's ``TapHandler.handle``), then decided as a direct reader's; until this is
        called they are only counted (``ignored["reader-tap-unverified"]``)."""
        self._reader_taps.verify = verify

    # --- device messages -------------------------------------------------------------------
    async def on_device_message(self, msg: DeviceMessage) -> None:
        """Handle one validated device message (never raises for device behaviour)."""
        self._devices.handle((msg,))

    async def on_device_messages(self, batch: Sequence[DeviceMessage]) -> None:
        """Handle a driver batch (``driver.get_batch(n)``), in arrival order, in one
        transaction: acknowledge the batch to the broker once this returns."""
        self._devices.handle(batch)

    def clock_skewed_devices(self) -> dict[str, int]:
        """Devices whose last message had an implausible clock (``<network>/<kind>/<id>``)
        with that clock's offset in ms (device minus gateway; positive: ahead)."""
        return dict(self._devices.skewed.offsets)

    # --- operators, start-up, trips --------------------------------------------------------
    async def send_api_command(
        self, target_kind: str, target_id: int, command: str, args: dict[str, Any], key: str
    ) -> Settled:
        """Send a command the API journaled (lock, unlock, max_speed of a spot or vehicle)."""
        return await self._manual.send(target_kind, target_id, command, args, key)

    async def recover(self) -> Recovery:
        """Settle what a previous run left: resend only what never reached the wire."""
        return await self._recoverer.recover()

    def trip_cost(self, trip: Trip, now: float) -> int:
        """The trip's cost in cents from the pricing window it started in."""
        return self._trips.cost(trip, now)

    @property
    def rentals(self) -> dict[Where, Rental]:
        """Pending rentals by (station id, spot number)."""
        return self._rentals.pending

    @property
    def tombstones(self) -> dict[Where, tuple[Rental, float]]:
        """Rentals cancelled while ``unknown``, kept with their expiry for a late undock."""
        return self._rentals.tombstones

    # --- background work -------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; kept until done, cancelled by ``aclose``."""
        return self.tasks.spawn(coro)

    async def drain(self) -> None:
        """Wait for every background command and timer (for tests and shutdown)."""
        await self.tasks.drain()

    async def aclose(self) -> None:
        await self.tasks.aclose()
