"""The rules engine: a vehicle's state in, decisions out. No I/O; the clock is injected.

The engine keeps a small per-vehicle memory (border hysteresis, what was already commanded,
open alerts), so the same sequence of states and clock readings always yields the same
decisions. Place-based rules act only on a fresh, accurate enough fix; a lock is only ever
commanded at walking speed or below, after the speed has been reduced.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
import shapely

from dockgate.gateway.rules.alerts import AlertBook
from dockgate.gateway.rules.bundle import BundleHolder, RuleBundle
from dockgate.gateway.rules.decisions import (
    AlertDecision,
    AlertSeverity,
    AlertType,
    Command,
    CommandKind,
    Decisions,
    Notification,
    NotificationKind,
    make_decisions,
)
from dockgate.gateway.rules.plan import KEY, SPEED, Plan, point
from dockgate.gateway.rules.pricing import trip_cost

LOCK_RESEND_S = 30.0


@dataclass(frozen=True, slots=True)
class Trip:
    """The current trip. ``credit`` is the rider's balance when it started (None: unknown)."""

    trip_id: str
    started_at: float
    credit: float | None = None
    on_hold: bool = False
    hold_started_at: float | None = None
    hold_seconds: float = 0.0
    last_moved_at: float | None = None


@dataclass(frozen=True, slots=True)
class VehicleState:
    """A vehicle's latest telemetry: GPS fix (degrees, seconds, metres), km/h, battery %."""

    vehicle_id: str
    lat: float
    lon: float
    fix_time: float
    accuracy_m: float
    speed_kph: float
    battery: int
    locked: bool
    trip: Trip | None = None
    vehicle_type_id: str | None = None
    model_id: int | None = None


@dataclass(slots=True)
class _Track:
    """A vehicle's memory. The fields read on every report come first (fewer cache lines)."""

    trip_id: str | None = None
    done: set[str] = field(default_factory=set)
    zone_hits: tuple[int, ...] = ()
    zone_plan: Any = None
    outside: bool = False
    candidate_since: float | None = None
    # The meaning of the last fix's zones (info, GBFS result) for a vehicle type and trip state.
    memo_info: Any = None
    memo_r: Any = None
    memo_on_trip: bool = False
    memo_vtype: str | None = None
    place_limits: dict[str, int] = field(default_factory=dict)
    inside: bool | None = None
    zones: tuple[str, ...] = ()
    end_reasons: tuple[str, ...] = ()
    end_parkings: tuple[dict[str, Any], ...] = ()
    ride_end_allowed: bool | None = None
    parked_in: tuple[int, ...] = ()
    # The limits and their minimum, per place limits, bundle, model and battery.
    limits_from: dict[str, int] | None = None
    limits_plan: Any = None
    limits_model: Any = None
    limits_battery: Any = None
    limits: dict[str, int] = field(default_factory=dict)
    effective: int | None = None
    # Before ``quiet_until`` (from ``quiet_from``) no trip rule can change, per trip and bundle.
    quiet_trip: Trip | None = None
    quiet_plan: Any = None
    quiet_from: float = math.inf
    quiet_until: float = -math.inf
    quiet_locks: tuple[str, ...] = ()
    quiet_cost: bool = False
    sent_speed: int | None = None
    speed_sent_once: bool = False
    lock_sent_at: float | None = None
    end_noted: tuple | None = None
    # The place limits with the border's reduction, made once per place limits.
    reduced_from: dict[str, int] | None = None
    reduced: dict[str, int] = field(default_factory=dict)
    too_long_at: float | None = None
    price: Any = None
    price_plan: Any = None
    credit_key: Trip | None = None
    credit_from: float = 0.0


_MOVING = AlertType.VEHICLE_ILLEGAL_MOVING
_UNLOCKED = AlertType.UNEXPECTED_UNLOCK
_OUT = AlertType.VEHICLE_OUT_OF_NETWORK_AREA
_HIGH = AlertSeverity.HIGH
_LOW = AlertSeverity.LOW
_END_GBFS = ("gbfs.ride_end_allowed",)
_LOCK_BORDER = ("border.lock_vehicle",)
_LOCK_BATTERY = ("rent_settings.min_battery_to_auto_lock",)
_LOCK_TIME = ("rent_timings.trip_auto_lock",)
_LOCK_CREDIT = ("rent_settings.credit_depletion_auto_lock",)
_COST_DUE: Any = object()  # a trip cost that reached the credit, worked out only if needed
_LAT, _LON = attrgetter("lat"), attrgetter("lon")
_FIX_TIME, _ACCURACY = attrgetter("fix_time"), attrgetter("accuracy_m")
_dwithin = shapely.lib.dwithin


