"""Fleet alerts that need no position: a vehicle moving while locked or without a trip (it
may be carried off), and a vehicle unlocked without a trip.

Each is raised while its condition holds and cleared once it has stayed away long enough
(the alert book's lifecycle), so a vehicle nudged at a stand raises one alert, not many.
"""

from __future__ import annotations

from collections.abc import Mapping

from dockgate.gateway.rules.alerts import AlertBook, OpenAlert
from dockgate.gateway.rules.decisions import AlertSeverity, AlertType
from dockgate.gateway.rules.draft import Draft

_OUT = AlertType.VEHICLE_OUT_OF_NETWORK_AREA
_MOVING = AlertType.VEHICLE_ILLEGAL_MOVING
_UNLOCKED = AlertType.UNEXPECTED_UNLOCK
_HIGH = AlertSeverity.HIGH
_LOW = AlertSeverity.LOW


def moving_alert(draft: Draft, book: AlertBook, moving: bool) -> None:
    """``vehicle.moving_without_trip``: moving while locked or with no trip."""
    st = draft.state
    vid = st.vehicle_id
    if moving and (st.locked or st.trip is None):
        o = book.open_alert(vid, _MOVING)
        if o is None or not o.holds(_HIGH):
            reason = "vehicle.moving_without_trip"
            draft.alert(book.present(vid, _MOVING, _HIGH, draft.now, reason, draft.inputs))
    elif book.open_alert(vid, _MOVING) is not None:
        draft.alert(book.absent(vid, _MOVING, draft.now, "vehicle.still", draft.inputs))


def unlocked_alert(draft: Draft, book: AlertBook) -> None:
    """``vehicle.unlocked_without_trip``: unlocked with no trip."""
    st = draft.state
    vid = st.vehicle_id
    if not st.locked and st.trip is None:
        o = book.open_alert(vid, _UNLOCKED)
        if o is None or not o.holds(_HIGH):
            reason = "vehicle.unlocked_without_trip"
            draft.alert(book.present(vid, _UNLOCKED, _HIGH, draft.now, reason, draft.inputs))
    elif book.open_alert(vid, _UNLOCKED) is not None:
        draft.alert(book.absent(vid, _UNLOCKED, draft.now, "vehicle.locked", draft.inputs))


def alerts_settled(
    opened: Mapping[AlertType, OpenAlert] | None,
    outside: bool | None,
    moving_without_trip: bool,
    unlocked_without_trip: bool,
) -> bool:
    """Would this report leave every fleet alert as it is? Yes when each alert condition
    that holds has its alert open and steady (``OpenAlert.holds`` at HIGH: not absent, not
    LOW), and no alert whose condition is gone is open (it may be due to clear).
    ``opened``: the vehicle's open alerts; ``outside``: the border alert's condition, None
    where it is not looked at (no usable fix, or not configured)."""
    if opened is None:
        return not (outside or moving_without_trip or unlocked_without_trip)
    # Written out, not a helper per type: this runs for every report of a vehicle with an
    # open alert (a vehicle outside the network, say).
    o = opened.get(_OUT)
    if outside is not None and (
        (o is None or o.absent_since is not None or o.severity is _LOW)
        if outside
        else o is not None
    ):
        return False
    o = opened.get(_MOVING)
    if (
        (o is None or o.absent_since is not None or o.severity is _LOW)
        if moving_without_trip
        else o is not None
    ):
        return False
    o = opened.get(_UNLOCKED)
    return (
        o is not None and o.absent_since is None and o.severity is not _LOW
        if unlocked_without_trip
        else o is None
    )
