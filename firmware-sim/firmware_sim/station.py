"""A docking station: a pure state machine (:class:`StationCore`) and its MQTT shell.

The core holds N spots, each with a lock that can work, jam or not answer, a temperature,
and the vehicle it identified. Mains power can be cut (the station runs on its backup battery)
and restored; the alarm can go off. Every change queues the protocol event it causes, in order,
and the shell publishes them (buffered while offline, as firmware would).

An unlock-spot command is answered twice: the ack at once, then the physical outcome (the lock
opened, jammed, or did not answer). With ``auto_release`` the waiting rider then takes the
vehicle out, which is the separate `spot-undocked` event.

    async with StationSim("ST01", Broker("127.0.0.1", port), spots=8) as st:
        st.dock(1, "SXB001")
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Unpack

from pydantic import BaseModel

from dockgate.gateway.protocol import (
    AckStatus,
    AlarmEvent,
    Channel,
    Command,
    DeviceRef,
    LockSpot,
    OutcomeStatus,
    PowerEvent,
    SpotDocked,
    SpotFault,
    SpotFaulted,
    SpotIdentifyFail,
    SpotState,
    SpotStatus,
    SpotTemperature,
    SpotUndocked,
    SpotUnexpectedUnlock,
    StationFeedback,
    StationStatus,
    UnlockSpot,
    encode,
)
from dockgate.sim.device_base import Broker, DeviceOptions, DeviceSim, Verdict, ms
from dockgate.sim.routes import CENTRE

LockMode = Literal["ok", "jam", "no-answer"]


class StationError(ValueError):
    """A scripted action that the physical station cannot do (a vehicle in an occupied spot)."""


@dataclass(frozen=True, slots=True)
class StationConfig:
    """How a station model behaves (times in simulated seconds)."""

    heartbeat_s: float = 60.0
    temperature_interval_s: float = 300.0
    high_temperature_c: float = 60.0
    ambient_c: float = 18.0
    actuation_s: float = 0.4  # the spot lock motor
    no_answer_timeout_s: float = 3.0  # how long the controller waits for a silent lock
    release_after_s: float = 2.0  # the rider takes the vehicle this long after the lock opens
    backup_drain_pct_per_h: float = 12.0


@dataclass(slots=True)
class Spot:
    """One docking spot."""

    number: int
    locked: bool = False
    vehicle_id: str | None = None
    state: SpotState = SpotState.FREE
    celsius: float = 18.0
    lock_mode: LockMode = "ok"  # scripted lock behaviour; dice may add random faults

    def status(self) -> SpotStatus:
        return SpotStatus(
            spot=self.number, state=self.state, locked=self.locked, vehicle_id=self.vehicle_id
        )


@dataclass(slots=True)
class StationCore:
    """The station's state and its queue of (channel, payload) events not yet published."""

    station_id: str
    now: float
    spot_count: int = 8
    config: StationConfig = field(default_factory=StationConfig)
    rng: random.Random = field(default_factory=random.Random)
    mains: bool = True
    battery: float = 100.0
    alarm: bool = False
    spots: dict[int, Spot] = field(default_factory=dict)
    events: deque[tuple[Channel, BaseModel]] = field(default_factory=lambda: deque(maxlen=2000))
    changed: bool = True  # the retained status needs re-publishing

    def __post_init__(self) -> None:
        if not 1 <= self.spot_count <= 64:
            raise ValueError("a station has 1..64 spots")
        if not self.spots:
            self.spots = {
                n: Spot(n, celsius=self.config.ambient_c) for n in range(1, self.spot_count + 1)
            }

    def spot(self, number: int) -> Spot:
        try:
            return self.spots[number]
        except KeyError:
            raise StationError(f"no spot {number} at {self.station_id}") from None

    def _emit(self, channel: Channel, model: BaseModel) -> None:
        self.events.append((channel, model))

    def advance(self, now: float) -> None:
        """Drain the backup battery while mains is cut."""
        dt = now - self.now
        if dt <= 0:
            return
        if not self.mains:
            self.battery = max(0.0, self.battery - dt / 3600 * self.config.backup_drain_pct_per_h)
        elif self.battery < 100:
            self.battery = min(100.0, self.battery + dt / 3600 * 20.0)
        self.now = now

    def status(self, stamp: float) -> StationStatus:
        return StationStatus(
            ts=ms(stamp),
            device_id=self.station_id,
            spots=[s.status() for s in self.spots.values()],
            mains=self.mains,
            battery=None if self.mains else round(self.battery),
        )

    # --- the physical world --------------------------------------------------------------

    def dock(self, number: int, vehicle_id: str, stamp: float, identify: bool = True) -> None:
        """A vehicle is pushed into a spot; it is identified and locked in, or not."""
        spot = self.spot(number)
        if spot.state is not SpotState.FREE or spot.vehicle_id is not None:
            raise StationError(f"spot {number} is not free")
        spot.state = SpotState.OCCUPIED
        self.changed = True
        if not identify:
            spot.locked = False
            self._emit(
                Channel.SPOT,
                SpotIdentifyFail(
                    ts=ms(stamp), device_id=self.station_id, type="spot-identify-fail", spot=number
                ),
            )
            return
        spot.vehicle_id = vehicle_id
        spot.locked = True
        self._emit(
            Channel.SPOT,
            SpotDocked(
                ts=ms(stamp),
                device_id=self.station_id,
                type="spot-docked",
                spot=number,
                vehicle_id=vehicle_id,
                locked=True,
            ),
        )

    def undock(self, number: int, stamp: float) -> str | None:
        """The vehicle leaves the spot; if the lock was closed that is an unexpected unlock."""
        spot = self.spot(number)
        if spot.state is not SpotState.OCCUPIED and spot.vehicle_id is None:
            raise StationError(f"spot {number} is empty")
        vehicle = spot.vehicle_id
        if spot.locked:
            self.force_open(number, stamp)
        spot.vehicle_id = None
        spot.state = SpotState.FREE
        self.changed = True
        self._emit(
            Channel.SPOT,
            SpotUndocked(
                ts=ms(stamp),
                device_id=self.station_id,
                type="spot-undocked",
                spot=number,
                vehicle_id=vehicle,
            ),
        )
        return vehicle

    def force_open(self, number: int, stamp: float) -> None:
        """The lock opens with no command (vandalism, a fault): `unexpected-unlock`."""
        spot = self.spot(number)
        spot.locked = False
        self.changed = True
        self._emit(
            Channel.SPOT,
            SpotUnexpectedUnlock(
                ts=ms(stamp),
                device_id=self.station_id,
                type="unexpected-unlock",
                spot=number,
                vehicle_id=spot.vehicle_id,
            ),
        )

    def set_temperature(self, number: int, celsius: float, stamp: float) -> None:
        spot = self.spot(number)
        spot.celsius = celsius
        self._emit(
            Channel.SPOT,
            SpotTemperature(
                ts=ms(stamp),
                device_id=self.station_id,
                type="spot-temperature",
                spot=number,
                celsius=round(celsius, 1),
                high=celsius >= self.config.high_temperature_c,
            ),
        )

    def drift_temperatures(self, stamp: float) -> None:
        """Every spot's temperature wanders a little (a charging vehicle warms its spot)."""
        for spot in self.spots.values():
            target = self.config.ambient_c + (6.0 if spot.vehicle_id else 0.0)
            spot.celsius += (target - spot.celsius) * 0.3 + self.rng.gauss(0, 0.4)
            self.set_temperature(spot.number, spot.celsius, stamp)

    def cut_power(self, stamp: float) -> None:
        self._set_mains(False, stamp)

    def restore_power(self, stamp: float) -> None:
        self._set_mains(True, stamp)

    def _set_mains(self, on: bool, stamp: float) -> None:
        """Mains power changes: the status changes and a power event says which way."""
        if self.mains == on:
            return
        self.mains = on
        self.changed = True
        self._emit(
            Channel.POWER,
            PowerEvent(
                ts=ms(stamp),
                device_id=self.station_id,
                type="station-power-restored" if on else "station-power-cut",
                battery=round(self.battery),
            ),
        )

    def trigger_alarm(self, reason: str, stamp: float) -> None:
        self.alarm = True
        self._emit(
            Channel.ALARM,
            AlarmEvent(
                ts=ms(stamp),
                device_id=self.station_id,
                type="station-alarm-triggered",
                reason=reason[:120],
            ),
        )

    def clear_alarm(self, stamp: float) -> None:
        if self.alarm:
            self.alarm = False
            self._emit(
                Channel.ALARM,
                AlarmEvent(ts=ms(stamp), device_id=self.station_id, type="station-alarm-cleared"),
            )

    # --- commands ------------------------------------------------------------------------

    def check_command(self, number: int) -> str | None:
        """Why a spot command must be refused now, or None."""
        if number not in self.spots:
            return "no-such-spot"
        if not self.mains and self.battery <= 0:
            return "no-power"
        if self.spots[number].state in (SpotState.FAULT, SpotState.DISABLED):
            return "spot-out-of-service"
        return None

    def actuate(
        self, number: int, open_: bool, mode: LockMode, stamp: float
    ) -> tuple[OutcomeStatus, str | None]:
        """The lock's physical answer to a command: it moved, jammed or stayed silent."""
        spot = self.spot(number)
        if mode == "ok":
            spot.locked = not open_
            self.changed = True
            return OutcomeStatus.DONE, None
        fault = SpotFault.LOCK_JAMMED if mode == "jam" else SpotFault.LOCK_NO_ANSWER
        spot.state = SpotState.FAULT
        self.changed = True
        self._emit(
            Channel.SPOT,
            SpotFaulted(
                ts=ms(stamp), device_id=self.station_id, type="spot-fault", spot=number, fault=fault
            ),
        )
        return OutcomeStatus.FAILED, fault.value

    def repair(self, number: int) -> None:
        """A technician clears a spot's fault."""
        spot = self.spot(number)
        spot.lock_mode = "ok"
        spot.state = SpotState.OCCUPIED if spot.vehicle_id else SpotState.FREE
        self.changed = True


