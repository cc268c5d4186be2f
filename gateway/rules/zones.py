"""The zones at a fix and what they mean: speed zones, virtual parkings and GBFS rules.

Working out what a set of zones means (labels, limits, the GBFS rules for a vehicle type)
is cached per bundle; a vehicle also keeps the meaning of the zones at its last fix, and
reuses it while its fix is in the very same zones, with the same vehicle type and trip
state (never where a GBFS zone has a time window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockgate.gateway.rules.decisions import Notification, NotificationKind
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import NO_ZONE_RULES, PlaceInfo, Plan, ZoneRules
from dockgate.gateway.rules.speed import hold_speed_zones
from dockgate.gateway.rules.state import VehicleState
from dockgate.gateway.rules.trip_rules import TripMemory


@dataclass(slots=True)
class ZoneMemory:
    """The zones at the vehicle's last usable fix (``hits``, in ``plan``) and what they
    meant (``rules``, for ``on_trip`` and ``vehicle_type``; ``info`` is None when they may
    not be reused), and what that place says in every report until the next usable fix:
    its limits (with the border's slow-down), inside the network or not, the zone names."""

    hits: tuple[int, ...] = ()
    plan: Plan | None = None
    info: PlaceInfo | None = None
    rules: ZoneRules = NO_ZONE_RULES
    on_trip: bool = False
    vehicle_type: str | None = None
    limits: dict[str, int] = field(default_factory=dict)
    inside_network: bool | None = None
    zones: tuple[str, ...] = ()


def zone_rules_at(
    p: Plan, mem: ZoneMemory, st: VehicleState, hits: tuple[int, ...], buffer: float, now: float
) -> ZoneRules:
    """What the zones at a usable fix mean for this vehicle, speed zones held with their
    hysteresis (``hold_speed_zones``); reused from the last fix when nothing it depends on
    has changed."""
    same = hits is mem.hits and mem.plan is p  # the very zones of the last fix
    if not same:
        held = mem.hits
        if held and mem.plan is p and held != hits:
            x, y = (st.lon - p.lon0) * p.kx, (st.lat - p.lat0) * p.ky  # ``Plan.xy``, no call
            hits = hold_speed_zones(p, x, y, held, hits, buffer)
        mem.hits = hits
        mem.plan = p
    on_trip = st.trip is not None
    vtype = st.vehicle_type_id
    if same and mem.info is not None and mem.on_trip is on_trip and mem.vehicle_type == vtype:
        return mem.rules
    info = p.known_place(hits) or p.place(hits)
    if info is mem.info and mem.on_trip is on_trip and mem.vehicle_type == vtype:
        return mem.rules  # other cells, the same zones
    rules = p.zone_rules(info, vtype, on_trip, now)
    mem.info = None if info.timed else info
    mem.rules, mem.on_trip, mem.vehicle_type = rules, on_trip, vtype
    return rules


def ride_through_notice(mem: TripMemory, through: bool | None, on_trip: bool) -> bool:
    """GBFS ``ride_through_allowed``: tell the rider of a trip once when the vehicle enters
    a zone it may not ride through (the speed limit there is lowered by ``zone_rules``),
    and again only after it has been out of such zones (``through`` None: no rule says,
    nothing changes). Returns True: tell now."""
    if through:
        mem.no_through_told = False
        return False
    if through is False and on_trip and not mem.no_through_told:
        mem.no_through_told = True
        return True
    return False


def ride_through_note(draft: Draft) -> None:
    """The rider's notice of a no-ride-through zone."""
    draft.notify(
        Notification(
            NotificationKind.NO_RIDE_THROUGH_ZONE,
            draft.state.vehicle_id,
            "gbfs.ride_through_allowed",
            True,
            draft.inputs(),
        )
    )
