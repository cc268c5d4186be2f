"""GBFS 2.3 and 3.0 import and the GBFS 3.0 rule precedence."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dockgate.gateway.rules import BundleError, explain, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).parent / "data" / "gbfs-json-schema"
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


# The three "Polygon Overlap Examples" of the GBFS 3.0 specification (gbfs.md, section
# geofencing_zones.json, "Geofencing Rule Precedence"). Two polygons A and B overlap; area
# `a` is A only, `ab` both, `b` B only, `g` neither (global rules). The spec gives "only a
# minimal set of fields ... for clarity": its rules omit the required ride_start_allowed and
# ride_end_allowed, which are filled in here as true and not asserted on. The spec text of
# the 3.0 release candidate names the field `vehicle_type_id`; 3.0 names it
# `vehicle_type_ids` (see the official schema), which is used here.
POLYGON_A = sq(0, 0, 2, 2)
POLYGON_B = sq(1, 0, 3, 2)
AREAS = {"a": (0.5, 1.0), "ab": (1.5, 1.0), "b": (2.5, 1.0), "g": (5.0, 5.0)}


def spec_rule(types: list[str] | None, through: bool, speed: int | None = None) -> dict:
    r = rule(True, True, through, speed, types)
    return r


def spec_doc(rules_a: list[dict], rules_b: list[dict], global_rules: list[dict]) -> dict:
    return doc3([feature("A", POLYGON_A, rules_a), feature("B", POLYGON_B, rules_b)], global_rules)


def check_rows(doc: dict, rows: list[tuple]) -> None:
    bundle = load_bundle(doc)
    for row in rows:
        area, vt, through = row[:3]
        lon, lat = AREAS[area]
        got = explain(bundle, lat, lon, vt, T)
        assert got["ride_through_allowed"] is through, row
        if len(row) > 3:
            assert got["max_speed_kph"] == row[3], row


def test_spec_example_same_vehicle_types() -> None:
    """Partially Overlapping Polygons with Same Vehicle Types.

    ride_through_allowed: A beats B in `ab` (earlier in the file). maximum_speed_kph: only B
    sets it, so B's applies in `ab` despite A; in the rest of A it falls to the global rule.
    """
    doc = spec_doc(
        [spec_rule(["bike"], True)],
        [spec_rule(["bike"], False, 20)],
        [spec_rule(["bike"], False, 10)],
    )
    check_rows(
        doc,
        [
            # area, vehicle type, ride_through_allowed, maximum_speed_kph
            ("a", "bike", True, 10),
            ("ab", "bike", True, 20),
            ("b", "bike", False, 20),
            ("g", "bike", False, 10),
        ],
    )


def test_spec_example_different_vehicle_types() -> None:
    """Partially Overlapping Polygons with Different Vehicle Types.

    A comes first but says nothing of scooters, so it is not considered for scooters in `ab`.
    """
    doc = spec_doc(
        [spec_rule(["bike"], True)],
        [spec_rule(["scooter"], False)],
        [spec_rule(["bike"], False), spec_rule(["scooter"], True)],
    )
    check_rows(
        doc,
        [
            ("a", "bike", True),
            ("ab", "bike", True),
            ("b", "bike", False),
            ("g", "bike", False),
            ("a", "scooter", True),
            ("ab", "scooter", False),
            ("b", "scooter", False),
            ("g", "scooter", True),
        ],
    )


def test_spec_example_some_overlapping_vehicle_types() -> None:
    """Partially Overlapping Polygons with Some Overlapping Vehicle Types.

    For scooters A takes precedence over B in `ab` because it appears earlier in the file.
    """
    doc = spec_doc(
        [spec_rule(["bike", "scooter"], True)],
        [spec_rule(["scooter"], False)],
        [spec_rule(None, False)],
    )
    check_rows(
        doc,
        [
            ("a", "bike", True),
            ("ab", "bike", True),
            ("b", "bike", False),
            ("g", "bike", False),
            # The spec's row reads "a | scooter | fales". That is a typo twice over: "fales"
            # is no JSON boolean, and the rules give true: in area a only polygon A applies,
            # and A's only rule names scooter with ride_through_allowed true, which takes
            # precedence over the global false (the spec's own `ab` row says A wins there).
            ("a", "scooter", True),
            ("ab", "scooter", True),
            ("b", "scooter", False),
            ("g", "scooter", False),
        ],
    )


def test_polygon_order_decides_not_size() -> None:
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
    swapped = doc3(
        list(reversed(doc["data"]["geofencing_zones"]["features"])), [rule(False, False, False)]
    )
    assert at(swapped, 0.5, 0.5)["max_speed_kph"] == 20


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
    # The window is [start, end): active from its start, no longer at its end.
    start, end = 1_749_945_600, 1_750_032_000  # 2025-06-15T00:00Z, 2025-06-16T00:00Z
    assert at(doc, 0.5, 0.5, when=start)["zones"][0] == "event"
    assert at(doc, 0.5, 0.5, when=start - 1)["zones"] == ["base"]
    assert at(doc, 0.5, 0.5, when=end - 1)["zones"][0] == "event"
    assert at(doc, 0.5, 0.5, when=end)["zones"] == ["base"]


def test_open_ended_windows_and_offsets() -> None:
    # Only a start (or only an end) bounds one side; an RFC 3339 offset is honoured.
    doc = doc3(
        [
            feature(
                "from",
                sq(0, 0, 1, 1),
                [rule(False, False, False)],
                start="2025-06-15T02:00:00+02:00",
            ),
            feature(
                "until", sq(2, 0, 3, 1), [rule(False, False, False)], end="2025-06-15T00:00:00Z"
            ),
        ],
        [rule(True, True, True)],
    )
    midnight = 1_749_945_600
    assert at(doc, 0.5, 0.5, when=midnight)["ride_through_allowed"] is False
    assert at(doc, 0.5, 0.5, when=midnight - 1)["ride_through_allowed"] is True
    assert at(doc, 2.5, 0.5, when=midnight - 1)["ride_through_allowed"] is False
    assert at(doc, 2.5, 0.5, when=midnight)["ride_through_allowed"] is True


def test_times_without_offset_are_refused() -> None:
    # GBFS 3.0 timestamps are RFC 3339; one without an offset would be read in the
    # gateway's local time zone, so it is refused rather than guessed.
    doc = doc3(
        [feature("A", sq(0, 0, 1, 1), [rule(True, True, True)], start="2025-06-15T00:00:00")],
        [rule(True, True, True)],
    )
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    assert any(p.location.endswith("properties.start") for p in exc.value.problems)


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


# Tolerant reading: what a careful consumer can read is accepted with a named warning.


def codes(bundle) -> dict[str, tuple[str, ...]]:
    return {str(w.code): w.locations for w in bundle.warnings}


def multi(*rings: list[list[float]]) -> dict:
    return {"type": "MultiPolygon", "coordinates": [[r] for r in rings]}


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return sq(x0, y0, x1, y1)["coordinates"][0][0]


GEOMETRY0 = "data.geofencing_zones.features.0.geometry"


def test_nested_shells_are_one_zone_their_union() -> None:
    # The GBFS 3.0 specification's example shape: a second polygon inside the first.
    doc = doc3(
        [feature("A", multi(ring(0, 0, 4, 4), ring(1, 1, 2, 2)), [rule(False, False, True, 9)])],
        [rule(True, True, True)],
    )
    bundle = load_bundle(doc)
    assert codes(bundle) == {"gbfs-nested-shells": (GEOMETRY0,)}
    assert bundle.gbfs is not None and bundle.gbfs.zones[0].shape.area == 16
    for lon, lat in ((1.5, 1.5), (3, 3)):  # in the nested polygon (no hole), beside it
        got = explain(bundle, lat, lon, None, T)
        assert (got["zones"], got["max_speed_kph"]) == (["A"], 9)
    assert at(doc, 5, 5)["zones"] == []


def test_overlapping_polygons_of_one_zone_are_their_union() -> None:
    doc = doc3(
        [feature("A", multi(ring(0, 0, 2, 2), ring(1, 0, 3, 2)), [rule(False, False, True, 9)])],
        [rule(True, True, True)],
    )
    bundle = load_bundle(doc)
    assert codes(bundle) == {"gbfs-overlapping-polygons": (GEOMETRY0,)}
    for lon in (0.5, 1.5, 2.5):  # A's first polygon only, both, the second only
        assert explain(bundle, 1, lon, None, T)["max_speed_kph"] == 9


def test_a_polygon_that_is_invalid_on_its_own_is_refused() -> None:
    # A ring crossing itself has no clear inside: no warning can make it readable.
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    doc = doc3(
        [feature("A", multi(ring(5, 5, 6, 6), bowtie), [rule(True, True, True)])],
        [rule(True, True, True)],
    )
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    (problem,) = exc.value.problems
    assert problem.location == f"{GEOMETRY0}.coordinates.1"
    assert "Self-intersection" in problem.message


def test_features_without_geometry_are_skipped_with_a_warning() -> None:
    features = [
        feature("nothing", sq(0, 0, 1, 1), [rule(False, False, False)]),
        feature("first", sq(0, 0, 1, 1), [rule(True, True, True, 15)]),
        feature("second", sq(0, 0, 1, 1), [rule(True, True, True, 25)]),
    ]
    features[0]["geometry"] = None
    empty = feature(
        "empty", {"type": "MultiPolygon", "coordinates": []}, [rule(False, False, False)]
    )
    doc = doc3([features[0], empty, *features[1:]], [rule(True, True, False)])
    bundle = load_bundle(doc)
    assert codes(bundle) == {
        "gbfs-null-geometry": (GEOMETRY0,),
        "gbfs-empty-geometry": ("data.geofencing_zones.features.1.geometry",),
    }
    got = explain(bundle, 0.5, 0.5, None, T)
    assert (got["zones"], got["max_speed_kph"], got["ride_through_allowed"]) == (
        ["first", "second"],
        15,
        True,
    )


def test_timestamps_out_of_range_or_in_the_other_versions_form_are_read() -> None:
    v2 = {
        "last_updated": 1_434_054_678,  # before the 2.x schemas' minimum, 1450155600
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
                            "start": "2025-06-15T00:00:00Z",  # 3.0's form in a 2.x feed
                            "rules": [{"ride_allowed": False, "ride_through_allowed": True}],
                        },
                    }
                ],
            }
        },
    }
    bundle = load_bundle(v2)
    assert codes(bundle) == {
        "gbfs-timestamp-out-of-range": ("last_updated",),
        "gbfs-timestamp-other-version": ("data.geofencing_zones.features.0.properties.start",),
    }
    assert bundle.gbfs is not None and bundle.gbfs.zones[0].start == 1_749_945_600
    v3 = doc3(
        [feature("A", sq(0, 0, 1, 1), [rule(False, False, False)], start=1_749_945_600)],
        [rule(True, True, True)],
    )
    before, after = at(v3, 0.5, 0.5, when=1_749_945_599), at(v3, 0.5, 0.5, when=1_749_945_600)
    assert (before["ride_through_allowed"], after["ride_through_allowed"]) == (True, False)
    assert list(codes(load_bundle(v3))) == ["gbfs-timestamp-other-version"]


@pytest.mark.parametrize("value", ["yesterday", float("nan"), True])
def test_unreadable_timestamps_are_refused(value: object) -> None:
    doc = doc3([feature("A", sq(0, 0, 1, 1), [rule(True, True, True)], end=value)], [])
    with pytest.raises(BundleError) as exc:
        load_bundle(doc)
    locs = [p.location for p in exc.value.problems]
    end = "data.geofencing_zones.features.0.properties.end"
    assert locs and all(loc.startswith(end) for loc in locs), locs


def test_a_window_that_never_opens_is_warned_of() -> None:
    doc = doc3(
        [
            feature(
                "never",
                sq(0, 0, 1, 1),
                [rule(False, False, False)],
                start="2025-06-15T00:00:00Z",
                end="2025-06-15T00:00:00Z",
            )
        ],
        [rule(True, True, True)],
    )
    assert codes(load_bundle(doc)) == {
        "gbfs-empty-window": ("data.geofencing_zones.features.0.properties",)
    }
    assert at(doc, 0.5, 0.5, when=1_749_945_600)["ride_through_allowed"] is True


def test_the_other_versions_type_key_is_read_with_a_warning() -> None:
    r3 = rule(False, False, False, 5)
    r3["vehicle_type_id"] = ["scooter"]  # 2.x's spelling in a 3.0 feed
    doc = doc3([feature("A", sq(0, 0, 1, 1), [r3])], [rule(True, True, True)])
    bundle = load_bundle(doc)
    loc = "data.geofencing_zones.features.0.properties.rules.0.vehicle_type_id"
    assert codes(bundle) == {"gbfs-type-key-other-version": (loc,)}
    assert explain(bundle, 0.5, 0.5, "scooter", T)["max_speed_kph"] == 5
    assert explain(bundle, 0.5, 0.5, "bike", T)["max_speed_kph"] is None  # not "all types"
    same = dict(r3, vehicle_type_ids=["scooter"])  # both keys, saying the same
    assert list(codes(load_bundle(doc3([feature("A", sq(0, 0, 1, 1), [same])], [])))) == [
        "gbfs-type-key-other-version"
    ]
    differ = dict(r3, vehicle_type_ids=["bike"])  # both keys, differing: which was meant?
    with pytest.raises(BundleError) as exc:
        load_bundle(doc3([feature("A", sq(0, 0, 1, 1), [differ])], []))
    assert exc.value.problems[0].location == loc.removesuffix(".vehicle_type_id")


def test_a_3_0_type_key_in_a_2_x_feed_is_read_with_a_warning() -> None:
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
                            "rules": [
                                {
                                    "vehicle_type_ids": ["scooter"],
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
    assert list(codes(load_bundle(doc))) == ["gbfs-type-key-other-version"]
    assert at(doc, 0.5, 0.5, "scooter")["max_speed_kph"] == 8
    assert at(doc, 0.5, 0.5, "bike")["max_speed_kph"] is None


def test_unknown_fields_are_named_and_ignored() -> None:
    r = dict(rule(True, True, True), colour="red")
    f = feature("A", sq(0, 0, 1, 1), [r])
    f["id"] = "zone-a"  # GeoJSON's own members are known
    f["geometry"]["bbox"] = [0, 0, 1, 1]
    doc = doc3([f], [rule(True, True, True)])
    doc["operator"] = "x"
    doc["data"]["geofencing_zones"]["features"][0]["properties"]["note"] = "n"
    bundle = load_bundle(doc)
    assert {str(w.code) for w in bundle.warnings} == {"gbfs-unknown-field"}
    # One warning per message (per unknown name), each with every place it occurs.
    found = {w.message: w.locations for w in bundle.warnings}
    assert found == {
        "'operator' is no GBFS 3.0 field: ignored": ("operator",),
        "'note' is no GBFS 3.0 field: ignored": (
            "data.geofencing_zones.features.0.properties.note",
        ),
        "'colour' is no GBFS 3.0 field: ignored": (
            "data.geofencing_zones.features.0.properties.rules.0.colour",
        ),
    }


def test_a_3_1_release_candidate_is_read_as_3_0() -> None:
    doc = doc3(
        [feature("A", sq(0, 0, 1, 1), [rule(False, False, False)])], [rule(True, True, True)]
    )
    doc["version"] = "3.1-RC3"
    bundle = load_bundle(doc)
    assert codes(bundle) == {"gbfs-release-candidate": ("version",)}
    assert explain(bundle, 0.5, 0.5, None, T)["ride_through_allowed"] is False
    with pytest.raises(BundleError):
        load_bundle({**doc, "version": "3.2"})


def test_embedded_gbfs_warns_under_its_key_and_reports_problems_with_the_rest() -> None:
    gbfs = doc3(
        [feature("A", multi(ring(0, 0, 4, 4), ring(1, 1, 2, 2)), [rule(True, True, True)])],
        [rule(True, True, True)],
    )
    bundle = load_bundle({"version": "v1", "gbfs": gbfs})
    assert codes(bundle) == {"gbfs-nested-shells": (f"gbfs.{GEOMETRY0}",)}
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    gbfs["data"]["geofencing_zones"]["features"][0]["geometry"] = multi(bowtie)
    with pytest.raises(BundleError) as exc:
        load_bundle({"version": "v1", "timezone": "Nowhere/Atlantis", "gbfs": gbfs})
    locs = [p.location for p in exc.value.problems]
    assert f"gbfs.{GEOMETRY0}.coordinates.0" in locs and "timezone" in locs


def test_rings_and_positions_that_cannot_be_read_are_refused_where_they_are() -> None:
    short = [[0, 0], [1, 0], [0, 0]]
    flat = [0, 0, 1, 0, 1, 1, 0, 0]
    off_earth = ring(179.5, 0, 180.5, 1)
    features = [
        feature("short", multi(short), [rule(True, True, True)]),
        feature(
            "flat", {"type": "MultiPolygon", "coordinates": [[flat]]}, [rule(True, True, True)]
        ),
        feature("off earth", multi(off_earth), [rule(True, True, True)]),
        feature("words", multi([["a", "b"]] * 4), [rule(True, True, True)]),
    ]
    with pytest.raises(BundleError) as exc:
        load_bundle(doc3(features, [rule(True, True, True)]))
    found = {p.location: p.message for p in exc.value.problems}
    zones = "data.geofencing_zones.features"
    assert found == {
        f"{zones}.0.geometry.coordinates.0.0": "a ring needs at least 4 positions",
        f"{zones}.1.geometry.coordinates.0.0": "a position needs lon and lat",
        f"{zones}.2.geometry": "position 1 (180.5, 0.0) is not lon/lat degrees",
        f"{zones}.3.geometry.coordinates.0.0": (
            "a ring is a list of positions, each a list of numbers"
        ),
    }


def test_a_third_value_in_a_position_is_an_altitude_and_dropped() -> None:
    with_altitude = [[x, y, 120.0] for x, y in ring(0, 0, 1, 1)]
    doc = doc3([feature("A", multi(with_altitude), [rule(False, False, True, 7)])], [])
    assert at(doc, 0.5, 0.5)["max_speed_kph"] == 7
