"""A whole fleet in one process: K stations, M scooters, one clock, one set of counters.

Each device keeps its own MQTT connection, credentials and last-will, as in the field. The
optional autopilot plays a day: riders take scooters out of stations or off the street, ride
a route (sometimes one of the demo routes that cross the slow zone or leave the border), lock
them, and dock them at a station with a free spot or leave them parked; now and then a scooter
falls or a station loses mains power. Scripting methods let a demo or a test drive it instead.

    async with FleetSim(Broker("127.0.0.1", port), stations=2, vehicles=10) as fleet:
        await fleet.run(duration=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self, TypedDict, Unpack

from dockgate.gateway.protocol import LockState
from dockgate.sim.device_base import Broker, Counters, DeviceSim
from dockgate.sim.faults import FaultPlan
from dockgate.sim.routes import (
    CENTRE,
    Route,
    default_routes,
    distance_m,
    offset,
    random_route,
    station_sites,
)
from dockgate.sim.scooter import ScooterConfig, ScooterSim
from dockgate.sim.simclock import Clock, ScaledClock
from dockgate.sim.station import StationConfig, StationError, StationSim


def station_id(i: int) -> str:
    return f"ST{i + 1:03d}"


def vehicle_id(i: int) -> str:
    return f"SXB{i + 1:05d}"


@dataclass(frozen=True, slots=True)
class DayPlan:
    """How busy the autopilot's day is (simulated seconds and probabilities)."""

    mean_idle_s: float = 1800.0  # a scooter waits this long on average between trips
    demo_route_share: float = 0.2  # trips that follow a demo route instead of a random one
    dock_share: float = 0.5  # trips that end in a station rather than on the street
    fall_per_trip: float = 0.02
    max_pause_s: float = 600.0  # how long a held trip waits for an unlock before ending
    power_cuts_per_station_hour: float = 0.02
    power_cut_s: float = 600.0


class FleetOptions(TypedDict, total=False):
    """How the fleet runs; every key is optional.

    ``network`` (1): the network id in the topics. ``clock``: simulated time shared by every
    device (a :class:`ScaledClock` running ``time_scale`` (1.0) times real time). ``faults``:
    the chaos faults (none). ``day``: the riders' day (:class:`DayPlan` defaults). ``seed`` (1):
    routes, faults and each device's randomness. ``telemetry_qos`` (0): the scooters' telemetry
    QoS. ``scooter_config`` / ``station_config``: the devices' timings (their defaults).
    ``connect_concurrency`` (32): devices connecting at once at start.
    """

    network: int
    clock: Clock | None
    time_scale: float
    faults: FaultPlan | None
    day: DayPlan | None
    seed: int
    telemetry_qos: int
    scooter_config: ScooterConfig | None
    station_config: StationConfig | None
    connect_concurrency: int


class FleetSummary(TypedDict):
    """The fleet's state and what its devices sent and received, by kind."""

    stations: int
    vehicles: int
    online: int
    riding: int
    docked: int
    faults_plan: str
    sent: dict[str, int]
    received: dict[str, int]
    faults: dict[str, int]


