"""The local rules engine: bundles (dashboard-style or GBFS), evaluation, alert lifecycle."""

from gateway.rules.alerts import AlertBook
from gateway.rules.bundle import BundleHolder, RuleBundle, load_bundle
from gateway.rules.decisions import (
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
from gateway.rules.engine import RulesEngine, Trip, VehicleState
from gateway.rules.errors import BundleError, Problem
from gateway.rules.explain import explain

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
