"""Fleet alert lifecycle: raise, update, clear; one open alert per vehicle and type.

A vehicle circling a border must raise one alert, not hundreds. So: while an alert is open a
new occurrence only counts (an UPDATE at most every ``update_interval_s``, or at once when the
severity changes); a clear waits until the condition has been absent for ``clear_after_s``,
and a return within that time keeps the same alert open; and each vehicle may raise at most
``max_raises_per_hour`` alerts of a type per rolling hour.

Open alerts are kept per vehicle, so a caller can see in one lookup (``open_for``) that a
vehicle has none and skip the book entirely: only vehicles with open alerts cost anything.
``inputs`` may be a dict or a function returning one, called only when a decision is made.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockgate.gateway.rules.decisions import AlertAction, AlertDecision, AlertSeverity, AlertType

_RANK = {AlertSeverity.LOW: 0, AlertSeverity.HIGH: 1, AlertSeverity.CRITICAL: 2}


@dataclass(slots=True)
class OpenAlert:
    """An open alert as the book keeps it. Callers read it; only the book changes it."""

    severity: AlertSeverity
    raised_at: float
    last_emit: float
    occurrences: int = 1
    absent_since: float | None = None

    def holds(self, severity: AlertSeverity) -> bool:
        """Would the condition holding at ``severity`` change nothing? (present, not
        absent, and no escalation)"""
        return self.absent_since is None and _RANK[severity] <= _RANK[self.severity]


@dataclass(slots=True)
class AlertBook:
    """Open alerts and recent raises; deterministic given the calls and their ``now``."""

    clear_after_s: float = 120.0
    update_interval_s: float = 60.0
    max_raises_per_hour: int = 6
    _open: dict[str, dict[AlertType, OpenAlert]] = field(default_factory=dict)
    _raises: dict[tuple[str, AlertType], deque[float]] = field(default_factory=dict)

    def is_open(self, vehicle_id: str, alert_type: AlertType) -> bool:
        return alert_type in self._open.get(vehicle_id, ())

    def open_for(self, vehicle_id: str) -> Mapping[AlertType, OpenAlert] | None:
        """The open alerts of a vehicle by type (None: none). Read-only for callers."""
        return self._open.get(vehicle_id)

    def open_alert(self, vehicle_id: str, alert_type: AlertType) -> OpenAlert | None:
        """The open alert of one type for a vehicle (None: none). Read-only for callers."""
        per = self._open.get(vehicle_id)
        return None if per is None else per.get(alert_type)

    def steady(self, vehicle_id: str, alert_type: AlertType, severity: AlertSeverity) -> bool:
        """Would ``present`` be a no-op? (open, not absent, no escalation)."""
        cur = self.open_alert(vehicle_id, alert_type)
        return cur is not None and cur.holds(severity)

    def present(
        self,
        vehicle_id: str,
        alert_type: AlertType,
        severity: AlertSeverity,
        now: float,
        reason: str,
        inputs: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> AlertDecision | None:
        """The condition holds now: raise, update, or nothing."""
        key = (vehicle_id, alert_type)
        per = self._open.get(vehicle_id)
        cur = per.get(alert_type) if per is not None else None
        if cur is not None:
            was_absent = cur.absent_since is not None
            cur.absent_since = None
            if was_absent:
                cur.occurrences += 1
            escalate = _RANK[severity] > _RANK[cur.severity]
            if escalate or (was_absent and now - cur.last_emit >= self.update_interval_s):
                cur.severity = severity if escalate else cur.severity
                cur.last_emit = now
                return AlertDecision(
                    AlertAction.UPDATE,
                    alert_type,
                    cur.severity,
                    vehicle_id,
                    reason,
                    inputs() if callable(inputs) else inputs,
                    cur.occurrences,
                )
            return None
        recent = self._raises.setdefault(key, deque())
        while recent and now - recent[0] >= 3600:
            recent.popleft()
        if len(recent) >= self.max_raises_per_hour:
            return None
        recent.append(now)
        if per is None:
            per = self._open[vehicle_id] = {}
        per[alert_type] = OpenAlert(severity, now, now)
        if callable(inputs):
            inputs = inputs()
        return AlertDecision(AlertAction.RAISE, alert_type, severity, vehicle_id, reason, inputs)

    def absent(
        self,
        vehicle_id: str,
        alert_type: AlertType,
        now: float,
        reason: str,
        inputs: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> AlertDecision | None:
        """The condition does not hold now: clear once it has stayed away long enough."""
        per = self._open.get(vehicle_id)
        cur = per.get(alert_type) if per is not None else None
        if cur is None:
            return None
        if cur.absent_since is None:
            cur.absent_since = now
        if per is None or now - cur.absent_since < self.clear_after_s:
            return None
        del per[alert_type]
        if not per:
            del self._open[vehicle_id]
        return AlertDecision(
            AlertAction.CLEAR,
            alert_type,
            cur.severity,
            vehicle_id,
            reason,
            inputs() if callable(inputs) else inputs,
            cur.occurrences,
        )