class FleetSim:
    """Stations and scooters sharing a clock and counters; ``run`` plays the day."""

    def __init__(
        self,
        broker: Broker | str,
        *,
        stations: int = 2,
        vehicles: int = 10,
        spots: int = 10,
        **options: Unpack[FleetOptions],
    ) -> None:
        if stations < 0 or vehicles < 0:
            raise ValueError("stations and vehicles must be >= 0")
        seed, network = options.get("seed", 1), options.get("network", 1)
        self.broker = Broker.parse(broker) if isinstance(broker, str) else broker
        self.clock: Clock = options.get("clock") or ScaledClock(options.get("time_scale", 1.0))
        self.faults = options.get("faults") or FaultPlan(seed=seed)
        self.day = options.get("day") or DayPlan()
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.connect_concurrency = options.get("connect_concurrency", 32)
        self.routes = default_routes()
        sites = station_sites(stations)
        self.stations: dict[str, StationSim] = {}
        for i, site in enumerate(sites):
            sid = station_id(i)
            self.stations[sid] = StationSim(
                sid, self.broker, spots=spots, network=network, clock=self.clock, site=site,
                config=options.get("station_config"), faults=self.faults, counters=self.counters,
                seed=seed + i,
            )  # fmt: skip
        self.vehicles: dict[str, ScooterSim] = {}
        for i in range(vehicles):
            vid = vehicle_id(i)
            start = offset(*CENTRE, self.rng.uniform(-1500, 1500), self.rng.uniform(-1500, 1500))
            self.vehicles[vid] = ScooterSim(
                vid, self.broker, network=network, clock=self.clock, start=start,
                battery=self.rng.uniform(40, 100), config=options.get("scooter_config"),
                faults=self.faults, counters=self.counters,
                telemetry_qos=options.get("telemetry_qos", 0), seed=seed * 7919 + i,
            )  # fmt: skip
        self._place_initial_vehicles()
        self._spoof_targets()
        self._tasks: list[asyncio.Task[None]] = []

    # --- set-up --------------------------------------------------------------------------

    @property
    def devices(self) -> list[DeviceSim]:
        return [*self.stations.values(), *self.vehicles.values()]

    def _place_initial_vehicles(self) -> None:
        """Half the scooters start docked (as far as spots allow), the rest on the street."""
        free = [(sid, n) for sid, st in self.stations.items() for n in st.free_spots()]
        self.rng.shuffle(free)
        for vid in list(self.vehicles)[: len(self.vehicles) // 2]:
            if not free:
                break
            sid, n = free.pop()
            self.dock(vid, sid, n)

    def _spoof_targets(self) -> None:
        """Each device may claim to be up to three real others (same kind first)."""
        everyone = [*self.vehicles, *self.stations]
        for dev in self.devices:
            same = self.vehicles if dev.device.kind.value == "vehicle" else self.stations
            pool = [o for o in same if o != dev.device_id] or [
                o for o in everyone if o != dev.device_id
            ]
            dev.spoof_ids = self.rng.sample(pool, min(3, len(pool)))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 60.0) -> None:
        """Connect every device (a few dozen at a time, as a site powering up would)."""
        gate = asyncio.Semaphore(self.connect_concurrency)

        async def _one(dev: DeviceSim) -> None:
            async with gate:
                await dev.start(timeout=0)
                await dev.wait_online(timeout)

        await asyncio.gather(*(_one(d) for d in self.devices))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        gate = asyncio.Semaphore(self.connect_concurrency)

        async def _one(dev: DeviceSim) -> None:
            async with gate:
                await dev.stop()

        await asyncio.gather(*(_one(d) for d in self.devices), return_exceptions=True)

    # --- scripting -----------------------------------------------------------------------

    def where_docked(self, vid: str) -> tuple[str, int] | None:
        for sid, st in self.stations.items():
            for n, v in st.docked().items():
                if v == vid:
                    return sid, n
        return None

    def dock(self, vid: str, sid: str, spot: int | None = None) -> int:
        """Push scooter ``vid`` into a spot of station ``sid`` (the first free one by default)."""
        st = self.stations[sid]
        if spot is None:
            free = st.free_spots()
            if not free:
                raise StationError(f"{sid} has no free spot")
            spot = free[0]
        sc = self.vehicles[vid]
        sc.core.lat, sc.core.lon = st.site
        sc.core.do_lock(self.clock.now(), trip_on_hold=False)
        st.dock(spot, vid)
        sc.report_now()
        return spot

    def take_out(self, vid: str) -> None:
        """A rider takes a docked scooter (the spot opens locally, as with a station badge)."""
        found = self.where_docked(vid)
        if found is None:
            return
        sid, n = found
        st = self.stations[sid]
        st.core.actuate(n, True, "ok", self.clock.stamp())
        st.undock(n)

    def ride(self, vid: str, route: Route | None = None) -> Route:
        """Take scooter ``vid`` out (of its station, if docked) and ride ``route``."""
        self.take_out(vid)
        sc = self.vehicles[vid]
        if route is None:
            start = (sc.core.lat, sc.core.lon)
            route = random_route(self.rng, start, name=f"trip-{vid}")
        sc.ride(route, unlock=True)
        return route

    def cut_power(self, sid: str) -> None:
        self.stations[sid].cut_power()

    def restore_power(self, sid: str) -> None:
        self.stations[sid].restore_power()

    def nearest_free_station(self, lat: float, lon: float) -> str | None:
        free = [(distance_m((lat, lon), st.site), sid) for sid, st in self.stations.items()
                if st.free_spots()]  # fmt: skip
        return min(free)[1] if free else None

    # --- the day -------------------------------------------------------------------------

    async def run(self, duration: float | None = None, *, autopilot: bool = True) -> None:
        """Play the day for ``duration`` wall seconds (forever if None), with faults if set."""
        if autopilot:
            self._tasks += [asyncio.create_task(self._life_of(v)) for v in self.vehicles]
            self._tasks += [asyncio.create_task(self._station_life(s)) for s in self.stations]
        if self.faults.active:
            self._tasks += [asyncio.create_task(d.run_chaos()) for d in self.devices]
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)

    async def _life_of(self, vid: str) -> None:
        sc = self.vehicles[vid]
        day = self.day
        rng = random.Random(self.rng.random())
        while True:
            await self.clock.sleep(rng.expovariate(1.0 / day.mean_idle_s))
            if sc.core.battery < 10 or sc.core.lock is not LockState.LOCKED:
                continue  # flat, or someone else (the gateway) is using it
            route = (
                rng.choice(self.routes)
                if rng.random() < day.demo_route_share
                else random_route(rng, (sc.core.lat, sc.core.lon), name=f"trip-{vid}")
            )
            self.ride(vid, route)
            if rng.random() < day.fall_per_trip:
                await self.clock.sleep(rng.uniform(10, 120))
                sc.fall()
                await self.clock.sleep(rng.uniform(5, 60))
                sc.stand_up()
            await self._until_trip_ends(sc, day)
            sc.core.do_lock(self.clock.now(), trip_on_hold=False)
            sc.park()
            if rng.random() < day.dock_share:
                sid = self.nearest_free_station(sc.core.lat, sc.core.lon)
                if sid is not None:
                    with contextlib.suppress(StationError):
                        self.dock(vid, sid)

    async def _until_trip_ends(self, sc: ScooterSim, day: DayPlan) -> None:
        paused = 0.0
        while True:
            core = sc.core
            core.advance(self.clock.now())
            if core.lock is LockState.ON_HOLD:
                if paused >= day.max_pause_s:
                    return
                await self.clock.sleep(30.0)
                paused += 30.0
                continue
            if not core.riding:
                return  # route done, battery flat, or locked by the gateway
            assert core.route is not None
            left_s = (core.route.length_m - core.route_m) / max(core.speed / 3.6, 0.5)
            await self.clock.sleep(min(left_s + 0.5, 60.0) if not core.route.loop else 60.0)
            if core.route.loop and core.route_m > core.route.length_m:
                return

    async def _station_life(self, sid: str) -> None:
        st = self.stations[sid]
        rate = self.day.power_cuts_per_station_hour
        if rate <= 0:
            return
        rng = random.Random(self.rng.random())
        while True:
            await self.clock.sleep(rng.expovariate(rate / 3600.0))
            st.cut_power()
            await self.clock.sleep(rng.expovariate(1.0 / self.day.power_cut_s))
            st.restore_power()

    # --- reporting -----------------------------------------------------------------------

    def summary(self) -> FleetSummary:
        online = sum(d.online for d in self.devices)
        riding = sum(v.core.riding for v in self.vehicles.values())
        docked = sum(len(s.docked()) for s in self.stations.values())
        counters = self.counters.as_dict()
        return {
            "stations": len(self.stations),
            "vehicles": len(self.vehicles),
            "online": online,
            "riding": riding,
            "docked": docked,
            "faults_plan": self.faults.describe(),
            "sent": counters["sent"],
            "received": counters["received"],
            "faults": counters["faults"],
        }


def ids(devices: Iterable[DeviceSim]) -> list[str]:
    return [d.device_id for d in devices]
