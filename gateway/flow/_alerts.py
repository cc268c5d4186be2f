"""Fleet alerts the devices and the rules raise and clear, each with its CRITICAL outbox event."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dockgate.gateway.flow._parts import FlowParts
from dockgate.gateway.outbox import events
from dockgate.gateway.store import AlertQuery, NewAlert

#: Dashboard severity of each alert a device raises.
SEVERITY = {
    "station-power-cut": "critical",
    "station-alarm-triggered": "critical",
    "vehicle-dismantling": "critical",
    "unexpected-unlock": "high",
    "spot-high-temperature": "high",
    "vehicle-lifted": "high",
    "vehicle-illegal-moving": "high",
    "spot-identify-fail": "low",
    "vehicle-fallen": "low",
}


class AlertDesk:
    """Open alerts (reused while open with the same dedup key) and resolve them."""

    def __init__(self, parts: FlowParts) -> None:
        self.parts = parts
        # alert type -> alerts opened / resolved by the gateway (for /metrics)
        self.raised: Counter[str] = Counter()
        self.cleared: Counter[str] = Counter()

    def raise_alert(
        self,
        alert_type: str,
        *,
        station_id: int | None = None,
        spot_id: int | None = None,
        vehicle_id: int | None = None,
        severity: str | None = None,
        details: dict[str, Any] | None = None,
        dedup: str | None = None,
    ) -> None:
        """Open an alert (reused while open with the same ``dedup``) and queue it critical."""
        p = self.parts
        cluster = p.store.topology.station(station_id).cluster_id if station_id else None
        severity = severity or SEVERITY.get(alert_type, "high")
        with p.store.transaction():
            alert_id, created = p.store.alerts.raise_alert(
                NewAlert(
                    p.site.network_id,
                    alert_type,
                    severity,
                    cluster_id=cluster,
                    station_id=station_id,
                    spot_id=spot_id,
                    vehicle_id=vehicle_id,
                    details=details,
                    dedup_key=dedup,
                )
            )
            if created:
                raised = events.AlertRaised(
                    alert_id,
                    alert_type,
                    severity,
                    station_id,
                    spot_id,
                    vehicle_id,
                    details or {},
                    p.clock(),
                )
                p.outbox.publish(raised, idempotency_key=f"alert:{alert_id}:raised")
                # counted once committed: a batch the disk refused is retried, not counted twice
                p.store.db.after_commit(lambda: self.raised.update((alert_type,)))

    def clear(
        self, alert_type: str, *, station_id: int | None = None, vehicle_id: int | None = None
    ) -> None:
        """Resolve the open alerts of this type (of the station, or of the vehicle)."""
        p = self.parts
        open_ = p.store.alerts.query(
            AlertQuery(
                [p.site.network_id],
                resolved=False,
                alert_type=alert_type,
                vehicle_id=vehicle_id,
                page_size=100,
            )
        )
        ids = [a.id for a in open_ if station_id is None or a.station_id == station_id]
        with p.store.transaction():
            for alert_id in p.store.alerts.resolve(ids, resolved_by="gateway"):
                p.outbox.publish(
                    events.AlertCleared(alert_id, alert_type, p.clock()),
                    idempotency_key=f"alert:{alert_id}:cleared",
                )
                p.store.db.after_commit(lambda: self.cleared.update((alert_type,)))
