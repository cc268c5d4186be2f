"""What the engine decides: commands for the vehicle, fleet alerts, notifications.

Every decision carries ``reason`` (the rule that fired, e.g. ``border.lock_vehicle``) and
``inputs`` (the values that made it fire), so an operator can tell why it happened.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

# The dashboard's alert enums have one home (the protocol); re-exported for the engine's users.
from dockgate.gateway.protocol.enums import AlertSeverity as AlertSeverity
from dockgate.gateway.protocol.enums import AlertType as AlertType


class CommandKind(StrEnum):
    """Vehicle commands the daemon sends over MQTT."""

    SET_MAX_SPEED = "set_max_speed"
    PLAY_SOUND = "play_geofencing_sound"
    LOCK = "lock"
    UNLOCK = "unlock"
    TRIP_HOLD = "trip_hold"
    END_TRIP = "end_trip"


class AlertAction(StrEnum):
    RAISE = "raise"
    UPDATE = "update"
    CLEAR = "clear"


class NotificationKind(StrEnum):
    """Messages for the rider (push) or the operator that are not dashboard alerts."""

    OUT_OF_NETWORK_AREA = "out-of-network-area"
    TRIP_TOO_LONG = "trip-too-long"
    VEHICLE_STOLEN = "vehicle-stolen"
    NO_RIDE_THROUGH_ZONE = "no-ride-through-zone"
    PARKING_FULL = "parking-full"
    OUTSIDE_PARKING = "outside-parking"


@dataclass(frozen=True, slots=True)
class Command:
    """A command for one vehicle; ``max_speed_kph`` for SET_MAX_SPEED, ``auto_light`` for UNLOCK."""

    kind: CommandKind
    vehicle_id: str
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    max_speed_kph: int | None = None
    auto_light: bool | None = None


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """Raise, update or clear the fleet alert of one type for one vehicle."""

    action: AlertAction
    alert_type: AlertType
    severity: AlertSeverity
    vehicle_id: str
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    occurrences: int = 1


@dataclass(frozen=True, slots=True)
class Notification:
    """A push to the rider of the trip, or a notice to the operator."""

    kind: NotificationKind
    vehicle_id: str
    reason: str
    to_rider: bool
    inputs: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True, slots=True)
class Decisions:
    """Everything decided for one vehicle state at one instant.

    ``max_speed_kph`` is the effective limit (the minimum of every applicable limit, None if
    none applies); ``limits`` names each limit that applied. ``position_used`` is False when
    the fix was stale or too inaccurate, in which case no place-based rule acted.
    ``ride_end_allowed`` says whether the trip may end here (None: no rule says);
    ``ride_end_reasons`` names what refuses it: ``gbfs.ride_end_allowed``, ``parking-full``
    (every virtual parking at the fix is full) or ``outside-parking`` (the bundle requires a
    parking and none is within the fix's buffer).
    """

    vehicle_id: str
    at: float
    commands: tuple[Command, ...]
    alerts: tuple[AlertDecision, ...]
    notifications: tuple[Notification, ...]
    max_speed_kph: int | None
    limits: dict[str, int]
    inside_network: bool | None
    zones: tuple[str, ...]
    position_used: bool
    ride_end_allowed: bool | None = None
    ride_end_reasons: tuple[str, ...] = ()

    def command_kinds(self) -> list[CommandKind]:
        return [c.kind for c in self.commands]


class Outcome(Protocol):
    """What one evaluation decided: commands, fleet alerts and notifications, in order."""

    @property
    def commands(self) -> tuple[Command, ...]: ...
    @property
    def alerts(self) -> tuple[AlertDecision, ...]: ...
    @property
    def notifications(self) -> tuple[Notification, ...]: ...


class PlaceReading(Protocol):
    """What the last usable fix's place said: inside the network, the zones there."""

    @property
    def inside_network(self) -> bool | None: ...
    @property
    def zones(self) -> tuple[str, ...]: ...


class RideEndReading(Protocol):
    """Whether a trip may end at the last usable fix, and what refuses it."""

    @property
    def ride_end_allowed(self) -> bool | None: ...
    @property
    def ride_end_reasons(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class _NothingDecided:
    commands: tuple[Command, ...] = ()
    alerts: tuple[AlertDecision, ...] = ()
    notifications: tuple[Notification, ...] = ()


NOTHING_DECIDED: Outcome = _NothingDecided()


class _DecisionsBuilder:
    """``Decisions(...)`` for the engine's hot path: the same frozen object, built in one
    step. A frozen dataclass's ``__init__`` pays a guarded ``setattr`` per field; this class
    has the very same slots, fills them plainly and then becomes a ``Decisions`` (a class
    change between two classes of one layout), so what callers get is an ordinary one. The
    values come grouped as the engine keeps them (what was decided, the place, the ride end).
    """

    __slots__ = Decisions.__slots__

    def __init__(
        self,
        vehicle_id: str,
        at: float,
        decided: Outcome,
        max_speed_kph: int | None,
        limits: dict[str, int],
        place: PlaceReading,
        ride_end: RideEndReading,
        position_used: bool,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.at = at
        self.commands = decided.commands
        self.alerts = decided.alerts
        self.notifications = decided.notifications
        self.max_speed_kph = max_speed_kph
        self.limits = limits
        self.inside_network = place.inside_network
        self.zones = place.zones
        self.position_used = position_used
        self.ride_end_allowed = ride_end.ride_end_allowed
        self.ride_end_reasons = ride_end.ride_end_reasons
        self.__class__ = Decisions  # type: ignore[assignment]  # same slots: see the docstring


if TYPE_CHECKING:

    def make_decisions(
        vehicle_id: str,
        at: float,
        decided: Outcome,
        max_speed_kph: int | None,
        limits: dict[str, int],
        place: PlaceReading,
        ride_end: RideEndReading,
        position_used: bool,
    ) -> Decisions:
        """A ``Decisions`` built in one step (``_DecisionsBuilder`` at run time)."""

else:
    make_decisions = _DecisionsBuilder


class DecisionTally:
    """How many commands, alert actions and notifications the engine has decided, by kind.

    For operators (``/metrics``): counted once per decision as the engine makes it, so a
    flood of identical telemetry that decides nothing costs nothing here.
    """

    __slots__ = ("alerts", "commands", "notifications")

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.alerts: Counter[tuple[str, str]] = Counter()  # (alert type, action)
        self.notifications: Counter[str] = Counter()

    def count(self, decided: Decisions) -> None:
        for command in decided.commands:
            self.commands[command.kind.value] += 1
        for alert in decided.alerts:
            self.alerts[alert.alert_type.value, alert.action.value] += 1
        for notification in decided.notifications:
            self.notifications[notification.kind.value] += 1
