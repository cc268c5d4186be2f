"""Fleet alert lifecycle: raise, update, clear; one open alert per vehicle and type.

A vehicle circling a border must raise one alert, not hundreds. So: while an alert is open a
new occurrence only counts (an UPDATE at most every ``update_interval_s``, or at once when the
severity changes); a clear waits until the condition has been absent for ``clear_after_s``,
and a return within that time keeps the same alert open; and each vehicle may raise at most
``max_raises_per_hour`` alerts of a type per rolling hour.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.rules.decisions import AlertAction, AlertDecision, AlertSeverity, AlertType

_RANK = {AlertSeverity.LOW: 0, AlertSeverity.HIGH: 1, AlertSeverity.CRITICAL: 2}


@dataclass(slots=True)
class _Open:
    severity: AlertSeverity
    raised_at: float
    last_emit: float
    occurrences: int = 1
    absent_since: float | None = None


@dataclass(slots=True)
class AlertBook:
    """Open alerts and recent raises; deterministic given the calls and their ``now``."""

    clear_after_s: float = 120.0
    update_interval_s: float = 60.0
    max_raises_per_hour: int = 6
    _open: dict[tuple[str, AlertType], _Open] = field(default_factory=dict)
    _raises: dict[tuple[str, AlertType], deque[float]] = field(default_factory=dict)

    def is_open(self, vehicle_id: str, alert_type: AlertType) -> bool:
        return (vehicle_id, alert_type) in self._open

    def present(
        self,
        vehicle_id: str,
        alert_type: AlertType,
        severity: AlertSeverity,
        now: float,
        reason: str,
        inputs: dict[str, Any],
    ) -> AlertDecision | None:
        """The condition holds now: raise, update, or nothing."""
        key = (vehicle_id, alert_type)
        cur = self._open.get(key)
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
                    inputs,
                    cur.occurrences,
                )
            return None
        recent = self._raises.setdefault(key, deque())
        while recent and now - recent[0] >= 3600:
            recent.popleft()
        if len(recent) >= self.max_raises_per_hour:
            return None
        recent.append(now)
        self._open[key] = _Open(severity, now, now)
        return AlertDecision(AlertAction.RAISE, alert_type, severity, vehicle_id, reason, inputs)

    def absent(
        self,
        vehicle_id: str,
        alert_type: AlertType,
        now: float,
        reason: str,
        inputs: dict[str, Any],
    ) -> AlertDecision | None:
        """The condition does not hold now: clear once it has stayed away long enough."""
        key = (vehicle_id, alert_type)
        cur = self._open.get(key)
        if cur is None:
            return None
        if cur.absent_since is None:
            cur.absent_since = now
        if now - cur.absent_since < self.clear_after_s:
            return None
        del self._open[key]
        return AlertDecision(
            AlertAction.CLEAR,
            alert_type,
            cur.severity,
            vehicle_id,
            reason,
            inputs,
            cur.occurrences,
        )
