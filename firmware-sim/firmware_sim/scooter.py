"""A scooter's IoT module: a pure state machine (:class:`ScooterCore`) and its MQTT shell.

The core moves the scooter along a route at the speed its settings allow, drains the battery,
obeys lock / unlock (with trip hold), maximum speed, speed mode, light and sound, and raises
fallen, lifted, dismantling, moving-while-locked and low-battery events. It is advanced
lazily to a given simulated time, so 500 parked scooters cost nothing between telemetry
reports. :class:`ScooterSim` puts it on MQTT with :class:`~dockgate.sim.device_base.DeviceSim`.

    async with ScooterSim("SXB001", Broker("127.0.0.1", port)) as s:
        s.ride(default_routes()[0])
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Unpack

from dockgate.gateway.protocol import (
    AckStatus,
    Channel,
    Command,
    DeviceRef,
    LockState,
    LockVehicle,
    OutcomeStatus,
    PlaySound,
    SetLight,
    SetMaxSpeed,
    SetSpeedMode,
    SpeedMode,
    Telemetry,
    UnlockVehicle,
    VehicleEvent,
    VehicleEventType,
)
from dockgate.sim.device_base import Broker, DeviceOptions, DeviceSim, Verdict, ms
from dockgate.sim.routes import CENTRE, Route

#: Speed (km/h) of each mode: the dashboard's default low / medium / high speeds.
MODE_SPEED_KMH: dict[SpeedMode, int] = {
    SpeedMode.ECO: 15,
    SpeedMode.NORMAL: 20,
    SpeedMode.SPORT: 25,
}


@dataclass(frozen=True, slots=True)
class ScooterConfig:
    """How a scooter model behaves (speeds in km/h, times in simulated seconds)."""

    riding_interval_s: float = 10.0
    parked_interval_s: float = 240.0
    cruise_kmh: float = 22.0  # what the rider would ride at if nothing capped it
    drain_pct_per_km: float = 1.5
    idle_drain_pct_per_h: float = 0.05
    low_battery_pct: float = 15.0
    min_battery_to_slow_down: float | None = 20.0
    battery_slow_down_speed: int = 12
    gps_accuracy_m: tuple[float, float] = (3.0, 12.0)
    actuation_s: float = 0.3  # the lock motor
    illegal_moving_m: float = 10.0  # pushed this far while locked raises an event


@dataclass(slots=True)
class ScooterCore:
    """The scooter's state; every mutator first advances it to ``now``."""

    vehicle_id: str
    now: float
    lat: float = CENTRE[0]
    lon: float = CENTRE[1]
    battery: float = 100.0
    config: ScooterConfig = field(default_factory=ScooterConfig)
    rng: random.Random = field(default_factory=random.Random)
    lock: LockState = LockState.LOCKED
    speed_mode: SpeedMode = SpeedMode.NORMAL
    max_speed_cap: int | None = None
    light: bool = False
    odometer_m: float = 0.0
    heading: float = 0.0
    fallen: bool = False
    route: Route | None = None
    route_m: float = 0.0
    sounds: list[str] = field(default_factory=list)
    events: list[VehicleEventType] = field(default_factory=list)
    _pushed_m: float = 0.0

    # --- derived state -------------------------------------------------------------------

    @property
    def max_speed(self) -> int:
        """The current speed cap: mode speed, commanded cap, low-battery slow-down."""
        cap = MODE_SPEED_KMH[self.speed_mode]
        if self.max_speed_cap is not None:
            cap = min(cap, self.max_speed_cap)
        slow = self.config.min_battery_to_slow_down
        if slow is not None and self.battery <= slow:
            cap = min(cap, self.config.battery_slow_down_speed)
        return cap

    @property
    def riding(self) -> bool:
        return (
            self.lock is LockState.UNLOCKED
            and self.route is not None
            and not self.route.finished(self.route_m)
            and self.battery > 0
            and not self.fallen
        )

    @property
    def speed(self) -> float:
        """Current speed in km/h."""
        return min(self.config.cruise_kmh, float(self.max_speed)) if self.riding else 0.0

    @property
    def telemetry_interval(self) -> float:
        c = self.config
        return c.riding_interval_s if self.riding else c.parked_interval_s

    # --- time ----------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move and drain up to ``now``; queue a low-battery event when crossing the level."""
        dt = now - self.now
        if dt <= 0:
            return
        before = self.battery
        if self.riding and self.route is not None:
            metres = self.speed / 3.6 * dt
            left = self.battery / self.config.drain_pct_per_km * 1000.0
            metres = min(metres, left)
            if not self.route.loop:
                metres = min(metres, self.route.length_m - self.route_m)
            self.route_m += metres
            self.odometer_m += metres
            self.battery = max(0.0, self.battery - metres / 1000.0 * self.config.drain_pct_per_km)
            fix = self.route.fix_at(self.route_m)
            self.lat, self.lon, self.heading = fix.lat, fix.lon, fix.heading
        self.battery = max(0.0, self.battery - dt / 3600.0 * self.config.idle_drain_pct_per_h)
        low = self.config.low_battery_pct
        if before > low >= self.battery:
            self.events.append(VehicleEventType.LOW_BATTERY)
        self.now = now

    def take_events(self) -> list[VehicleEventType]:
        events, self.events = self.events, []
        return events

    # --- riders and the physical world ---------------------------------------------------

    def ride(self, route: Route, now: float, start_m: float = 0.0) -> None:
        """A rider sets off along ``route`` (the scooter moves only while unlocked)."""
        self.advance(now)
        self.route, self.route_m = route, start_m
        fix = route.fix_at(start_m)
        self.lat, self.lon, self.heading = fix.lat, fix.lon, fix.heading

    def park(self, now: float) -> None:
        """The rider stops and leaves the scooter where it is."""
        self.advance(now)
        self.route, self.route_m = None, 0.0

    def fall(self, now: float) -> None:
        self.advance(now)
        self.fallen = True
        self.events.append(VehicleEventType.FALLEN)

    def stand_up(self, now: float) -> None:
        self.advance(now)
        self.fallen = False

    def lift(self, now: float) -> None:
        self.advance(now)
        self.events.append(VehicleEventType.LIFTED)

    def dismantle(self, now: float) -> None:
        self.advance(now)
        self.events.append(VehicleEventType.DISMANTLING)

    def push(self, now: float, east_m: float, north_m: float) -> None:
        """Someone wheels the scooter; while locked that is moving-while-locked."""
        from dockgate.sim.routes import offset

        self.advance(now)
        self.lat, self.lon = offset(self.lat, self.lon, east_m, north_m)
        if self.lock is not LockState.UNLOCKED:
            self._pushed_m += (east_m**2 + north_m**2) ** 0.5
            if self._pushed_m >= self.config.illegal_moving_m:
                self._pushed_m = 0.0
                self.events.append(VehicleEventType.ILLEGAL_MOVING)

    # --- commands ------------------------------------------------------------------------

    def do_lock(self, now: float, trip_on_hold: bool) -> None:
        self.advance(now)
        self.lock = LockState.ON_HOLD if trip_on_hold else LockState.LOCKED
        if not trip_on_hold:
            self.route, self.route_m = None, 0.0  # the trip is over
        self._pushed_m = 0.0

    def do_unlock(self, now: float, light: bool) -> None:
        self.advance(now)
        self.lock = LockState.UNLOCKED
        if light:
            self.light = True

    def set_max_speed(self, now: float, kmh: int) -> None:
        self.advance(now)
        self.max_speed_cap = kmh

    def set_speed_mode(self, now: float, mode: SpeedMode) -> None:
        self.advance(now)
        self.speed_mode = SpeedMode(mode)

    def set_light(self, now: float, on: bool) -> None:
        self.advance(now)
        self.light = on

    def play_sound(self, now: float, sound: str) -> None:
        self.advance(now)
        self.sounds.append(sound)

    # --- reports -------------------------------------------------------------------------

    def telemetry(self, stamp: float) -> Telemetry:
        lo, hi = self.config.gps_accuracy_m
        return Telemetry(
            ts=ms(stamp),
            device_id=self.vehicle_id,
            lat=round(self.lat, 7),
            lng=round(self.lon, 7),
            gps_accuracy=round(self.rng.uniform(lo, hi), 1),
            speed=round(self.speed, 1),
            battery=round(self.battery),
            lock=self.lock,
            speed_mode=self.speed_mode,
            max_speed=self.max_speed,
            odometer=round(self.odometer_m),
            light=self.light,
        )

    def event(self, kind: VehicleEventType, stamp: float) -> VehicleEvent:
        return VehicleEvent(
            ts=ms(stamp),
            device_id=self.vehicle_id,
            type=kind,
            lat=round(self.lat, 7),
            lng=round(self.lon, 7),
            battery=round(self.battery),
        )


