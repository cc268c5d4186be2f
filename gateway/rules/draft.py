"""The decisions of one evaluation while the rules make them, and the inputs they share.

Every decision carries ``inputs``: the values that made it fire. They are the same for all
decisions of one report, so they are built once, at the first decision that needs them, and
not at all for the (usual) report that decides nothing. A draft is made only for a report
that may decide something; the engine turns it into the ``Decisions`` it returns.
"""

from __future__ import annotations

from typing import Any

from dockgate.gateway.rules.config import Pricing
from dockgate.gateway.rules.decisions import AlertDecision, Command, Notification
from dockgate.gateway.rules.pricing import trip_cost_now
from dockgate.gateway.rules.state import VehicleState


class Draft:
    """Commands, notifications and fleet alerts decided so far for one report, and the
    speed limits that will be reported (a pending lock may still lower them).

    ``due_price`` is the trip's pricing when the credit rule fired for this report (then the
    inputs carry the trip's cost and credit), else None.
    """

    __slots__ = (
        "_alerts",
        "_commands",
        "_inputs",
        "_notes",
        "due_price",
        "limits",
        "max_speed",
        "now",
        "state",
        "version",
    )

    def __init__(
        self,
        version: str,
        state: VehicleState,
        now: float,
        due_price: Pricing | None,
        limits: dict[str, int],
        max_speed: int | None,
    ) -> None:
        self.version = version
        self.state = state
        self.now = now
        self.due_price = due_price
        self.limits = limits
        self.max_speed = max_speed
        self._commands: list[Command] = []
        self._notes: list[Notification] = []
        self._alerts: list[AlertDecision] = []
        self._inputs: dict[str, Any] | None = None

    def inputs(self) -> dict[str, Any]:
        """The values behind this report's decisions (built at the first call)."""
        d = self._inputs
        if d is None:
            d = self._inputs = decision_inputs(self.version, self.state, self.now, self.due_price)
        return d

    def command(self, command: Command) -> None:
        self._commands.append(command)

    def first_command(self, command: Command) -> None:
        """A command that goes before the others (the speed limit: set before any lock)."""
        self._commands.insert(0, command)

    def notify(self, notification: Notification) -> None:
        self._notes.append(notification)

    def alert(self, alert: AlertDecision | None) -> None:
        """Record what the alert book decided (None: nothing)."""
        if alert is not None:
            self._alerts.append(alert)

    @property
    def commands(self) -> tuple[Command, ...]:
        return tuple(self._commands) if self._commands else ()

    @property
    def alerts(self) -> tuple[AlertDecision, ...]:
        return tuple(self._alerts) if self._alerts else ()

    @property
    def notifications(self) -> tuple[Notification, ...]:
        return tuple(self._notes) if self._notes else ()


def decision_inputs(
    version: str, st: VehicleState, now: float, due_price: Pricing | None
) -> dict[str, Any]:
    """The values behind a decision: the report, the bundle version, the trip's duration,
    and its cost and credit when the credit rule fired (``due_price``: the trip's pricing)."""
    trip = st.trip
    d: dict[str, Any] = {
        "at": now,
        "lat": st.lat,
        "lon": st.lon,
        "fix_age_s": round(now - st.fix_time, 3),
        "accuracy_m": st.accuracy_m,
        "speed_kph": st.speed_kph,
        "battery": st.battery,
        "locked": st.locked,
        "trip_id": None if trip is None else trip.trip_id,
        "bundle": version,
    }
    if trip is not None:
        d["trip_duration_s"] = round(now - trip.started_at, 3)
        if due_price is not None:
            d["trip_cost"] = round(trip_cost_now(due_price, trip, now), 4)
            d["credit"] = trip.credit
    return d
