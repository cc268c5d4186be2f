"""The fleet dashboard's request bodies (``tests/data/dashboard``, copied from its API
reference) and a rule bundle made of them as they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_BODIES", "body", "seed_bundle"]

DASHBOARD_BODIES = Path(__file__).resolve().parents[1] / "data" / "dashboard"


def body(name: str) -> dict[str, Any]:
    """The request body ``name`` (e.g. ``speed-zone-create``), a fresh copy each time."""
    loaded: dict[str, Any] = json.loads((DASHBOARD_BODIES / f"{name}.json").read_text())
    return loaded


def seed_bundle(version: str = "seed-1") -> dict[str, Any]:
    """A whole bundle made of the dashboard's bodies, unchanged: the border's shape with its
    settings, a created and an updated speed zone and virtual parking, the rent settings and
    timings, the speed settings, one model's vehicle settings (its ``model_id`` is a path
    parameter in the dashboard) and a pricing rule."""
    return {
        "version": version,
        "network_id": 1,
        "border": {**body("border-shape"), "settings": body("border-settings")},
        "speed_zones": [body("speed-zone-create"), body("speed-zone-update")],
        "virtual_parkings": [body("virtual-parking-create"), body("virtual-parking-update")],
        "rent_settings": body("rent-settings"),
        "rent_timings": body("rent-timings"),
        "vehicle_speed_settings": body("vehicle-speed-settings"),
        "vehicle_settings": [{"model_id": 1, **body("vehicle-settings")}],
        "pricing": [body("pricing")],
    }