class StationSim(DeviceSim):
    """A docking station on MQTT: retained status heartbeat, spot/power/alarm events, commands."""

    def __init__(
        self,
        station_id: str,
        broker: Broker | str,
        *,
        spots: int = 8,
        site: tuple[float, float] = CENTRE,
        config: StationConfig | None = None,
        auto_release: bool = True,
        **device: Unpack[DeviceOptions],
    ) -> None:
        super().__init__(
            DeviceRef.station(device.get("network", 1), station_id),
            broker,
            clock=device.get("clock"),
            faults=device.get("faults"),
            counters=device.get("counters"),
        )
        seed = device.get("seed")
        self.site = site
        self.auto_release = auto_release
        self.core = StationCore(
            station_id,
            self.clock.now(),
            spot_count=spots,
            config=config or StationConfig(),
            rng=random.Random(seed if seed is not None else station_id),
        )
        self.released: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=1000)
        self.feedback: deque[StationFeedback] = deque(maxlen=100)  # shown to riders, last

    # --- scripting -----------------------------------------------------------------------

    def _changed(self) -> None:
        self._wake.set()

    def dock(self, spot: int, vehicle_id: str, *, identify: bool = True) -> None:
        self.core.dock(spot, vehicle_id, self.clock.stamp(), identify)
        self._changed()

    def undock(self, spot: int) -> str | None:
        vehicle = self.core.undock(spot, self.clock.stamp())
        self._changed()
        return vehicle

    def force_open(self, spot: int) -> None:
        self.core.force_open(spot, self.clock.stamp())
        self._changed()

    def heat(self, spot: int, celsius: float) -> None:
        self.core.set_temperature(spot, celsius, self.clock.stamp())
        self._changed()

    def cut_power(self) -> None:
        self.core.advance(self.clock.now())
        self.core.cut_power(self.clock.stamp())
        self._changed()

    def restore_power(self) -> None:
        self.core.advance(self.clock.now())
        self.core.restore_power(self.clock.stamp())
        self._changed()

    def trigger_alarm(self, reason: str = "tamper") -> None:
        self.core.trigger_alarm(reason, self.clock.stamp())
        self._changed()

    def clear_alarm(self) -> None:
        self.core.clear_alarm(self.clock.stamp())
        self._changed()

    def set_lock_mode(self, spot: int, mode: LockMode) -> None:
        """Make a spot's lock jam or stay silent on its next actuation (or work again)."""
        self.core.spot(spot).lock_mode = mode

    def repair(self, spot: int) -> None:
        self.core.repair(spot)
        self._changed()

    def free_spots(self) -> list[int]:
        return [n for n, s in self.core.spots.items() if s.state is SpotState.FREE]

    def docked(self) -> dict[int, str]:
        return {n: s.vehicle_id for n, s in self.core.spots.items() if s.vehicle_id}

    # --- MQTT ----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        await self._flush(force_status=True)

    async def _flush(self, force_status: bool = False) -> None:
        core = self.core
        core.advance(self.clock.now())
        while core.events:
            channel, model = core.events[0]
            if not await self.publish(channel, model, qos=1):
                return  # offline: keep the rest for the next connection
            core.events.popleft()
        status = core.status(self.clock.stamp())
        if (core.changed or force_status) and await self.publish(
            Channel.STATUS, status, retain=True
        ):
            core.changed = False

    async def run_periodic(self) -> None:
        cfg = self.core.config
        next_heartbeat = self.clock.now() + cfg.heartbeat_s
        next_temperature = self.clock.now() + self.core.rng.uniform(0, cfg.temperature_interval_s)
        while True:
            now = self.clock.now()
            await self._sleep_or_wake(max(0.0, min(next_heartbeat, next_temperature) - now))
            now = self.clock.now()
            if now >= next_temperature:
                self.core.drift_temperatures(self.clock.stamp())
                next_temperature = now + cfg.temperature_interval_s
            heartbeat = now >= next_heartbeat
            if heartbeat:
                next_heartbeat = now + cfg.heartbeat_s
            await self._flush(force_status=heartbeat)

    def execute(self, cmd: Command) -> Verdict:
        if isinstance(cmd, StationFeedback):
            self.feedback.append(cmd)  # the display and buzzer: nothing moves, ack only
            return Verdict()
        if not isinstance(cmd, UnlockSpot | LockSpot):
            return Verdict(AckStatus.REJECTED, f"unsupported: {cmd.cmd}")
        self.core.advance(self.clock.now())
        refusal = self.core.check_command(cmd.spot)
        if refusal is not None:
            return Verdict(AckStatus.REJECTED, refusal)
        return Verdict(outcome=lambda: self._actuate(cmd))

    async def _actuate(self, cmd: UnlockSpot | LockSpot) -> tuple[OutcomeStatus, str | None]:
        spot = self.core.spot(cmd.spot)
        mode: LockMode = spot.lock_mode
        if mode == "ok" and self.dice.jam():
            mode = "jam"
            self.counters.faults["jam"] += 1
        elif mode == "ok" and self.dice.no_answer():
            mode = "no-answer"
            self.counters.faults["no-answer"] += 1
        cfg = self.core.config
        await self.clock.sleep(cfg.no_answer_timeout_s if mode == "no-answer" else cfg.actuation_s)
        opening = isinstance(cmd, UnlockSpot)
        result = self.core.actuate(cmd.spot, opening, mode, self.clock.stamp())
        self._changed()
        if result[0] is OutcomeStatus.DONE and opening and spot.vehicle_id and self.auto_release:
            self._spawn(self._release(cmd.spot))
        return result

    async def _release(self, number: int) -> None:
        """The rider waiting at the spot takes the vehicle out."""
        await self.clock.sleep(self.core.config.release_after_s)
        spot = self.core.spot(number)
        if spot.vehicle_id and not spot.locked:
            vehicle = self.undock(number)
            if vehicle:
                with contextlib.suppress(asyncio.QueueFull):
                    self.released.put_nowait((number, vehicle))

    def sample_payload(self) -> bytes:
        return encode(self.core.status(self.clock.stamp()))

    def sample_channel(self) -> Channel:
        return Channel.STATUS
