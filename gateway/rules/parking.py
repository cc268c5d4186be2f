"""Virtual parkings: where a trip may end, and how many vehicles each parking holds.

A parking has room while its occupancy is below its capacity (capacity 0: never). The
occupancy comes from the shell's provider when it knows it, else from what the engine has
seen: vehicles parked there (locked, no trip, last usable fix inside). A trip ends at rest,
so the parkings are looked at only at walking speed or below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dockgate.gateway.rules.decisions import Notification, NotificationKind
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import Plan, ZoneRules
from dockgate.gateway.rules.state import VehicleState

OccupancyProvider = Callable[[int], "int | None"]
GBFS_END = ("gbfs.ride_end_allowed",)
_RULE = {"parking-full": "virtual_parkings.capacity", "outside-parking": "parking_required"}
_NOTE = {
    "parking-full": NotificationKind.PARKING_FULL,
    "outside-parking": NotificationKind.OUTSIDE_PARKING,
}


@dataclass(frozen=True, slots=True)
class ParkingRoom:
    """A parking looked at for a trip's end: its capacity and occupancy, and where the
    number is from (``provider``, ``observed`` or ``provider-error``)."""

    id: int
    capacity: int
    occupancy: int
    source: str

    def as_inputs(self) -> dict[str, int | str]:
        return {
            "id": self.id,
            "capacity": self.capacity,
            "occupancy": self.occupancy,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ParkingVerdict:
    """Whether virtual parkings refuse a trip's end here (``refusal``: ``parking-full``,
    ``outside-parking`` or None) and the parkings looked at, in the order looked at."""

    refusal: str | None
    parkings: tuple[ParkingRoom, ...]


@dataclass(frozen=True, slots=True)
class ParkingRefusal:
    """A refusal the rider was told about, and the parkings it was about."""

    reason: str
    parking_ids: tuple[int, ...]


@dataclass(slots=True)
class ParkingMemory:
    """May a trip end at the last usable fix (None: no rule says) and what refuses it; the
    parkings looked at; the refusal the rider of this trip was last told about (told once,
    not per report); the parkings the vehicle is counted in. ``judged``: the zone rules
    the verdict was last made from without looking at parkings (None: it looked at them);
    with the same rules again (and nothing told to forget) it stands as it is."""

    ride_end_allowed: bool | None = None
    ride_end_reasons: tuple[str, ...] = ()
    parkings_seen: tuple[ParkingRoom, ...] = ()
    told: ParkingRefusal | None = None
    parked_in: tuple[int, ...] = ()
    judged: ZoneRules | None = None


class ParkingCounts:
    """How many vehicles are parked in each virtual parking: the provider's answer, or the
    vehicles this engine last saw parked there (locked, no trip) when it has none."""

    __slots__ = ("_parked", "_provider")

    def __init__(self, provider: OccupancyProvider | None) -> None:
        self._provider = provider
        self._parked: dict[int, set[str]] = {}

    def occupancy(self, parking_id: int) -> tuple[int, str]:
        """(vehicles parked, source): ``provider`` (the injected provider), or ``observed``
        when there is no provider, it answers None, or it fails (``provider-error``)."""
        f = self._provider
        if f is not None:
            try:
                n = f(parking_id)
            except Exception:  # the provider is the shell's; a failure is an unknown count
                return len(self._parked.get(parking_id, ())), "provider-error"
            if n is not None:
                return int(n), "provider"
        return len(self._parked.get(parking_id, ())), "observed"

    def observed(self) -> dict[int, frozenset[str]]:
        """The vehicles seen parked, per parking id (a copy)."""
        return {k: frozenset(v) for k, v in self._parked.items()}

    def move(self, vehicle_id: str, mem: ParkingMemory, parked: tuple[int, ...]) -> None:
        """Count a vehicle in the parkings it is now parked in (positions' ids), and no more
        in those it was in."""
        for pid in mem.parked_in:
            s = self._parked.get(pid)
            if s is not None:
                s.discard(vehicle_id)
                if not s:
                    del self._parked[pid]
        for pid in parked:
            self._parked.setdefault(pid, set()).add(vehicle_id)
        mem.parked_in = parked

    def room(self, p: Plan, position: int) -> ParkingRoom:
        """The parking at ``position`` in the bundle, with its occupancy now."""
        z = p.parkings[position]
        n, source = self.occupancy(z.id)
        return ParkingRoom(z.id, z.capacity, n, source)


def parking_verdict(
    p: Plan, counts: ParkingCounts, parks: tuple[int, ...], st: VehicleState, buffer: float
) -> ParkingVerdict:
    """May a trip end at this fix as far as virtual parkings go? The parkings the fix is in
    (``parks``) are looked at first; if none has room, those within the fix's buffer too
    (GPS error must not trap a rider next to a free parking). Refused: ``parking-full`` if
    parkings were found but all are full, ``outside-parking`` if the bundle requires a
    parking and none was found."""
    seen: list[ParkingRoom] = []
    for i in parks:
        room = counts.room(p, i)
        seen.append(room)
        if room.occupancy < room.capacity:
            return ParkingVerdict(None, tuple(seen))
    x, y = p.xy(st.lat, st.lon)
    for i in p.parkings_near(x, y, buffer):
        if i not in parks:
            room = counts.room(p, i)
            seen.append(room)
            if room.occupancy < room.capacity:
                return ParkingVerdict(None, tuple(seen))
    if seen:
        return ParkingVerdict("parking-full", tuple(seen))
    return ParkingVerdict("outside-parking" if p.parking_required else None, ())


def judge_ride_end(
    p: Plan,
    counts: ParkingCounts,
    mem: ParkingMemory,
    st: VehicleState,
    rules: ZoneRules,
    moving: bool,
    buffer: float,
) -> bool:
    """May the trip end at this usable fix? GBFS's ride_end_allowed, then (for a trip at
    rest) the virtual parkings. Returns True when the rider should be told of a parking
    refusal now (once per refusal and parkings)."""
    ride_end = rules.ride_end_allowed
    gbfs_end = GBFS_END if ride_end is False else ()
    told = False
    if st.trip is not None and not moving and (rules.parkings or p.parking_required):
        mem.judged = None
        verdict = parking_verdict(p, counts, rules.parkings, st, buffer)
        mem.parkings_seen = verdict.parkings
        if verdict.refusal is not None:
            ride_end = False
            mem.ride_end_reasons = (*gbfs_end, verdict.refusal)
            refusal = ParkingRefusal(verdict.refusal, tuple(q.id for q in verdict.parkings))
            if refusal != mem.told:
                mem.told = refusal
                told = True
        else:
            mem.ride_end_reasons = gbfs_end
            mem.told = None
            if ride_end is None and verdict.parkings:
                ride_end = True  # a parking here has room
    else:
        mem.judged = rules
        mem.ride_end_reasons = gbfs_end
        if mem.parkings_seen:
            mem.parkings_seen = ()
        if not moving:
            mem.told = None
    mem.ride_end_allowed = ride_end
    return told


def parking_note(draft: Draft, mem: ParkingMemory) -> None:
    """Tell the rider why the trip may not end here, with the parkings looked at."""
    refusal = mem.told
    if refusal is None:
        return
    inputs = {**draft.inputs(), "parkings": [q.as_inputs() for q in mem.parkings_seen]}
    draft.notify(
        Notification(
            _NOTE[refusal.reason], draft.state.vehicle_id, _RULE[refusal.reason], True, inputs
        )
    )
