"""Bundle loading: dashboard field ranges, every problem listed, atomic swap."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dockgate.gateway.rules import BundleError, BundleHolder, load_bundle

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "rules" / "demo-milano.json"


def demo() -> dict:
    return json.loads(DEMO.read_text())


def problems_of(doc: dict) -> list[tuple[str, str]]:
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    return [(p.location, p.message) for p in exc.value.problems]


def test_demo_bundle_loads() -> None:
    b = load_bundle(DEMO)
    assert b.version == "demo-milano-2024.06.1"
    assert b.source == "dashboard"
    assert len(b.config.speed_zones) == 3


@pytest.mark.parametrize(
    ("path", "value", "ok"),
    [
        (("speed_zones", 0, "max_speed"), 6, True),
        (("speed_zones", 0, "max_speed"), 25, True),
        (("speed_zones", 0, "max_speed"), 5, False),
        (("speed_zones", 0, "max_speed"), 26, False),
        (("virtual_parkings", 0, "capacity"), 0, True),
        (("virtual_parkings", 0, "capacity"), -1, False),
        (("rent_settings", "min_battery_to_rent"), 10, True),
        (("rent_settings", "min_battery_to_rent"), 95, True),
        (("rent_settings", "min_battery_to_rent"), 9, False),
        (("rent_settings", "min_battery_to_rent"), 96, False),
        (("rent_settings", "max_simultaneous_rented_vehicle"), 1, True),
        (("rent_settings", "max_simultaneous_rented_vehicle"), 10, True),
        (("rent_settings", "max_simultaneous_rented_vehicle"), 0, False),
        (("rent_settings", "max_simultaneous_rented_vehicle"), 11, False),
        (("rent_settings", "min_battery_to_auto_lock"), None, True),
        (("rent_settings", "min_battery_to_auto_lock"), 50, True),
        (("rent_settings", "min_battery_to_auto_lock"), 0, False),
        (("rent_settings", "min_battery_to_auto_lock"), 51, False),
        (("rent_settings", "trip_on_hold"), "maybe", False),
        (("rent_timings", "trip_too_long_notifications"), 3600, True),
        (("rent_timings", "trip_too_long_notifications"), 3599, False),
        (("rent_timings", "trip_too_long_notifications"), 604801, False),
        (("rent_timings", "trip_too_long_notifications_frequency"), 900, True),
        (("rent_timings", "trip_too_long_notifications_frequency"), 899, False),
        (("rent_timings", "vehicle_stolen"), 43200, True),
        (("rent_timings", "vehicle_stolen"), 43199, False),
        (("rent_timings", "vehicle_stolen"), 2592001, False),
        (("rent_timings", "trip_auto_pause"), 0, True),
        (("rent_timings", "trip_auto_pause"), 604801, False),
        (("rent_timings", "trip_max_pause"), -1, False),
        (("rent_timings", "trip_auto_lock"), 604800, True),
        (("rent_timings", "trip_auto_lock"), 604801, False),
        (("vehicle_settings", 0, "speed_mode"), 3, True),
        (("vehicle_settings", 0, "speed_mode"), 4, False),
        (("vehicle_speed_settings", "default_low_speed"), 21, False),  # low > medium
        # each nullable on its own, as in the dashboard (null: no battery slow-down)
        (("vehicle_speed_settings", "battery_slow_down_speed"), None, True),
        (("vehicle_speed_settings", "min_battery_to_slow_down"), None, True),
        (("pricing", 0, "start_dow"), 7, False),
        (("pricing", 0, "start_hod"), "25:00:00", False),
        (("pricing", 0, "unlock_price"), -0.1, False),
        (("border", "settings", "lock_vehicle"), "yes", False),
        (("timezone",), "Mars/Olympus", False),
    ],
)
def test_field_ranges(path: tuple, value: object, ok: bool) -> None:
    doc = demo()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if ok:
        load_bundle(doc)
    else:
        locs = [loc for loc, _ in problems_of(doc)]
        assert any(loc.startswith(str(path[0])) for loc in locs), locs


def test_every_problem_listed() -> None:
    doc = demo()
    doc["speed_zones"][0]["max_speed"] = 40
    doc["speed_zones"][1]["shape"] = [[9.18, 45.46], [9.19, 45.47], [9.19, 45.46], [9.18, 45.47]]
    doc["rent_settings"]["min_battery_to_rent"] = 5
    doc["virtual_parkings"][1]["id"] = 1
    doc["unknown_field"] = 1
    locs = [loc for loc, _ in problems_of(doc)]
    assert "speed_zones.0.max_speed" in locs
    assert "speed_zones.1.shape" in locs  # self-intersecting, found despite other problems
    assert "rent_settings.min_battery_to_rent" in locs
    assert "unknown_field" in locs


def test_geometry_and_duplicates() -> None:
    doc = demo()
    doc["virtual_parkings"][1]["id"] = 1
    doc["border"]["shape"][3] = [9.0, 91.0]
    locs = problems_of(doc)
    assert any(loc == "border.shape" for loc, _ in locs)
    doc["border"]["shape"][3] = doc["border"]["shape"][2]
    assert ("virtual_parkings.1.id", "duplicate id 1 (see 0)") in problems_of(doc)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null"])
def test_garbage_is_refused_not_crashing(tmp_path: Path, text: str) -> None:
    f = tmp_path / "b.json"
    f.write_text(text)
    with pytest.raises(BundleError) as exc:
        load_bundle(f)
    assert exc.value.problems


def test_toml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('version = "t1"\n[safety]\ndwell_s = 3\n')
    assert load_bundle(f).version == "t1"
    with pytest.raises(BundleError) as exc:
        load_bundle(tmp_path / "nope.json")
    assert "cannot read" in exc.value.problems[0].message


def test_holder_keeps_running_bundle_on_bad_swap() -> None:
    holder = BundleHolder(load_bundle(DEMO))
    bad = demo()
    bad["speed_zones"][0]["max_speed"] = 99
    with pytest.raises(BundleError):
        holder.load_and_swap(bad)
    assert holder.current.version == "demo-milano-2024.06.1"
    good = copy.deepcopy(demo())
    good["version"] = "v2"
    holder.load_and_swap(good)
    assert holder.current.version == "v2"
