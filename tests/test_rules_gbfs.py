"""GBFS 2.3 and 3.0 import and the GBFS 3.0 rule precedence."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gateway.rules import BundleError, explain, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path("/work/shared/data/gbfs-json-schema")
T = 1_750_000_000.0  # 2025-06-15


def sq(x0: float, y0: float, x1: float, y1: float) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "MultiPolygon", "coordinates": [[ring]]}


def rule(start: bool, end: bool, through: bool, speed: int | None = None, types=None) -> dict:
    r: dict = {
        "ride_start_allowed": start,
        "ride_end_allowed": end,
        "ride_through_allowed": through,
    }
    if speed is not None:
        r["maximum_speed_kph"] = speed
    if types is not None:
        r["vehicle_type_ids"] = types
    return r


def doc3(features: list[dict], global_rules: list[dict]) -> dict:
    return {
        "last_updated": "2025-06-01T00:00:00Z",
        "ttl": 0,
        "version": "3.0",
        "data": {
            "geofencing_zones": {"type": "FeatureCollection", "features": features},
            "global_rules": global_rules,
        },
    }


def feature(name: str, geom: dict, rules: list[dict], **props) -> dict:
    return {
        "type": "Feature",
        "geometry": geom,
        "properties": {"name": [{"text": name, "language": "en"}], "rules": rules, **props},
    }


def at(doc: dict, lon: float, lat: float, vt: str | None = None, when: float = T) -> dict:
    return explain(load_bundle(doc), lat, lon, vt, when)


@pytest.mark.parametrize(("version", "name"), [("v3.0", "gbfs-3.0"), ("v2.3", "gbfs-2.3")])
def test_example_files_match_official_schema(version: str, name: str) -> None:
    schema = json.loads((SCHEMAS / version / "geofencing_zones.json").read_text())
    doc = json.loads((ROOT / "config" / "rules" / f"{name}-geofencing_zones.json").read_text())
    jsonschema.validate(doc, schema)
    assert load_bundle(doc).source == name


def test_example1_earlier_rule_in_a_list_wins_per_vehicle_type() -> None:
    # One polygon, two rules: scooters may not ride through; everything else is slowed.
    doc = doc3(
        [
            feature(
                "A",
                sq(0, 0, 1, 1),
                [rule(False, False, False, types=["scooter"]), rule(True, True, True, 10)],
            )
        ],
        [rule(True, True, True)],
    )
    s = at(doc, 0.5, 0.5, "scooter")
    assert (s["ride_through_allowed"], s["ride_start_allowed"]) == (False, False)
    # The unset maximum_speed_kph of the scooter rule falls through to the next rule.
    assert s["max_speed_kph"] == 10
    b = at(doc, 0.5, 0.5, "bike")
    assert (b["ride_through_allowed"], b["max_speed_kph"]) == (True, 10)
    assert b["zones"] == ["A"]


def test_example2_earlier_polygon_wins_where_polygons_overlap() -> None:
    doc = doc3(
        [
            feature("inner", sq(0.4, 0.4, 0.6, 0.6), [rule(False, False, True, 6)]),
            feature("outer", sq(0, 0, 1, 1), [rule(True, True, True, 20)]),
        ],
        [rule(False, False, False)],
    )
    inner = at(doc, 0.5, 0.5)
    assert (inner["ride_end_allowed"], inner["max_speed_kph"]) == (False, 6)
    assert inner["zones"] == ["inner", "outer"]
    outer = at(doc, 0.2, 0.2)
    assert (outer["ride_end_allowed"], outer["max_speed_kph"]) == (True, 20)
    # The file order, not the size, decides: swap the polygons and the outer one wins.
    swapped = doc3(
        list(reversed(doc["data"]["geofencing_zones"]["features"])), [rule(False, False, False)]
    )
    assert at(swapped, 0.5, 0.5)["max_speed_kph"] == 20


def test_example3_polygon_beats_global_rules_and_types_fall_through() -> None:
    # Global: nobody rides anywhere; in the zone bikes and scooters may, scooters at 15.
    doc = doc3(
        [
            feature(
                "zone",
                sq(0, 0, 1, 1),
                [rule(True, True, True, 15, ["scooter"]), rule(True, True, True, types=["bike"])],
            )
        ],
        [rule(False, False, False, types=["scooter", "bike"]), rule(True, True, True, 5)],
    )
    rows = [
        # (lon, lat, vehicle type, start, end, through, max speed)
        (0.5, 0.5, "scooter", True, True, True, 15),
        (0.5, 0.5, "bike", True, True, True, 5),  # speed unset in the zone: global 5 applies
        (0.5, 0.5, "moped", True, True, True, 5),  # no zone rule: first applicable global
        (2.0, 2.0, "scooter", False, False, False, 5),
        (2.0, 2.0, "moped", True, True, True, 5),
    ]
    for lon, lat, vt, start, end, through, speed in rows:
        r = at(doc, lon, lat, vt)
        got = (r["ride_start_allowed"], r["ride_end_allowed"], r["ride_through_allowed"])
        assert got == (start, end, through), (lon, lat, vt)
        assert r["max_speed_kph"] == speed, (lon, lat, vt)


def test_zones_outside_their_time_window_are_ignored() -> None:
    doc = doc3(
        [
            feature(
                "event",
                sq(0, 0, 1, 1),
                [rule(False, False, False)],
                start="2025-06-15T00:00:00Z",
                end="2025-06-16T00:00:00Z",
            ),
            feature("base", sq(0, 0, 1, 1), [rule(True, True, True, 20)]),
        ],
        [rule(True, True, True)],
    )
    during = at(doc, 0.5, 0.5, when=1_749_990_000 + 20_000)
    assert during["ride_through_allowed"] is False and during["zones"][0] == "event"
    after = at(doc, 0.5, 0.5, when=1_750_100_000)
    assert after["ride_through_allowed"] is True and after["zones"] == ["base"]


def test_v23_ride_allowed_and_default_no_restriction() -> None:
    doc = {
        "last_updated": 1_717_000_000,
        "ttl": 0,
        "version": "2.3",
        "data": {
            "geofencing_zones": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": sq(0, 0, 1, 1),
                        "properties": {
                            "name": "no parking",
                            "rules": [
                                {
                                    "vehicle_type_id": ["scooter"],
                                    "ride_allowed": False,
                                    "ride_through_allowed": True,
                                    "maximum_speed_kph": 8,
                                }
                            ],
                        },
                    }
                ],
            }
        },
    }
    s = at(doc, 0.5, 0.5, "scooter")
    assert (s["ride_start_allowed"], s["ride_end_allowed"], s["max_speed_kph"]) == (False, False, 8)
    outside = at(doc, 3, 3, "scooter")
    assert (outside["ride_end_allowed"], outside["ride_through_allowed"]) == (True, True)


def test_bad_gbfs_lists_every_problem() -> None:
    doc = doc3([feature("A", sq(0, 0, 1, 1), [{"ride_start_allowed": True}])], [])
    doc["ttl"] = -1
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    locs = [p.location for p in exc.value.problems]
    assert "ttl" in locs
    assert any("rules.0.ride_end_allowed" in loc for loc in locs)
    with pytest.raises(BundleError) as exc:
        load_bundle({**doc, "version": "9.9"})
    assert exc.value.problems[0].location == "version"
