"""What applies at one place: the answer behind ``dockgate rules explain``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockgate.gateway.rules import gbfs as gbfs_mod
from dockgate.gateway.rules.bundle import GBFS, PARKING, SPEED, RuleBundle


def explain(
    bundle: RuleBundle,
    lat: float,
    lon: float,
    vehicle_type: str | None,
    at: float,
    parking_occupancy: Callable[[int], int | None] | None = None,
) -> dict[str, Any]:
    """The rules at (lat, lon) for a vehicle type at time ``at`` (epoch seconds).

    ``max_speed_kph`` is the minimum of the speed-zone and GBFS limits there (speed mode,
    battery and border slow-down depend on the vehicle and are left to the engine). ``zones``
    lists matched zone names in precedence order: dashboard speed zones and parkings in file
    order, then the GBFS zones whose rules applied. ``virtual_parkings`` lists the parkings
    at the position with their ``capacity``, and ``occupancy``/``full`` where
    ``parking_occupancy(id)`` knows it (a capacity of 0 is always full). ``ride_end_allowed``
    is False there when GBFS forbids it, when every parking at the position is full, or when
    the bundle requires a parking (``parking_required``) and none is there;
    ``ride_end_reasons`` says which, as the engine does.
    """
    cfg = bundle.config
    x, y = bundle.projection.xy(lat, lon)
    hits = bundle.zones.at(x, y)
    zones: list[str] = []
    limits: dict[str, int] = {}
    parkings: list[dict[str, Any]] = []
    gbfs_hits: list[int] = []
    for i in hits:
        e = bundle.entries[i]
        if e.kind == SPEED:
            z = cfg.speed_zones[e.pos]
            zones.append(e.label)
            limits[e.label] = z.max_speed
        elif e.kind == PARKING:
            p = cfg.virtual_parkings[e.pos]
            zones.append(e.label)
            occ = parking_occupancy(p.id) if parking_occupancy is not None else None
            full = True if p.capacity == 0 else (None if occ is None else occ >= p.capacity)
            parkings.append(
                {
                    "id": p.id,
                    "name": e.label,
                    "capacity": p.capacity,
                    "occupancy": occ,
                    "full": full,
                }
            )
        elif e.kind == GBFS:
            gbfs_hits.append(e.pos)
    border_d = bundle.border.exact(x, y) if bundle.border is not None else None
    res = gbfs_mod.Resolved(None, None, None, None, None)
    if bundle.gbfs is not None:
        res, names = gbfs_mod.resolve(
            bundle.gbfs.zones, bundle.gbfs.global_rules, gbfs_hits, vehicle_type, at
        )
        zones.extend(names)
        if res.maximum_speed_kph is not None:
            limits["gbfs"] = res.maximum_speed_kph
    inside = border_d >= 0 if border_d is not None else res.ride_through_allowed
    if bundle.gbfs is not None and bundle.gbfs.version in gbfs_mod.V2_VERSIONS:
        # GBFS 2.x: "by default, no restrictions apply everywhere".
        res = gbfs_mod.Resolved(
            True if res.ride_start_allowed is None else res.ride_start_allowed,
            True if res.ride_end_allowed is None else res.ride_end_allowed,
            True if res.ride_through_allowed is None else res.ride_through_allowed,
            res.maximum_speed_kph,
            res.station_parking,
        )
        if border_d is None:
            inside = res.ride_through_allowed
    ride_end = res.ride_end_allowed
    reasons = ["gbfs.ride_end_allowed"] if ride_end is False else []
    if parkings:
        if all(q["full"] for q in parkings):
            reasons.append("parking-full")
        elif ride_end is None and not any(q["full"] is None for q in parkings):
            ride_end = True
    elif cfg.parking_required:
        reasons.append("outside-parking")
    if reasons:
        ride_end = False
    return {
        "bundle_version": bundle.version,
        "lat": lat,
        "lon": lon,
        "vehicle_type": vehicle_type,
        "at": at,
        "inside_network": inside,
        "border_distance_m": None if border_d is None else round(border_d, 2),
        "max_speed_kph": min(limits.values()) if limits else None,
        "ride_start_allowed": res.ride_start_allowed,
        "ride_end_allowed": ride_end,
        "ride_end_reasons": reasons,
        "ride_through_allowed": res.ride_through_allowed,
        "station_parking": res.station_parking,
        "zones": zones,
        "limits": limits,
        "virtual_parkings": parkings,
        "parking_required": cfg.parking_required,
    }
