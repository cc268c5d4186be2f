"""The rules engine: a vehicle's state in, decisions out. No I/O; the clock is injected.

The engine keeps a small per-vehicle memory (``memory.VehicleMemory``: border hysteresis,
what was already commanded or told) and the open fleet alerts (``alerts.AlertBook``), so the
same sequence of states and clock readings always yields the same decisions. Place-based
rules act only on a fresh, accurate enough fix; a lock is only ever commanded at walking
speed or below, after the speed has been reduced.

Each rule family is a module of its own, testable alone: ``zones`` and ``speed`` (speed
zones, speed mode), ``border``, ``parking``, ``battery``, ``trip_rules`` (rent timings and
the credit rule), ``locking`` and ``vehicle_alerts``. This module runs them in order for
each report and turns what they decided into a ``Decisions``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from dockgate.gateway.rules.alerts import AlertBook
from dockgate.gateway.rules.border import (
    BORDER_LOCK,
    border_alert,
    border_notices,
    reduced_limits,
    track_border,
)
from dockgate.gateway.rules.bundle import BundleHolder, RuleBundle
from dockgate.gateway.rules.decisions import (
    NOTHING_DECIDED,
    Decisions,
    DecisionTally,
    make_decisions,
)
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.locking import (
    LOCK_RESEND_S,
    lock_decisions,
    lock_settled,
    pending_lock,
)
from dockgate.gateway.rules.memory import VehicleMemory
from dockgate.gateway.rules.parking import (
    OccupancyProvider,
    ParkingCounts,
    judge_ride_end,
    parking_note,
    parking_verdict,
)
from dockgate.gateway.rules.plan import KEY, GridCell, Plan
from dockgate.gateway.rules.speed import speed_command, vehicle_limits
from dockgate.gateway.rules.state import Trip, VehicleState
from dockgate.gateway.rules.trip_rules import TimerEvent, run_trip_rules, timer_decisions
from dockgate.gateway.rules.vehicle_alerts import alerts_settled, moving_alert, unlocked_alert
from dockgate.gateway.rules.zones import ride_through_note, ride_through_notice, zone_rules_at

__all__ = ["LOCK_RESEND_S", "OccupancyProvider", "RulesEngine", "Trip", "VehicleState"]

_LAT, _LON = attrgetter("lat"), attrgetter("lon")
_FIX_TIME, _ACCURACY = attrgetter("fix_time"), attrgetter("accuracy_m")
_NO_TIMERS: tuple[TimerEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class PlaceNotices:
    """What a usable fix's place asks to tell at once: the vehicle has just left the
    network, entered a zone it may not ride through, or may not end its trip here."""

    left_network: bool
    no_ride_through: bool
    parking_refused: bool


def usable_fix(p: Plan, st: VehicleState, now: float) -> bool:
    """Is the fix fresh and accurate enough for place rules (and a real position)?"""
    age = now - st.fix_time
    lat, lon = st.lat, st.lon
    return (
        -5.0 <= age <= p.max_fix_age_s
        and 0 <= st.accuracy_m <= p.max_accuracy_m
        and -90 <= lat <= 90  # NaN fails every comparison
        and -180 <= lon <= 180
    )


class RulesEngine:
    """Evaluates vehicle states against the running bundle; ``swap`` installs a new one.

    ``parking_occupancy(parking_id)`` (optional) tells how many vehicles are parked in a
    virtual parking now; where it is absent or answers None, the engine counts the vehicles
    it has seen parked there itself (locked, no trip, last usable fix inside).
    """

    def __init__(
        self,
        bundle: RuleBundle,
        clock: Callable[[], float] = time.time,
        parking_occupancy: OccupancyProvider | None = None,
    ) -> None:
        self._holder = BundleHolder(bundle)
        self._clock = clock
        self._counts = ParkingCounts(parking_occupancy)
        self._tracks: dict[str, VehicleMemory] = {}
        self.tally = DecisionTally()
        s = bundle.safety
        self.alerts = AlertBook(
            s.alert_clear_after_s, s.alert_update_interval_s, s.alert_max_raises_per_hour
        )

    @property
    def bundle(self) -> RuleBundle:
        return self._holder.current

    def swap(self, bundle: RuleBundle) -> RuleBundle:
        """Atomically replace the bundle; returns the old one. Vehicle memory is kept."""
        s = bundle.safety
        self.alerts.clear_after_s = s.alert_clear_after_s
        self.alerts.update_interval_s = s.alert_update_interval_s
        self.alerts.max_raises_per_hour = s.alert_max_raises_per_hour
        return self._holder.swap(bundle)

    # -- spatial step -------------------------------------------------------------------
    @staticmethod
    def _plan(b: RuleBundle) -> Plan:
        p = b.plan
        if p is None:  # a RuleBundle built by hand; compile its constants once
            p = Plan(b.config, b.entries, b.zones, b.border, b.projection, b.gbfs, b.timezone)
            object.__setattr__(b, "plan", p)
        return p

    def _place(
        self, p: Plan, st: VehicleState, now: float
    ) -> tuple[tuple[int, ...], float | None] | None:
        """(zone positions hit, border distance) from a usable fix; None if not usable."""
        if not usable_fix(p, st, now):
            return None
        x, y = p.xy(st.lat, st.lon)
        return p.grid.lookup(x, y)

    def evaluate(self, state: VehicleState, now: float | None = None) -> Decisions:
        """Decide for one vehicle state at ``now`` (default: the injected clock)."""
        b = self._holder.current
        t = self._clock() if now is None else now
        p = b.plan or self._plan(b)
        age = t - state.fix_time
        lat, lon = state.lat, state.lon
        if not (  # ``usable_fix``, inline
            -5.0 <= age <= p.max_fix_age_s
            and 0 <= state.accuracy_m <= p.max_accuracy_m
            and -90 <= lat <= 90  # NaN fails every comparison
            and -180 <= lon <= 180
        ):
            return self._apply_rules(b, p, state, t, (), None)
        x, y = (lon - p.lon0) * p.kx, (lat - p.lat0) * p.ky
        grid = p.grid
        c = grid.cell_m
        cell = grid.cells.get((x // c) * KEY + (y // c))  # ``CellGrid.cell``'s usual case inline
        if cell is not None and cell.refined:
            c = grid.fine_m
            cell = grid.fine.get((x // c) * KEY + (y // c))
        if cell is None:
            cell = grid.cell(x, y)
        hits = grid.zones_at(x, y, cell) if cell.crossing else cell.covering
        return self._apply_rules(b, p, state, t, hits, cell)

    def evaluate_many(
        self, states: Sequence[VehicleState], now: float | None = None
    ) -> list[Decisions]:
        """Decide for many vehicles at one instant; fix checks, projection and grid cell keys
        run in bulk."""
        b = self._holder.current
        t = self._clock() if now is None else now
        p = b.plan or self._plan(b)
        if not states:
            return []
        n = len(states)
        lat = np.fromiter(map(_LAT, states), float, n)
        lon = np.fromiter(map(_LON, states), float, n)
        age = t - np.fromiter(map(_FIX_TIME, states), float, n)
        acc = np.fromiter(map(_ACCURACY, states), float, n)
        ok = (
            (age >= -5.0)
            & (age <= p.max_fix_age_s)
            & (acc >= 0)
            & (acc <= p.max_accuracy_m)
            & (lat >= -90)
            & (lat <= 90)
            & (lon >= -180)
            & (lon <= 180)
        )
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        # Each fix's coarse and fine cell key (``CellGrid.cell``'s arithmetic, in bulk): most
        # fixes then cost one or two dict lookups; the rest (a cell not built yet) go through
        # ``CellGrid.cell``, and a cell a zone crosses tests the point (``zones_at``).
        # (An unusable fix may be NaN or infinite: its key is not used, and not warned about.)
        grid = p.grid
        c, f = grid.cell_m, grid.fine_m
        with np.errstate(all="ignore"):
            coarse = (np.floor_divide(x, c) * KEY + np.floor_divide(y, c)).tolist()
            fine = (np.floor_divide(x, f) * KEY + np.floor_divide(y, f)).tolist()
        cells, fines, build, zones_at = grid.cells.get, grid.fine.get, grid.cell, grid.zones_at
        apply_rules = self._apply_rules
        out: list[Decisions] = []
        append = out.append
        # A batch makes thousands of small acyclic objects that all live until it returns;
        # the cyclic collector would scan them (and the whole heap) several times over.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            for st, u, xi, yi, kc, kf in zip(
                states, ok.tolist(), x.tolist(), y.tolist(), coarse, fine, strict=True
            ):
                if not u:
                    append(apply_rules(b, p, st, t, (), None))
                    continue
                cell = cells(kc)
                if cell is not None and cell.refined:
                    cell = fines(kf)
                if cell is None:
                    cell = build(xi, yi)
                hits = zones_at(xi, yi, cell) if cell.crossing else cell.covering
                append(apply_rules(b, p, st, t, hits, cell))
            return out
        finally:
            if paused:
                gc.enable()

    # -- decisions ----------------------------------------------------------------------
    def _apply_rules(
        self,
        b: RuleBundle,
        p: Plan,
        st: VehicleState,
        now: float,
        hits: tuple[int, ...],
        cell: GridCell | None,
    ) -> Decisions:
        """Run the rules for one report: the place rules (from a usable fix, ``cell`` not
        None: ``hits`` are the zones there), the speed limits, the lock reasons, then what
        to tell the vehicle, the rider and the fleet."""
        vid = st.vehicle_id
        mem = self._tracks.get(vid)
        if mem is None:
            mem = self._tracks[vid] = VehicleMemory()
        trip = st.trip
        if (None if trip is None else trip.trip_id) != mem.trip.trip_id:
            mem.start_trip(trip)
        moving = st.speed_kph > p.walking
        notices: PlaceNotices | None = None
        if cell is not None:
            notices = self._read_place(p, st, now, mem, hits, cell, moving)
        elif mem.parking.parked_in and (trip is not None or not st.locked):
            self._counts.move(vid, mem.parking, ())
        lm = mem.limits
        if (  # the limits' sources changed (else ``vehicle_limits`` would reuse them)
            lm.place_limits is not mem.zones.limits
            or lm.plan is not p
            or lm.model != st.model_id
            or lm.battery != st.battery
        ):
            vehicle_limits(p, lm, mem.zones.limits, st.model_id, st.battery)
        ends = lm.battery_locks
        timers = _NO_TIMERS
        if trip is not None:
            tm = mem.trip
            if not (  # the trip rules' quiet time (``run_trip_rules`` checks it in full)
                tm.quiet_trip is trip
                and tm.quiet_plan is p
                and tm.quiet_from <= now < tm.quiet_until
            ):
                timers = run_trip_rules(p, tm, trip, now, moving)
            if tm.locks:
                ends += tm.locks
        outside = mem.border.outside
        locks = BORDER_LOCK + ends if p.border_lock and outside else ends
        limits, max_speed = lm.limits, lm.effective
        if locks and moving and not st.locked:  # slowed first, locked once at rest
            pending = mem.lock
            if pending.pending_from is not limits:  # made once per limits
                pending_lock(p, pending, lm)
            limits, max_speed = pending.pending_limits, pending.pending_max_speed
        # Most reports decide nothing: no notice or timer, the limit already sent, no lock
        # or unlock due, every fleet alert as it is.
        if (
            notices is None
            and not timers
            and max_speed == lm.sent_speed
            and lm.speed_sent
            and (
                # the usual cases of ``lock_settled``: locked already or slowed first; no
                # lock reason, none pending, nothing to unlock
                (
                    (st.locked or moving)
                    if locks
                    else mem.lock.sent_at is None and (trip is None or not st.locked)
                )
                or lock_settled(mem.lock, mem.trip, st, locks, moving, now)
            )
            and (
                # the usual case of ``alerts_settled``: no alert condition, no open alert
                (
                    (not st.locked if trip is not None else st.locked and not moving)
                    and not (outside and p.border_alert and cell is not None)
                    and self.alerts.open_for(vid) is None
                )
                or alerts_settled(
                    self.alerts.open_for(vid),
                    outside if p.border_alert and cell is not None else None,
                    moving and (st.locked or trip is None),
                    not st.locked and trip is None,
                )
            )
        ):
            return make_decisions(
                vid,
                now,
                NOTHING_DECIDED,
                max_speed,
                dict(limits),  # each Decisions its own dict
                mem.zones,
                mem.parking,
                cell is not None,
            )
        tm = mem.trip
        draft = Draft(b.version, st, now, tm.price if tm.cost_due else None, limits, max_speed)
        self._decide_what_to_tell(draft, p, mem, cell, notices, timers, locks, ends)
        decided = make_decisions(
            vid,
            now,
            draft,
            max_speed,
            dict(limits),
            mem.zones,
            mem.parking,
            cell is not None,
        )
        self.tally.count(decided)
        return decided

    def _read_place(
        self,
        p: Plan,
        st: VehicleState,
        now: float,
        mem: VehicleMemory,
        hits: tuple[int, ...],
        cell: GridCell,
        moving: bool,
    ) -> PlaceNotices | None:
        """The place rules at a usable fix: the zones and what they mean (speed zones, GBFS),
        the border, where a trip may end, which parking the vehicle is counted in. Returns
        what must be told at once (None: nothing)."""
        buffer = st.accuracy_m if st.accuracy_m > p.min_buffer_m else p.min_buffer_m
        zm, bm = mem.zones, mem.border
        if (  # the very zones of the last fix, same trip state and type: ``zone_rules_at``'s
            # first reuse, checked here without a call
            hits is zm.hits
            and zm.plan is p
            and zm.info is not None
            and zm.on_trip is (st.trip is not None)
            and zm.vehicle_type == st.vehicle_type_id
        ):
            rules = zm.rules
        else:
            rules = zone_rules_at(p, zm, st, hits, buffer, now)
        d = cell.border_distance
        left = (
            p.has_border_geometry
            # a border distance that leaves the side as it is (else ``track_border`` decides)
            and (
                d is None
                or bm.candidate_since is not None
                or (d > buffer if bm.outside else d < -buffer)
            )
            and track_border(p, bm, st, cell, buffer, now)
        )
        through = rules.ride_through_allowed
        no_through = (through is False or mem.trip.no_through_told) and ride_through_notice(
            mem.trip, through, st.trip is not None
        )
        limits = rules.limits
        if bm.outside and p.border_reduce:  # the border's slow-down, made once per limits
            limits = bm.reduced if bm.reduced_from is limits else reduced_limits(p, bm, limits)
        zm.limits = limits
        zm.inside_network = (not bm.outside) if p.has_border_geometry else through
        zm.zones = rules.labels
        pm = mem.parking
        refused = not (  # the last verdict stands (``ParkingMemory.judged``), or judge again
            pm.judged is rules
            and not (st.trip is not None and not moving and (rules.parkings or p.parking_required))
            and (moving or pm.told is None)
        ) and judge_ride_end(p, self._counts, pm, st, rules, moving, buffer)
        parked = rules.parking_ids if st.trip is None and st.locked else ()
        if parked != pm.parked_in:
            self._counts.move(st.vehicle_id, pm, parked)
        if left or no_through or refused:
            return PlaceNotices(left, no_through, refused)
        return None

    def _decide_what_to_tell(
        self,
        draft: Draft,
        p: Plan,
        mem: VehicleMemory,
        cell: GridCell | None,
        notices: PlaceNotices | None,
        timers: tuple[TimerEvent, ...],
        locks: tuple[str, ...],
        ends: tuple[str, ...],
    ) -> None:
        """The decisions of one report, in a fixed order: the border alert, the place's
        notices, the rent timings, lock or unlock, the other fleet alerts, and the speed
        limit (the first command, set before any lock)."""
        book = self.alerts
        st = draft.state
        moving = st.speed_kph > p.walking
        opened = book.open_for(st.vehicle_id)
        if p.border_alert and cell is not None and (mem.border.outside or opened is not None):
            border_alert(draft, book, p, cell, mem.border.outside)
        if notices is not None:
            if notices.no_ride_through:
                ride_through_note(draft)
            if notices.parking_refused:
                parking_note(draft, mem.parking)
            if notices.left_network and cell is not None:
                border_notices(draft, p, cell)
        if timers:
            timer_decisions(draft, timers)
        if locks or mem.lock.sent_at is not None or (st.trip is not None and st.locked):
            lock_decisions(draft, p, mem.lock, mem.trip, locks, ends, moving)
        if opened is not None or moving or not st.locked:  # else: no condition, none open
            moving_alert(draft, book, moving)
            unlocked_alert(draft, book)
        speed_command(draft, mem.limits)

    # -- virtual parkings -----------------------------------------------------------------
    def occupancy(self, parking_id: int) -> tuple[int, str]:
        """How many vehicles are parked in a virtual parking, and where the number is from:
        ``provider`` (the injected ``parking_occupancy``), or ``observed`` (the vehicles this
        engine last saw parked there: locked, no trip) when there is no provider, it answers
        None, or it fails (``provider-error``)."""
        return self._counts.occupancy(parking_id)

    # -- renting ------------------------------------------------------------------------
    def check_rent(
        self, state: VehicleState, rider_active_rentals: int, now: float | None = None
    ) -> tuple[bool, list[str]]:
        """May a rider start a trip on this vehicle? Returns (allowed, reasons refused)."""
        b = self._holder.current
        t = self._clock() if now is None else now
        p = b.plan or self._plan(b)
        reasons: list[str] = []
        rs = b.config.rent_settings
        if rs is not None:
            if state.battery < rs.min_battery_to_rent:
                reasons.append("rent_settings.min_battery_to_rent")
            if rider_active_rentals >= rs.max_simultaneous_rented_vehicle:
                reasons.append("rent_settings.max_simultaneous_rented_vehicle")
        place = self._place(p, state, t)
        if place is None:
            reasons.append("position.unusable")
        else:
            hits, border_d = place
            if border_d is not None and border_d < 0:
                reasons.append("border.outside")
            if b.gbfs is not None:
                res, _ = p.resolve(p.place(hits), state.vehicle_type_id, t)
                if res.ride_start_allowed is False:
                    reasons.append("gbfs.ride_start_allowed")
        return not reasons, reasons

    def check_end(self, state: VehicleState, now: float | None = None) -> tuple[bool, list[str]]:
        """May the rider end the trip here (asked when the rider ends it)? Returns (allowed,
        reasons refused): ``gbfs.ride_end_allowed``, ``parking-full``, ``outside-parking``,
        or ``position.unusable`` when the fix is stale or inaccurate and the bundle has a rule
        that needs the place (a required parking, GBFS rules). Occupancy is read now; the
        engine's memory is left alone. Ends the engine decides itself (battery, credit, time)
        are never refused."""
        b = self._holder.current
        t = self._clock() if now is None else now
        p = b.plan or self._plan(b)
        place = self._place(p, state, t)
        if place is None:
            needs_place = p.parking_required or p.gbfs is not None
            return (False, ["position.unusable"]) if needs_place else (True, [])
        hits, _ = place
        info = p.place(hits)
        reasons: list[str] = []
        if (
            p.gbfs is not None
            and p.zone_rules(info, state.vehicle_type_id, True, t).ride_end_allowed is False
        ):
            reasons.append("gbfs.ride_end_allowed")
        if info.parkings or p.parking_required:
            buffer = max(state.accuracy_m, p.min_buffer_m)
            verdict = parking_verdict(p, self._counts, info.parkings, state, buffer)
            if verdict.refusal is not None:
                reasons.append(verdict.refusal)
        return not reasons, reasons
