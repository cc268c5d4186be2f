"""The network border: which side a vehicle is on, and what leaving it does.

GPS error near the border must not make a vehicle flap in and out, so the side changes only
when a fix is beyond the border by more than its buffer (its accuracy, at least the
bundle's ``min_buffer_m``) and stays beyond it for ``dwell_s``. Leaving may play a sound,
notify the rider, raise a fleet alert, slow the vehicle and lock it (the bundle's border
settings); the lock itself is decided with the other lock reasons (``locking``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockgate.gateway.rules.alerts import AlertBook
from dockgate.gateway.rules.decisions import (
    AlertSeverity,
    AlertType,
    Command,
    CommandKind,
    Notification,
    NotificationKind,
)
from dockgate.gateway.rules.draft import Draft
from dockgate.gateway.rules.plan import GridCell, Plan
from dockgate.gateway.rules.state import VehicleState

BORDER_LOCK = ("border.lock_vehicle",)
_OUT = AlertType.VEHICLE_OUT_OF_NETWORK_AREA
_HIGH = AlertSeverity.HIGH


@dataclass(slots=True)
class BorderMemory:
    """A vehicle's side of the border, since when its fixes have put it on the other side
    (None: they have not), and the place limits with the border's slow-down, made once per
    place limits while it is outside."""

    outside: bool = False
    candidate_since: float | None = None
    reduced_from: dict[str, int] | None = None
    reduced: dict[str, int] = field(default_factory=dict)


def border_distance(p: Plan, st: VehicleState, cell: GridCell, buffer: float) -> float:
    """The signed distance to the border (positive inside), or a bound on it that decides
    a comparison with +-``buffer`` the same way: most cells know their distance, and near
    the border a cell's side and gap usually settle it without the exact computation."""
    d = cell.border_distance
    if d is not None:
        return d
    side, gap = cell.border_side, cell.border_gap
    if side and gap > buffer:
        return gap * side  # a bound; exact only for the comparison
    x, y = p.xy(st.lat, st.lon)
    return p.grid.exact(x, y, cell)


def track_border(
    p: Plan, mem: BorderMemory, st: VehicleState, cell: GridCell, buffer: float, now: float
) -> bool:
    """Update the vehicle's side of the border from a usable fix (hysteresis and dwell, so
    GPS noise at the border does not flap). Returns True when the vehicle has just left."""
    d = cell.border_distance
    if d is None:
        d = border_distance(p, st, cell, buffer)
    outside = mem.outside
    if (d > buffer) if outside else (d < -buffer):
        since = mem.candidate_since
        if since is None:
            since = mem.candidate_since = now
        if now - since >= p.dwell_s:
            mem.outside = not outside
            mem.candidate_since = None
            return not outside
    elif mem.candidate_since is not None:
        mem.candidate_since = None
    return False


def reduced_limits(p: Plan, mem: BorderMemory, limits: dict[str, int]) -> dict[str, int]:
    """The place limits with the border's slow-down (``reduce_vehicle_speed``) for a vehicle
    outside; the same place limits give the same dict, made once, not per report."""
    if mem.reduced_from is not limits:
        mem.reduced_from = limits
        mem.reduced = {**limits, "border.reduce_vehicle_speed": p.slow}
    return mem.reduced


def _exact_distance(p: Plan, st: VehicleState, cell: GridCell) -> float:
    x, y = p.xy(st.lat, st.lon)
    return p.grid.exact(x, y, cell)


def border_alert(draft: Draft, book: AlertBook, p: Plan, cell: GridCell, outside: bool) -> None:
    """The fleet alert for a vehicle outside the network (``trigger_alert``): raised or kept
    while outside, cleared once back inside for long enough (the alert book's lifecycle)."""
    st = draft.state
    vid = st.vehicle_id
    if outside:
        o = book.open_alert(vid, _OUT)
        if o is None or not o.holds(_HIGH):
            inputs = {**draft.inputs(), "border_distance_m": _exact_distance(p, st, cell)}
            draft.alert(book.present(vid, _OUT, _HIGH, draft.now, "border.trigger_alert", inputs))
    elif book.open_alert(vid, _OUT) is not None:
        draft.alert(book.absent(vid, _OUT, draft.now, "border.back_inside", draft.inputs()))


def border_notices(draft: Draft, p: Plan, cell: GridCell) -> None:
    """What leaving the network does at once: the vehicle plays its geofencing sound
    (``play_vehicle_sound``) and the rider of a trip is told (``notify_user``)."""
    st = draft.state
    if p.border_sound:
        draft.command(
            Command(
                CommandKind.PLAY_SOUND, st.vehicle_id, "border.play_vehicle_sound", draft.inputs()
            )
        )
    if p.border_notify and st.trip is not None:
        inputs = {**draft.inputs(), "border_distance_m": _exact_distance(p, st, cell)}
        draft.notify(
            Notification(
                NotificationKind.OUT_OF_NETWORK_AREA,
                st.vehicle_id,
                "border.notify_user",
                True,
                inputs,
            )
        )