class ScooterSim(DeviceSim):
    """A scooter on MQTT: telemetry every 10 s riding / 240 s parked, events, commands."""

    def __init__(
        self,
        vehicle_id: str,
        broker: Broker | str,
        *,
        start: tuple[float, float] = CENTRE,
        battery: float = 100.0,
        config: ScooterConfig | None = None,
        telemetry_qos: int = 0,
        **device: Unpack[DeviceOptions],
    ) -> None:
        super().__init__(
            DeviceRef.vehicle(device.get("network", 1), vehicle_id),
            broker,
            clock=device.get("clock"),
            faults=device.get("faults"),
            counters=device.get("counters"),
            telemetry_qos=telemetry_qos,
        )
        seed = device.get("seed")
        self.core = ScooterCore(
            vehicle_id,
            self.clock.now(),
            lat=start[0],
            lon=start[1],
            battery=battery,
            config=config or ScooterConfig(),
            rng=random.Random(seed if seed is not None else vehicle_id),
        )

    # --- scripting (what riders and the street do) ---------------------------------------

    def ride(self, route: Route, *, unlock: bool = False, start_m: float = 0.0) -> None:
        """A rider takes the scooter along ``route``; ``unlock`` unlocks it locally first."""
        now = self.clock.now()
        if unlock:
            self.core.do_unlock(now, light=False)
        self.core.ride(route, now, start_m)
        self._wake.set()

    def park(self) -> None:
        self.core.park(self.clock.now())
        self._wake.set()

    def fall(self) -> None:
        self.core.fall(self.clock.now())
        self._wake.set()

    def stand_up(self) -> None:
        self.core.stand_up(self.clock.now())
        self._wake.set()

    def lift(self) -> None:
        self.core.lift(self.clock.now())
        self._wake.set()

    def dismantle(self) -> None:
        self.core.dismantle(self.clock.now())
        self._wake.set()

    def push(self, east_m: float, north_m: float = 0.0) -> None:
        self.core.push(self.clock.now(), east_m, north_m)
        self._wake.set()

    def report_now(self) -> None:
        """Send telemetry at once (as a state change would)."""
        self._wake.set()

    # --- MQTT ----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        self.core.advance(self.clock.now())
        await self.publish(
            Channel.TELEMETRY, self.core.telemetry(self.clock.stamp()), qos=self.telemetry_qos
        )

    async def run_periodic(self) -> None:
        while True:
            await self._sleep_or_wake(self.core.telemetry_interval)
            self.core.advance(self.clock.now())
            stamp = self.clock.stamp()
            for kind in self.core.take_events():
                await self.publish(Channel.EVENT, self.core.event(kind, stamp), qos=1)
            await self.publish(
                Channel.TELEMETRY, self.core.telemetry(stamp), qos=self.telemetry_qos
            )

    def execute(self, cmd: Command) -> Verdict:
        now = self.clock.now()
        core = self.core
        if isinstance(cmd, LockVehicle | UnlockVehicle):
            return Verdict(AckStatus.ACCEPTED, outcome=lambda: self._actuate(cmd))
        if isinstance(cmd, SetMaxSpeed):
            core.set_max_speed(now, cmd.max_speed)
        elif isinstance(cmd, SetSpeedMode):
            core.set_speed_mode(now, cmd.speed_mode)
        elif isinstance(cmd, PlaySound):
            core.play_sound(now, cmd.sound)
        elif isinstance(cmd, SetLight):
            core.set_light(now, cmd.on)
        else:
            return Verdict(AckStatus.REJECTED, f"unsupported: {cmd.cmd}")
        self._wake.set()
        return Verdict()

    async def _actuate(self, cmd: LockVehicle | UnlockVehicle) -> tuple[OutcomeStatus, None]:
        await self.clock.sleep(self.core.config.actuation_s)
        now = self.clock.now()
        if isinstance(cmd, LockVehicle):
            self.core.do_lock(now, cmd.trip_on_hold)
        else:
            self.core.do_unlock(now, cmd.light)
        self._wake.set()
        return OutcomeStatus.DONE, None

    def sample_payload(self) -> bytes:
        from dockgate.gateway.protocol import encode

        return encode(self.core.telemetry(self.clock.stamp()))

    def sample_channel(self) -> Channel:
        return Channel.TELEMETRY
