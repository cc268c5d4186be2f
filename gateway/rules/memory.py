"""What the engine remembers about one vehicle, one part per rule family.

The engine keeps a little memory per vehicle (border hysteresis, what was already commanded
or told, what the last fix's place meant), so that the same sequence of reports and clock
readings always yields the same decisions, and so that a report that changes nothing costs
little. Each rule module owns the part it reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockgate.gateway.rules.border import BorderMemory
from dockgate.gateway.rules.locking import LockMemory
from dockgate.gateway.rules.parking import ParkingMemory
from dockgate.gateway.rules.speed import LimitsMemory
from dockgate.gateway.rules.state import Trip
from dockgate.gateway.rules.trip_rules import TripMemory
from dockgate.gateway.rules.zones import ZoneMemory


@dataclass(slots=True)
class VehicleMemory:
    """A vehicle's memory: its side of the border, the zones at its last usable fix, where
    its trip may end, its speed limits, its trip, and its pending lock."""

    border: BorderMemory = field(default_factory=BorderMemory)
    zones: ZoneMemory = field(default_factory=ZoneMemory)
    parking: ParkingMemory = field(default_factory=ParkingMemory)
    limits: LimitsMemory = field(default_factory=LimitsMemory)
    trip: TripMemory = field(default_factory=TripMemory)
    lock: LockMemory = field(default_factory=LockMemory)

    def start_trip(self, trip: Trip | None) -> None:
        """A new trip (or none) begins: what was remembered of the last trip is dropped."""
        self.trip = TripMemory(None if trip is None else trip.trip_id)
        self.parking.told = None

    @property
    def quiet_trip(self) -> Trip | None:
        """The trip whose rules are known not to change before ``trip.quiet_until``."""
        return self.trip.quiet_trip

    @quiet_trip.setter
    def quiet_trip(self, trip: Trip | None) -> None:
        """Forget (None) when the trip rules may next change: they run at the next report."""
        self.trip.quiet_trip = trip
