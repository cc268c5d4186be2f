"""The rules engine: a vehicle's state in, decisions out. No I/O; the clock is injected.

The engine keeps a small per-vehicle memory (border hysteresis, what was already commanded,
open alerts), so the same sequence of states and clock readings always yields the same
decisions. Place-based rules act only on a fresh, accurate enough fix; a lock is only ever
commanded at walking speed or below, after the speed has been reduced.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.rules import gbfs as gbfs_mod
from gateway.rules.alerts import AlertBook
from gateway.rules.bundle import GBFS, PARKING, SPEED, BundleHolder, RuleBundle
from gateway.rules.decisions import (
    AlertDecision,
    AlertSeverity,
    AlertType,
    Command,
    CommandKind,
    Decisions,
    Notification,
    NotificationKind,
)
from gateway.rules.pricing import pricing_at, trip_cost

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
    outside: bool = False
    candidate_since: float | None = None
    place_limits: dict[str, int] = field(default_factory=dict)
    inside: bool | None = None
    zones: tuple[str, ...] = ()
    ride_end_allowed: bool | None = None
    sent_speed: int | None = None
    speed_sent_once: bool = False
    lock_sent_at: float | None = None
    done: set[str] = field(default_factory=set)
    too_long_at: float | None = None
    trip_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Place:
    usable: bool
    hits: list[int]
    border_d: float | None


class RulesEngine:
    """Evaluates vehicle states against the running bundle; ``swap`` installs a new one."""

    def __init__(self, bundle: RuleBundle, clock: Callable[[], float] = time.time) -> None:
        self._holder = BundleHolder(bundle)
        self._clock = clock
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
    def _usable(b: RuleBundle, st: VehicleState, now: float) -> bool:
        s = b.safety
        age = now - st.fix_time
        return (
            -5.0 <= age <= s.max_fix_age_s
            and 0 <= st.accuracy_m <= s.max_accuracy_m
            and math.isfinite(st.lat)
            and math.isfinite(st.lon)
            and -90 <= st.lat <= 90
            and -180 <= st.lon <= 180
        )

    def _place(self, b: RuleBundle, st: VehicleState, now: float) -> _Place:
        if not self._usable(b, st, now):
            return _Place(False, [], None)
        x, y = b.projection.xy(st.lat, st.lon)
        d = b.border.signed_distance(x, y) if b.border is not None else None
        return _Place(True, b.zones.at(x, y), d)

    def evaluate(self, state: VehicleState, now: float | None = None) -> Decisions:
        """Decide for one vehicle state at ``now`` (default: the injected clock)."""
        b = self._holder.current
        t = self._clock() if now is None else now
        return self._decide(b, state, t, self._place(b, state, t))

    def evaluate_many(
        self, states: Sequence[VehicleState], now: float | None = None
    ) -> list[Decisions]:
        """Decide for many vehicles at one instant; the spatial lookups run in bulk."""
        b = self._holder.current
        t = self._clock() if now is None else now
        ok = np.fromiter((self._usable(b, s, t) for s in states), bool, len(states))
        lats = np.fromiter((s.lat for s in states), float, len(states))[ok]
        lons = np.fromiter((s.lon for s in states), float, len(states))[ok]
        xs, ys = b.projection.xy_many(lats, lons)
        hits = b.zones.at_many(xs, ys)
        ds = b.border.signed_distance_many(xs, ys).tolist() if b.border is not None else None
        out = []
        j = 0
        for i, st in enumerate(states):
            if ok[i]:
                place = _Place(True, hits[j], ds[j] if ds is not None else None)
                j += 1
            else:
                place = _Place(False, [], None)
            out.append(self._decide(b, st, t, place))
        return out

    # -- decisions ----------------------------------------------------------------------
    def _decide(self, b: RuleBundle, st: VehicleState, now: float, place: _Place) -> Decisions:
        cfg = b.config
        s = cfg.safety
        vid = st.vehicle_id
        tr = self._tracks.get(vid)
        if tr is None:
            tr = self._tracks[vid] = _Track()
        trip = st.trip
        if (trip.trip_id if trip else None) != tr.trip_id:
            tr.trip_id = trip.trip_id if trip else None
            tr.done = {k for k in tr.done if not k.startswith("trip:")}
            tr.too_long_at = None
        inputs: dict[str, Any] = {
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
        commands: list[Command] = []
        alerts: list[AlertDecision] = []
        notes: list[Notification] = []
        moving = st.speed_kph > s.walking_speed_kph
        slow = s.slow_speed_kph
        sp = cfg.vehicle_speed_settings
        if sp is not None:
            slow = min(slow, sp.default_low_speed)

        left_now = False
        if place.usable:
            left_now = self._place_rules(b, st, now, place, tr, notes, inputs, slow)
        border = cfg.border
        if border is not None and border.settings.trigger_alert and place.usable:
            if tr.outside:
                a = self.alerts.present(
                    vid,
                    AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
                    AlertSeverity.HIGH,
                    now,
                    "border.trigger_alert",
                    {**inputs, "border_distance_m": place.border_d},
                )
            else:
                a = self.alerts.absent(
                    vid,
                    AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
                    now,
                    "border.back_inside",
                    inputs,
                )
            if a is not None:
                alerts.append(a)
        if left_now and border is not None and border.settings.play_vehicle_sound:
            commands.append(
                Command(CommandKind.PLAY_SOUND, vid, "border.play_vehicle_sound", inputs)
            )

        limits = dict(tr.place_limits)
        if sp is not None:
            mode = None
            vs = b.vehicle_settings.get(st.model_id) if st.model_id is not None else None
            if vs is not None:
                mode = vs.speed_mode
            mode_speed = {
                1: sp.default_low_speed,
                2: sp.default_medium_speed,
                3: sp.default_high_speed,
            }.get(mode, sp.default_high_speed)
            limits["speed_mode"] = mode_speed
            if (
                sp.min_battery_to_slow_down is not None
                and st.battery <= sp.min_battery_to_slow_down
            ):
                limits["battery_slow_down"] = sp.battery_slow_down_speed  # type: ignore[assignment]

        # Reasons to lock, and whether the trip ends with the lock.
        lock_reasons: list[str] = []
        end_trip_reasons: list[str] = []
        if border is not None and border.settings.lock_vehicle and tr.outside:
            lock_reasons.append("border.lock_vehicle")
        rs = cfg.rent_settings
        low = rs.min_battery_to_auto_lock if rs is not None else None
        if low is not None and st.battery < low:
            lock_reasons.append("rent_settings.min_battery_to_auto_lock")
            end_trip_reasons.append("rent_settings.min_battery_to_auto_lock")
        rt = cfg.rent_timings
        if trip is not None:
            duration = now - trip.started_at
            hold_s = trip.hold_seconds + (
                now - trip.hold_started_at if trip.on_hold and trip.hold_started_at else 0.0
            )
            inputs["trip_duration_s"] = round(duration, 3)
            if rt is not None and rt.trip_auto_lock > 0 and duration >= rt.trip_auto_lock:
                lock_reasons.append("rent_timings.trip_auto_lock")
                end_trip_reasons.append("rent_timings.trip_auto_lock")
            if rs is not None and rs.credit_depletion_auto_lock and trip.credit is not None:
                price = pricing_at(cfg.pricing, trip.started_at, b.timezone)
                if price is not None:
                    cost = trip_cost(price, duration - hold_s, hold_s)
                    if cost >= trip.credit:
                        inputs["trip_cost"] = round(cost, 4)
                        inputs["credit"] = trip.credit
                        lock_reasons.append("rent_settings.credit_depletion_auto_lock")
                        end_trip_reasons.append("rent_settings.credit_depletion_auto_lock")
            if rt is not None:
                self._trip_timers(st, trip, now, duration, rt, tr, commands, notes, inputs, moving)

        if lock_reasons and not st.locked:
            if moving:
                limits["pending_lock"] = slow
            elif tr.lock_sent_at is None or now - tr.lock_sent_at >= LOCK_RESEND_S:
                tr.lock_sent_at = now
                linputs = {**inputs, "lock_reasons": list(lock_reasons)}
                commands.append(Command(CommandKind.LOCK, vid, lock_reasons[0], linputs))
                if trip is not None and end_trip_reasons and "trip:end" not in tr.done:
                    tr.done.add("trip:end")
                    commands.append(
                        Command(CommandKind.END_TRIP, vid, end_trip_reasons[0], linputs)
                    )
        if not lock_reasons:
            tr.lock_sent_at = None
            if trip is not None and not trip.on_hold and st.locked and "trip:unlock" not in tr.done:
                tr.done.add("trip:unlock")
                vs = b.vehicle_settings.get(st.model_id) if st.model_id is not None else None
                commands.append(
                    Command(
                        CommandKind.UNLOCK,
                        vid,
                        "trip.active",
                        inputs,
                        auto_light=vs.auto_light if vs is not None else None,
                    )
                )

        # Alerts that need no position.
        moving_alert = moving and (st.locked or trip is None)
        a = (
            self.alerts.present(
                vid,
                AlertType.VEHICLE_ILLEGAL_MOVING,
                AlertSeverity.HIGH,
                now,
                "vehicle.moving_without_trip",
                inputs,
            )
            if moving_alert
            else self.alerts.absent(
                vid, AlertType.VEHICLE_ILLEGAL_MOVING, now, "vehicle.still", inputs
            )
        )
        if a is not None:
            alerts.append(a)
        unexpected = not st.locked and trip is None
        a = (
            self.alerts.present(
                vid,
                AlertType.UNEXPECTED_UNLOCK,
                AlertSeverity.HIGH,
                now,
                "vehicle.unlocked_without_trip",
                inputs,
            )
            if unexpected
            else self.alerts.absent(vid, AlertType.UNEXPECTED_UNLOCK, now, "vehicle.locked", inputs)
        )
        if a is not None:
            alerts.append(a)

        effective = min(limits.values()) if limits else None
        if effective != tr.sent_speed or not tr.speed_sent_once:
            tr.sent_speed = effective
            tr.speed_sent_once = True
            reason = min(limits, key=lambda k: (limits[k], k)) if limits else "no_limit"
            commands.insert(
                0,
                Command(
                    CommandKind.SET_MAX_SPEED,
                    vid,
                    reason,
                    {**inputs, "limits": dict(limits)},
                    max_speed_kph=effective,
                ),
            )
        return Decisions(
            vehicle_id=vid,
            at=now,
            commands=tuple(commands),
            alerts=tuple(alerts),
            notifications=tuple(notes),
            max_speed_kph=effective,
            limits=limits,
            inside_network=tr.inside,
            zones=tr.zones,
            position_used=place.usable,
            ride_end_allowed=tr.ride_end_allowed,
        )

    def _place_rules(
        self,
        b: RuleBundle,
        st: VehicleState,
        now: float,
        place: _Place,
        tr: _Track,
        notes: list[Notification],
        inputs: dict[str, Any],
        slow: int,
    ) -> bool:
        """Border hysteresis and zone limits from a usable fix; True when the vehicle just left."""
        cfg = b.config
        s = cfg.safety
        buffer = max(st.accuracy_m, s.min_buffer_m)
        left_now = False
        if place.border_d is not None:
            d = place.border_d
            crossing = (d > buffer) if tr.outside else (d < -buffer)
            if crossing:
                if tr.candidate_since is None:
                    tr.candidate_since = now
                if now - tr.candidate_since >= s.dwell_s:
                    tr.outside = not tr.outside
                    tr.candidate_since = None
                    left_now = tr.outside
            else:
                tr.candidate_since = None
        limits: dict[str, int] = {}
        labels: list[str] = []
        gbfs_hits: list[int] = []
        for i in place.hits:
            e = b.entries[i]
            if e.kind == SPEED:
                z = cfg.speed_zones[e.pos]
                key = f"speed_zone:{z.id}"
                limits[key] = z.max_speed
                labels.append(e.label)
            elif e.kind == PARKING:
                labels.append(e.label)
            elif e.kind == GBFS:
                gbfs_hits.append(e.pos)
        ride_end = None
        inside: bool | None = None if place.border_d is None else not tr.outside
        if b.gbfs is not None:
            res, names = gbfs_mod.resolve(
                b.gbfs.zones, b.gbfs.global_rules, gbfs_hits, st.vehicle_type_id, now
            )
            labels.extend(names)
            if res.maximum_speed_kph is not None:
                limits["gbfs.maximum_speed_kph"] = res.maximum_speed_kph
            ride_end = res.ride_end_allowed
            if res.ride_through_allowed is False and st.trip is not None:
                limits["gbfs.ride_through_allowed"] = slow
                if "trip:no_through" not in tr.done:
                    tr.done.add("trip:no_through")
                    notes.append(
                        Notification(
                            NotificationKind.NO_RIDE_THROUGH_ZONE,
                            st.vehicle_id,
                            "gbfs.ride_through_allowed",
                            True,
                            inputs,
                        )
                    )
            elif res.ride_through_allowed:
                tr.done.discard("trip:no_through")
            if inside is None and res.ride_through_allowed is not None:
                inside = res.ride_through_allowed
        border = cfg.border
        if border is not None and tr.outside and border.settings.reduce_vehicle_speed:
            limits["border.reduce_vehicle_speed"] = slow
        if left_now and border is not None and border.settings.notify_user and st.trip is not None:
            notes.append(
                Notification(
                    NotificationKind.OUT_OF_NETWORK_AREA,
                    st.vehicle_id,
                    "border.notify_user",
                    True,
                    {**inputs, "border_distance_m": place.border_d},
                )
            )
        tr.place_limits = limits
        tr.inside = inside
        tr.zones = tuple(labels)
        tr.ride_end_allowed = ride_end
        return left_now

    def _trip_timers(
        self,
        st: VehicleState,
        trip: Trip,
        now: float,
        duration: float,
        rt: Any,
        tr: _Track,
        commands: list[Command],
        notes: list[Notification],
        inputs: dict[str, Any],
        moving: bool,
    ) -> None:
        vid = st.vehicle_id
        if duration >= rt.trip_too_long_notifications and (
            tr.too_long_at is None
            or now - tr.too_long_at >= rt.trip_too_long_notifications_frequency
        ):
            tr.too_long_at = now
            notes.append(
                Notification(
                    NotificationKind.TRIP_TOO_LONG,
                    vid,
                    "rent_timings.trip_too_long_notifications",
                    True,
                    inputs,
                )
            )
        if duration >= rt.vehicle_stolen and "trip:stolen" not in tr.done:
            tr.done.add("trip:stolen")
            notes.append(
                Notification(
                    NotificationKind.VEHICLE_STOLEN,
                    vid,
                    "rent_timings.vehicle_stolen",
                    False,
                    inputs,
                )
            )
        if (
            not trip.on_hold
            and not moving
            and rt.trip_auto_pause > 0
            and trip.last_moved_at is not None
            and now - trip.last_moved_at >= rt.trip_auto_pause
            and "trip:hold" not in tr.done
        ):
            tr.done.add("trip:hold")
            commands.append(
                Command(
                    CommandKind.TRIP_HOLD,
                    vid,
                    "rent_timings.trip_auto_pause",
                    {**inputs, "still_for_s": round(now - trip.last_moved_at, 3)},
                )
            )
        if (
            trip.on_hold
            and trip.hold_started_at is not None
            and rt.trip_max_pause > 0
            and now - trip.hold_started_at >= rt.trip_max_pause
            and "trip:end" not in tr.done
        ):
            tr.done.add("trip:end")
            commands.append(
                Command(
                    CommandKind.END_TRIP,
                    vid,
                    "rent_timings.trip_max_pause",
                    {**inputs, "paused_for_s": round(now - trip.hold_started_at, 3)},
                )
            )

    # -- renting ------------------------------------------------------------------------
    def check_rent(
        self, state: VehicleState, rider_active_rentals: int, now: float | None = None
    ) -> tuple[bool, list[str]]:
        """May a rider start a trip on this vehicle? Returns (allowed, reasons refused)."""
        b = self._holder.current
        t = self._clock() if now is None else now
        reasons: list[str] = []
        rs = b.config.rent_settings
        if rs is not None:
            if state.battery < rs.min_battery_to_rent:
                reasons.append("rent_settings.min_battery_to_rent")
            if rider_active_rentals >= rs.max_simultaneous_rented_vehicle:
                reasons.append("rent_settings.max_simultaneous_rented_vehicle")
        place = self._place(b, state, t)
        if not place.usable:
            reasons.append("position.unusable")
        else:
            if place.border_d is not None and place.border_d < 0:
                reasons.append("border.outside")
            if b.gbfs is not None:
                hits = [b.entries[i].pos for i in place.hits if b.entries[i].kind == GBFS]
                res, _ = gbfs_mod.resolve(
                    b.gbfs.zones, b.gbfs.global_rules, hits, state.vehicle_type_id, t
                )
                if res.ride_start_allowed is False:
                    reasons.append("gbfs.ride_start_allowed")
        return not reasons, reasons
