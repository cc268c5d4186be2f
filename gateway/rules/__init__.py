"""The local rules engine: bundles (dashboard-style or GBFS), evaluation, alert lifecycle."""

from dockgate.gateway.rules.alerts import AlertBook
from dockgate.gateway.rules.bundle import BundleHolder, RuleBundle, load_bundle
from dockgate.gateway.rules.decisions import (
    AlertAction,
    AlertDecision,
    AlertSeverity,
    AlertType,
    Command,
    CommandKind,
    Decisions,
    Notification,
    NotificationKind,
)
from dockgate.gateway.rules.engine import RulesEngine, Trip, VehicleState
from dockgate.gateway.rules.errors import BundleError, Problem
from dockgate.gateway.rules.explain import explain

__all__ = [
    "AlertAction",
    "AlertBook",
    "AlertDecision",
    "AlertSeverity",
    "AlertType",
    "BundleError",
    "BundleHolder",
    "Command",
    "CommandKind",
    "Decisions",
    "Notification",
    "NotificationKind",
    "Problem",
    "RuleBundle",
    "RulesEngine",
    "Trip",
    "VehicleState",
    "explain",
    "load_bundle",
]