def _usable(p: Plan, st: VehicleState, now: float) -> bool:
    age = now - st.fix_time
    lat, lon = st.lat, st.lon
    return (
        -5.0 <= age <= p.max_fix_age_s
        and 0 <= st.accuracy_m <= p.max_accuracy_m
        and -90 <= lat <= 90  # NaN fails every comparison
        and -180 <= lon <= 180
    )


OccupancyProvider = Callable[[int], "int | None"]
_PARKING_RULE = {"parking-full": "virtual_parkings.capacity", "outside-parking": "parking_required"}
_PARKING_NOTE = {
    "parking-full": NotificationKind.PARKING_FULL,
    "outside-parking": NotificationKind.OUTSIDE_PARKING,
}


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
        self._occupancy = parking_occupancy
        self._parked: dict[int, set[str]] = {}
        self._tracks: dict[str, _Track] = {}
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

    def _place(self, p: Plan, st: VehicleState, now: float) -> tuple | None:
        """(zone positions hit, border distance) from a usable fix; None if not usable."""
        if not _usable(p, st, now):
            return None
        return p.grid.lookup((st.lon - p.lon0) * p.kx, (st.lat - p.lat0) * p.ky)

    def evaluate(self, state: VehicleState, now: float | None = None) -> Decisions:
        """Decide for one vehicle state at ``now`` (default: the injected clock)."""
        b = self._holder._bundle
        t = self._clock() if now is None else now
        p = b.plan or self._plan(b)
        age = t - state.fix_time
        lat, lon = state.lat, state.lon
        if (
            -5.0 <= age <= p.max_fix_age_s
            and 0 <= state.accuracy_m <= p.max_accuracy_m
            and -90 <= lat <= 90  # NaN fails every comparison
            and -180 <= lon <= 180
        ):
            x, y = (lon - p.lon0) * p.kx, (lat - p.lat0) * p.ky
            grid = p.grid
            c = grid.cell_m
            cell = grid.cells.get((x // c) * KEY + (y // c))  # ``locate``'s usual case inline
            if cell is not None and cell[4]:
                c = grid.fine_m
                cell = grid.fine.get((x // c) * KEY + (y // c))
            place = grid.locate(x, y) if cell is None or cell[1] else (cell[0], cell[2], cell)
        else:
            place = None
        return self._decide(b, p, state, t, place)

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
        # fixes then cost one or two dict lookups; the rest (a cell not built yet, or a zone
        # boundary crossing it) go through ``locate``.
        # (An unusable fix may be NaN or infinite: its key is not used, and not warned about.)
        grid = p.grid
        c, f = grid.cell_m, grid.fine_m
        with np.errstate(all="ignore"):
            coarse = (np.floor_divide(x, c) * KEY + np.floor_divide(y, c)).tolist()
            fine = (np.floor_divide(x, f) * KEY + np.floor_divide(y, f)).tolist()
        cells, fines, locate = grid.cells.get, grid.fine.get, grid.locate
        decide = self._decide
        out = []
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
                if u:
                    cell = cells(kc)
                    if cell is not None and cell[4]:
                        cell = fines(kf)
                    if cell is None or cell[1]:
                        append(decide(b, p, st, t, locate(xi, yi)))
                    else:
                        append(decide(b, p, st, t, (cell[0], cell[2], cell)))
                else:
                    append(decide(b, p, st, t, None))
            return out
        finally:
            if paused:
                gc.enable()

    # -- decisions ----------------------------------------------------------------------
    def _inputs(
        self,
        b: RuleBundle,
        st: VehicleState,
        now: float,
        tr: _Track,
        duration: float | None,
        cost: float | None,
    ) -> dict[str, Any]:
        """The values behind a decision; built only when a decision is made."""
        d: dict[str, Any] = {
            "at": now,
            "lat": st.lat,
            "lon": st.lon,
            "fix_age_s": round(now - st.fix_time, 3),
            "accuracy_m": st.accuracy_m,
            "speed_kph": st.speed_kph,
            "battery": st.battery,
            "locked": st.locked,
            "trip_id": tr.trip_id,
            "bundle": b.version,
        }
        if duration is not None:
            d["trip_duration_s"] = round(duration, 3)
        if cost is not None:
            if cost is _COST_DUE:
                trip = st.trip  # off hold: the cost at this duration, as the credit rule has it
                cost = trip_cost(tr.price, duration - trip.hold_seconds, trip.hold_seconds)  # type: ignore[operator, union-attr]
            d["trip_cost"] = round(cost, 4)
            d["credit"] = st.trip.credit  # type: ignore[union-attr]
        return d

    def _decide(
        self, b: RuleBundle, p: Plan, st: VehicleState, now: float, place: tuple | None
    ) -> Decisions:
        vid = st.vehicle_id
        tr = self._tracks.get(vid)
        if tr is None:
            tr = self._tracks[vid] = _Track()
        trip = st.trip
        tid = None if trip is None else trip.trip_id
        if tid != tr.trip_id:
            tr.trip_id = tid
            tr.done = {k for k in tr.done if not k.startswith("trip:")}
            tr.too_long_at = None
            tr.price_plan = None
            tr.end_noted = None
            tr.quiet_trip = None
        done = tr.done
        locked = st.locked
        battery = st.battery
        moving = st.speed_kph > p.walking
        duration = cost = None
        border_d = cell_d = None

        # Place: border hysteresis, zones, GBFS rules (only from a usable fix).
        left_now = no_through_note = False
        end_note: tuple | None = None
        if place is not None:
            hits, border_d, cell = place
            buffer = st.accuracy_m if st.accuracy_m > p.min_buffer_m else p.min_buffer_m
            held = tr.zone_hits
            same = held is hits and tr.zone_plan is p  # the very zones of the last fix
            if not same:
                if held and held != hits and tr.zone_plan is p:
                    hits = self._hold_speed_zones(p, st, held, hits, buffer)
                tr.zone_hits = hits
                tr.zone_plan = p
            if p.has_border_geometry:
                if border_d is None:  # near the border: the cell's side and gap may settle it
                    if cell[5] and cell[6] > buffer:
                        border_d = cell[6] * cell[5]  # a bound; exact only for the inputs
                        cell_d = cell
                    else:
                        border_d = self._border_exact(p, st, cell)
                outside = tr.outside
                if (border_d > buffer) if outside else (border_d < -buffer):
                    since = tr.candidate_since
                    if since is None:
                        since = tr.candidate_since = now
                    if now - since >= p.dwell_s:
                        tr.outside = outside = not outside
                        tr.candidate_since = None
                        left_now = outside
                elif tr.candidate_since is not None:
                    tr.candidate_since = None
                inside: bool | None = not outside
            else:
                inside = None
            # What the zones mean (and the GBFS rules there): kept from the last fix when its
            # zones, the vehicle type and whether on a trip are the same (no time windows).
            on_trip = trip is not None
            vtype = st.vehicle_type_id
            if (
                same
                and tr.memo_info is not None
                and tr.memo_on_trip is on_trip
                and tr.memo_vtype == vtype
            ):
                info, r = tr.memo_info, tr.memo_r
            else:
                info = p._places.get(hits) or p.place(hits)
                if (
                    info is tr.memo_info  # other cells, the same zones
                    and tr.memo_on_trip is on_trip
                    and tr.memo_vtype == vtype
                ):
                    r = tr.memo_r
                else:
                    r = None
                    if p.gbfs is not None:
                        r = None if info.timed else info.gbfs_cache.get((vtype, on_trip))
                        if r is None:
                            r = p.gbfs_place(info, vtype, on_trip, now)
                    tr.memo_info = None if info.timed else info
                    tr.memo_r, tr.memo_on_trip, tr.memo_vtype = r, on_trip, vtype
            if r is not None:
                place_limits, labels, ride_end, through = r
                r_end = ride_end
                if through is False and trip is not None:
                    if "trip:no_through" not in done:
                        done.add("trip:no_through")
                        no_through_note = True
                elif through and "trip:no_through" in done:
                    done.discard("trip:no_through")
                if inside is None and through is not None:
                    inside = through
            else:
                place_limits, labels, ride_end = info.limits, info.labels, None
                r_end = None
            if tr.outside and p.border_reduce:
                # The same place limits give the same reduced ones: made once, not per report.
                if tr.reduced_from is not place_limits:
                    tr.reduced_from = place_limits
                    tr.reduced = {**place_limits, "border.reduce_vehicle_speed": p.slow}
                place_limits = tr.reduced
            tr.place_limits = place_limits
            tr.inside = inside
            tr.zones = labels
            # May the trip end here? GBFS's ride_end_allowed, then the virtual parkings; a
            # trip ends at rest, so the parkings are looked at only at walking speed or below.
            if trip is not None and not moving and (info.parkings or p.parking_required):
                refusal, seen = self._parking_end(p, info.parkings, st, buffer)
                tr.end_parkings = seen
                if refusal is not None:
                    ride_end = False
                    tr.end_reasons = (
                        ("gbfs.ride_end_allowed", refusal) if r_end is False else (refusal,)
                    )
                    # Tell the rider once per refusal (and parkings), not per report.
                    key = (refusal, tuple(q["id"] for q in seen))
                    if key != tr.end_noted:
                        tr.end_noted = end_note = key
                else:
                    tr.end_reasons = ("gbfs.ride_end_allowed",) if ride_end is False else ()
                    tr.end_noted = None
                    if ride_end is None and seen:
                        ride_end = True  # a parking here has room
            else:
                tr.end_reasons = _END_GBFS if ride_end is False else ()
                if tr.end_parkings:
                    tr.end_parkings = ()
                if not moving:
                    tr.end_noted = None
            tr.ride_end_allowed = ride_end
            parked = info.parking_ids if (trip is None and locked) else ()
            if parked != tr.parked_in:
                self._repark(vid, tr, parked)
        elif tr.parked_in and (trip is not None or not locked):
            self._repark(vid, tr, ())

        # The speed limits: the place's, the speed mode's, the battery's; worked out again
        # only when one of them changes (the dict is shared: it is never changed in place).
        model = st.model_id
        if (
            tr.limits_from is not tr.place_limits
            or tr.limits_plan is not p
            or tr.limits_model != model
            or tr.limits_battery != battery
        ):
            self._limits(p, tr, model, battery)
        limits = tr.limits
        effective = tr.effective

        # Reasons to lock, and whether the trip ends with the lock.
        lock_reasons: tuple[str, ...] = _LOCK_BORDER if p.border_lock and tr.outside else ()
        end_reasons: tuple[str, ...] = ()
        if p.lock_battery is not None and battery < p.lock_battery:
            lock_reasons += _LOCK_BATTERY
            end_reasons += _LOCK_BATTERY
        rt = p.timings
        timer_events: list[tuple[Any, Any]] | tuple = ()
        if trip is not None:
            duration = now - trip.started_at
            q = tr.quiet_trip
            # Off hold, the trip rules change only at ``quiet_until`` (worked out when they
            # last ran, for this trip, equal to it, and this bundle; a trip on hold is never
            # kept): until then their lock reasons stand (time and cost only grow) and no
            # timer is due, so they are not run again.
            if (
                tr.quiet_from <= now < tr.quiet_until
                and (q is trip or (q is not None and q == trip))
                and tr.quiet_plan is p
            ):
                trip_locks = tr.quiet_locks
                if trip_locks:
                    lock_reasons += trip_locks
                    end_reasons += trip_locks
                    if tr.quiet_cost:
                        cost = _COST_DUE  # the exact cost, worked out if an input needs it
            else:
                trip_locks = ()
                if rt is not None and rt.trip_auto_lock > 0 and duration >= rt.trip_auto_lock:
                    trip_locks = _LOCK_TIME
                if p.credit_lock and trip.credit is not None:
                    if tr.price_plan is not p:  # the trip's pricing window, once per trip+bundle
                        tr.price, tr.price_plan = p.price(trip.started_at), p
                        tr.credit_key = None
                    price = tr.price
                    # Off hold, the cost only grows with the trip's duration: the duration at
                    # which it reaches the credit is worked out once, and the exact cost is
                    # computed only from there on.
                    if tr.credit_key is not trip:  # cached per Trip object
                        self._credit_from(tr, trip, price)
                    if price is not None and (trip.on_hold or duration >= tr.credit_from):
                        hold_s = trip.hold_seconds
                        if trip.on_hold and trip.hold_started_at:
                            hold_s += now - trip.hold_started_at
                        c = trip_cost(price, duration - hold_s, hold_s)
                        if c >= trip.credit:
                            cost = c
                            trip_locks += _LOCK_CREDIT
                if trip_locks:
                    lock_reasons += trip_locks
                    end_reasons += trip_locks
                if rt is not None and (
                    duration >= p.timers_from_s
                    or trip.on_hold
                    or (not moving and trip.last_moved_at is not None and rt.trip_auto_pause > 0)
                ):
                    timer_events = self._trip_timers(trip, now, duration, rt, tr, moving)
                if trip.on_hold:
                    tr.quiet_trip = None
                else:
                    tr.quiet_trip, tr.quiet_plan, tr.quiet_from = trip, p, now
                    tr.quiet_locks, tr.quiet_cost = trip_locks, cost is not None
                    tr.quiet_until = self._quiet_until(p, trip, tr, trip_locks)

        # Emit, in a fixed order; ``inputs`` is built once, at the first decision.
        commands: list[Command] = []
        notes: list[Notification] = []
        alerts: list[AlertDecision] = []
        inp: dict[str, Any] | None = None
        book = self.alerts
        vopen = book._open.get(vid)
        if p.border_alert and place is not None:
            if tr.outside:
                # ``book.steady(vid, _OUT, _HIGH)`` inline: open, not absent, not below HIGH.
                o = None if vopen is None else vopen.get(_OUT)
                if o is None or o.absent_since is not None or o.severity == _LOW:
                    inp = self._inputs(b, st, now, tr, duration, cost)
                    a = book.present(
                        vid,
                        _OUT,
                        _HIGH,
                        now,
                        "border.trigger_alert",
                        {
                            **inp,
                            "border_distance_m": self._border_exact(p, st, cell_d)
                            if cell_d is not None
                            else border_d,
                        },
                    )
                    if a is not None:
                        alerts.append(a)
                    vopen = book._open.get(vid)
            elif vopen is not None and _OUT in vopen:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                a = book.absent(vid, _OUT, now, "border.back_inside", inp)
                if a is not None:
                    alerts.append(a)
                vopen = book._open.get(vid)
        if left_now or no_through_note or end_note is not None or timer_events:
            # Rare: a border crossing, a GBFS or parking notice, a trip timer.
            if left_now and p.border_sound:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                commands.append(
                    Command(CommandKind.PLAY_SOUND, vid, "border.play_vehicle_sound", inp)
                )
            if no_through_note:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                notes.append(
                    Notification(
                        NotificationKind.NO_RIDE_THROUGH_ZONE,
                        vid,
                        "gbfs.ride_through_allowed",
                        True,
                        inp,
                    )
                )
            if end_note is not None:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                notes.append(
                    Notification(
                        _PARKING_NOTE[end_note[0]],
                        vid,
                        _PARKING_RULE[end_note[0]],
                        True,
                        {**inp, "parkings": [dict(q) for q in tr.end_parkings]},
                    )
                )
            if left_now and p.border_notify and trip is not None:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                notes.append(
                    Notification(
                        NotificationKind.OUT_OF_NETWORK_AREA,
                        vid,
                        "border.notify_user",
                        True,
                        {
                            **inp,
                            "border_distance_m": self._border_exact(p, st, cell_d)
                            if cell_d is not None
                            else border_d,
                        },
                    )
                )
            for kind, extra_inputs in timer_events:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                if isinstance(kind, CommandKind):
                    commands.append(Command(kind, vid, extra_inputs[0], {**inp, **extra_inputs[1]}))
                else:
                    notes.append(Notification(kind, vid, extra_inputs[0], extra_inputs[1], inp))

        if lock_reasons:
            if locked:
                pass
            elif moving:
                limits = {**limits, "pending_lock": p.slow}
                if effective is None or p.slow < effective:
                    effective = p.slow
            elif tr.lock_sent_at is None or now - tr.lock_sent_at >= LOCK_RESEND_S:
                tr.lock_sent_at = now
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                linputs = {**inp, "lock_reasons": list(lock_reasons)}
                commands.append(Command(CommandKind.LOCK, vid, lock_reasons[0], linputs))
                if trip is not None and end_reasons and "trip:end" not in done:
                    done.add("trip:end")
                    commands.append(Command(CommandKind.END_TRIP, vid, end_reasons[0], linputs))
        else:
            tr.lock_sent_at = None
            if trip is not None and locked and not trip.on_hold and "trip:unlock" not in done:
                done.add("trip:unlock")
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                commands.append(
                    Command(
                        CommandKind.UNLOCK,
                        vid,
                        "trip.active",
                        inp,
                        auto_light=p.auto_light.get(st.model_id),  # type: ignore[arg-type]
                    )
                )

        # Alerts that need no position; the book is only touched when something may change.
        # (moving while locked or without a trip, unlocked without a trip, or open alerts)
        if vopen is not None or (trip is None and (moving or not locked)) or (moving and locked):
            if moving and (locked or trip is None):
                o = None if vopen is None else vopen.get(_MOVING)
                if o is None or o.absent_since is not None or o.severity == _LOW:
                    inp = inp or self._inputs(b, st, now, tr, duration, cost)
                    a = book.present(vid, _MOVING, _HIGH, now, "vehicle.moving_without_trip", inp)
                    if a is not None:
                        alerts.append(a)
                    vopen = book._open.get(vid)
            elif vopen is not None and _MOVING in vopen:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                a = book.absent(vid, _MOVING, now, "vehicle.still", inp)
                if a is not None:
                    alerts.append(a)
                vopen = book._open.get(vid)
            if not locked and trip is None:
                o = None if vopen is None else vopen.get(_UNLOCKED)
                if o is None or o.absent_since is not None or o.severity == _LOW:
                    inp = inp or self._inputs(b, st, now, tr, duration, cost)
                    a = book.present(
                        vid, _UNLOCKED, _HIGH, now, "vehicle.unlocked_without_trip", inp
                    )
                    if a is not None:
                        alerts.append(a)
            elif vopen is not None and _UNLOCKED in vopen:
                inp = inp or self._inputs(b, st, now, tr, duration, cost)
                a = book.absent(vid, _UNLOCKED, now, "vehicle.locked", inp)
                if a is not None:
                    alerts.append(a)

        if effective != tr.sent_speed or not tr.speed_sent_once:
            tr.sent_speed = effective
            tr.speed_sent_once = True
            reason = min(limits, key=lambda k: (limits[k], k)) if limits else "no_limit"
            inp = inp or self._inputs(b, st, now, tr, duration, cost)
            commands.insert(
                0,
                Command(
                    CommandKind.SET_MAX_SPEED,
                    vid,
                    reason,
                    {**inp, "limits": dict(limits)},
                    max_speed_kph=effective,
                ),
            )
        return make_decisions(
            vid,
            now,
            tuple(commands) if commands else (),
            tuple(alerts) if alerts else (),
            tuple(notes) if notes else (),
            effective,
            dict(limits) if limits is tr.limits else limits,  # each Decisions its own dict
            tr.inside,
            tr.zones,
            place is not None,
            tr.ride_end_allowed,
            tr.end_reasons,
        )

    @staticmethod
    def _limits(p: Plan, tr: _Track, model: int | None, battery: int) -> None:
        """The limits that apply before any pending lock, and their minimum, on the track."""
        pl = tr.place_limits
        limits = dict(pl)
        if p.has_speed_settings:
            limits["speed_mode"] = p.mode_speed.get(model, p.default_mode_speed)  # type: ignore[arg-type]
            if p.battery_slow_at is not None and battery <= p.battery_slow_at:
                limits["battery_slow_down"] = p.battery_slow_speed  # type: ignore[assignment]
        tr.limits_from, tr.limits_plan, tr.limits_model, tr.limits_battery = pl, p, model, battery
        tr.limits = limits
        tr.effective = min(limits.values()) if limits else None

    @staticmethod
    def _quiet_until(p: Plan, trip: Trip, tr: _Track, active: tuple[str, ...]) -> float:
        """The earliest time at which a trip rule may change (off hold): trip_auto_lock or
        the credit lock begins (once begun, they hold on while time goes forward), a too-long
        or stolen notification or the auto-pause is due. A little early on purpose (rounding),
        never late."""
        s = trip.started_at
        due = [math.inf]
        rt = p.timings
        if rt is not None:
            if rt.trip_auto_lock > 0 and _LOCK_TIME[0] not in active:
                due.append(s + rt.trip_auto_lock)
            too_long = s + rt.trip_too_long_notifications
            if tr.too_long_at is not None:
                too_long = max(too_long, tr.too_long_at + rt.trip_too_long_notifications_frequency)
            due.append(too_long)
            if "trip:stolen" not in tr.done:
                due.append(s + rt.vehicle_stolen)
            if (
                rt.trip_auto_pause > 0
                and trip.last_moved_at is not None
                and "trip:hold" not in tr.done
            ):
                due.append(trip.last_moved_at + rt.trip_auto_pause)
        if (
            p.credit_lock
            and trip.credit is not None
            and tr.price_plan is p
            and tr.credit_key is trip
            and tr.price is not None
            and _LOCK_CREDIT[0] not in active
        ):
            due.append(s + tr.credit_from)
        q = min(due)
        if q != math.inf:
            q -= 1e-3 + abs(q) * 1e-9  # NaN stays NaN: never quiet
        return q

    # -- virtual parkings -----------------------------------------------------------------
    def occupancy(self, parking_id: int) -> tuple[int, str]:
        """How many vehicles are parked in a virtual parking, and where the number is from:
        ``provider`` (the injected ``parking_occupancy``), or ``observed`` (the vehicles this
        engine last saw parked there: locked, no trip) when there is no provider, it answers
        None, or it fails (``provider-error``)."""
        f = self._occupancy
        if f is not None:
            try:
                n = f(parking_id)
            except Exception:  # the provider is the shell's; a failure is an unknown count
                return len(self._parked.get(parking_id, ())), "provider-error"
            if n is not None:
                return int(n), "provider"
        return len(self._parked.get(parking_id, ())), "observed"

    def _repark(self, vid: str, tr: _Track, parked: tuple[int, ...]) -> None:
        """Move a vehicle's place in the observed occupancy counts."""
        for pid in tr.parked_in:
            s = self._parked.get(pid)
            if s is not None:
                s.discard(vid)
                if not s:
                    del self._parked[pid]
        for pid in parked:
            self._parked.setdefault(pid, set()).add(vid)
        tr.parked_in = parked

    def _parking_end(
        self, p: Plan, parks: tuple[int, ...], st: VehicleState, buffer: float
    ) -> tuple[str | None, tuple[dict[str, Any], ...]]:
        """May a trip end at this fix as far as virtual parkings go? (refusal or None, the
        parkings looked at). A parking has room while its occupancy is below its capacity
        (capacity 0: never). The parkings the fix is in are looked at first; if none has
        room, those within the fix's buffer too (GPS error must not trap a rider next to a
        free parking). Refused: ``parking-full`` if parkings were found but all are full,
        ``outside-parking`` if the bundle requires a parking and none was found."""
        seen: list[dict[str, Any]] = []
        for i in parks:
            if self._room(p, i, seen):
                return None, tuple(seen)
        x, y = (st.lon - p.lon0) * p.kx, (st.lat - p.lat0) * p.ky
        for i in p.parkings_near(x, y, buffer):
            if i not in parks and self._room(p, i, seen):
                return None, tuple(seen)
        if seen:
            return "parking-full", tuple(seen)
        return ("outside-parking" if p.parking_required else None), ()

    def _room(self, p: Plan, i: int, seen: list[dict[str, Any]]) -> bool:
        z = p.parkings[i]
        n, source = self.occupancy(z.id)
        seen.append({"id": z.id, "capacity": z.capacity, "occupancy": n, "source": source})
        return n < z.capacity

    @staticmethod
    def _border_exact(p: Plan, st: VehicleState, cell: tuple) -> float:
        return p.grid.exact((st.lon - p.lon0) * p.kx, (st.lat - p.lat0) * p.ky, cell)

    @staticmethod
    def _hold_speed_zones(
        p: Plan, st: VehicleState, held: tuple[int, ...], hits: tuple[int, ...], buffer: float
    ) -> tuple[int, ...]:
        """Speed-zone hysteresis: a speed zone the vehicle was in still applies while the fix
        is within its buffer (accuracy) of the zone, so a ride along the zone's edge does not
        flap between two limits. Entering is never delayed: the lower limit may come early.
        """
        x, y = (st.lon - p.lon0) * p.kx, (st.lat - p.lat0) * p.ky
        geoms, entries, bounds = p.grid.geoms, p.entries, p.bounds
        pt = None
        keep: tuple[int, ...] = ()
        for i in held:
            if i in hits or entries[i].kind != SPEED:
                continue
            x0, y0, x1, y1 = bounds[i]
            if x < x0 - buffer or x > x1 + buffer or y < y0 - buffer or y > y1 + buffer:
                continue  # farther than the buffer from the zone's bounding box
            if pt is None:
                pt = point(x, y)
            if _dwithin(geoms[i], pt, buffer):
                keep += (i,)
        return tuple(sorted(hits + keep)) if keep else hits

    @staticmethod
    def _credit_from(tr: _Track, trip: Trip, price: Any) -> float:
        """The trip duration (off hold) from which the cost may reach the credit; a little
        early on purpose (the exact cost decides)."""
        tr.credit_key = trip
        if price is not None:
            fixed = price.unlock_price + trip.hold_seconds / 60.0 * price.on_hold_price
            if fixed >= trip.credit:  # type: ignore[operator]
                start = float("-inf")
            elif price.use_per_minute_price <= 0:
                start = float("inf")
            else:
                per_s = price.use_per_minute_price / 60.0
                ride_s = price.unlock_included_time + (trip.credit - fixed) / per_s  # type: ignore[operator]
                start = trip.hold_seconds + ride_s - 1e-3
            tr.credit_from = start
        return tr.credit_from

    @staticmethod
    def _trip_timers(
        trip: Trip, now: float, duration: float, rt: Any, tr: _Track, moving: bool
    ) -> list[tuple[Any, Any]]:
        """Rent timings that fire now: (command kind, (reason, extra inputs)) or
        (notification kind, (reason, to_rider))."""
        out: list[tuple[Any, Any]] = []
        done = tr.done
        if duration >= rt.trip_too_long_notifications and (
            tr.too_long_at is None
            or now - tr.too_long_at >= rt.trip_too_long_notifications_frequency
        ):
            tr.too_long_at = now
            out.append(
                (NotificationKind.TRIP_TOO_LONG, ("rent_timings.trip_too_long_notifications", True))
            )
        if duration >= rt.vehicle_stolen and "trip:stolen" not in done:
            done.add("trip:stolen")
            out.append((NotificationKind.VEHICLE_STOLEN, ("rent_timings.vehicle_stolen", False)))
        if (
            not trip.on_hold
            and not moving
            and rt.trip_auto_pause > 0
            and trip.last_moved_at is not None
            and now - trip.last_moved_at >= rt.trip_auto_pause
            and "trip:hold" not in done
        ):
            done.add("trip:hold")
            still = {"still_for_s": round(now - trip.last_moved_at, 3)}
            out.append((CommandKind.TRIP_HOLD, ("rent_timings.trip_auto_pause", still)))
        if (
            trip.on_hold
            and trip.hold_started_at is not None
            and rt.trip_max_pause > 0
            and now - trip.hold_started_at >= rt.trip_max_pause
            and "trip:end" not in done
        ):
            done.add("trip:end")
            paused = {"paused_for_s": round(now - trip.hold_started_at, 3)}
            out.append((CommandKind.END_TRIP, ("rent_timings.trip_max_pause", paused)))
        return out

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
        info = p.place(place[0])
        reasons: list[str] = []
        if p.gbfs is not None and p.gbfs_place(info, state.vehicle_type_id, True, t)[2] is False:
            reasons.append("gbfs.ride_end_allowed")
        if info.parkings or p.parking_required:
            buffer = max(state.accuracy_m, p.min_buffer_m)
            refusal, _ = self._parking_end(p, info.parkings, state, buffer)
            if refusal is not None:
                reasons.append(refusal)
        return not reasons, reasons
