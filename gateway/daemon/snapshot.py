"""The status page's picture of the site, read from the store and the active rule bundle.

Only what a technician on site needs, and nothing secret: no keys, no tokens, no rider names.
"""

from __future__ import annotations

from typing import Any

from dockgate.gateway.rules import RuleBundle
from dockgate.gateway.store import AlertQuery, Store


def _map(store: Store, bundle: RuleBundle) -> dict[str, Any]:
    config = bundle.config
    border = getattr(config, "border", None)
    stations = []
    for st in store.topology.stations():
        spots = store.topology.spots(st.id)
        stations.append(
            {
                "id": st.id,
                "name": st.name,
                "lat": st.lat,
                "lon": st.lon,
                "spots_total": len(spots),
                "spots_free": sum(1 for sp in spots if sp.vehicle_id is None),
            }
        )
    return {
        "border": [list(map(list, border.shape))] if border is not None else [],
        "speed_zones": [
            {"id": z.id, "name": z.name, "max_speed": z.max_speed, "polygon": z.shape}
            for z in getattr(config, "speed_zones", [])
        ],
        "parkings": [
            {"id": p.id, "name": p.name, "capacity": p.capacity, "polygon": p.shape}
            for p in getattr(config, "virtual_parkings", [])
        ],
        "stations": stations,
    }


def status_snapshot(
    store: Store,
    bundle: RuleBundle,
    *,
    site_name: str,
    parts: list[dict[str, Any]],
    readers: list[dict[str, Any]],
    taps: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything ``api/status/page.html`` draws, as plain JSON-able data."""
    open_alerts = store.alerts.query(AlertQuery(resolved=False, page_size=50))
    alerted = {a.vehicle_id for a in open_alerts if a.vehicle_id is not None}
    fleet = store.vehicles.all()
    serials = {v.id: v.serial_number for v in fleet}
    vehicles = [
        {
            "id": v.serial_number,
            "lat": v.lat,
            "lon": v.lon,
            "battery": v.battery,
            "locked": bool(v.is_locked),
            "trip_id": v.trip_id,
            "alert": v.id in alerted,
        }
        for v in fleet
    ]
    return {
        "site": {"name": site_name, "bundle_version": bundle.version},
        "map": _map(store, bundle),
        "vehicles": vehicles,
        "alerts": [
            {
                "type": a.alert_type,
                "severity": a.alert_severity,
                "vehicle_id": serials.get(a.vehicle_id, a.vehicle_id)
                if a.vehicle_id is not None
                else None,
                "station_id": a.station_id,
                "created_at": a.creation_date,
            }
            for a in open_alerts
        ],
        "readers": readers,
        "taps": taps,
        "parts": parts,
    }
