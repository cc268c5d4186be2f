"""Real GBFS geofencing_zones.json files (tests/data/gbfs-feeds, sources in SOURCES.md).

Every file loads, with the named warnings expected of it, and the engine's answers agree
with a resolver written here from the specification's text at points inside each polygon,
in every overlap of two zones, and outside all zones, for every vehicle type the file names
(and none, and an unlisted one), at times inside and outside the zones' windows.

The resolver shares nothing with the engine: it reads the JSON itself, tests containment
by ray casting (a MultiPolygon covers the points inside any of its polygons, as GeoJSON
means), and applies GBFS 3.0 "Geofencing Rule Precedence": within a rules array the earlier
rule for the vehicle type wins; in overlapping polygons the earlier polygon's rules win
(inactive polygons are left out); a polygon's rules beat ``global_rules``, which apply
everywhere else; a rule without vehicle types applies to every type. An optional field a
rule leaves unset falls to the next applicable rule (the specification's first overlap
example: polygon B's ``maximum_speed_kph`` applies in ``ab`` although A comes first). GBFS
2.x has no global rules ("by default, no restrictions apply everywhere") and one
``ride_allowed`` for start and end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely
from typer.testing import CliRunner

from dockgate.api import create_app
from dockgate.gateway.cli.app import app as cli
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.rules import RuleBundle, explain, load_bundle
from tests.support.stores import open_test_store

FEEDS = Path(__file__).parent / "data" / "gbfs-feeds"
NOW = 1_750_000_000.0  # 2025-06-15
NESTED = "gbfs-nested-shells"
TYPE_KEY = "gbfs-type-key-other-version"
EXPECTED_WARNINGS: dict[str, set[str]] = {
    "otp-almere-3.0.json": {"gbfs-null-geometry"},
    "otp-tieroslo-2.3.json": set(),
    "lamassu-v2-2.1.json": {"gbfs-timestamp-out-of-range", TYPE_KEY},
    "lamassu-v3-3.0.json": {NESTED, TYPE_KEY},
    "mapper-2.3.json": {NESTED},
    "validator-2.1.json": {NESTED},
    "validator-2.2.json": {NESTED},
    "validator-2.3.json": {NESTED},
    "validator-3.0.json": {NESTED, TYPE_KEY, "gbfs-empty-window"},
    "schema-java-2.2.json": {"gbfs-timestamp-out-of-range", TYPE_KEY},
    "schema-java-3.0.json": {NESTED, TYPE_KEY, "gbfs-timestamp-other-version"},
    "schema-spec-example-2.3.json": {NESTED},
    "schema-spec-example-3.0.json": {NESTED},
    "schema-spec-example-3.1-RC.json": {"gbfs-release-candidate"},
    "schema-fixture-2.3.json": {TYPE_KEY},
    "schema-fixture-3.0-paris.json": {TYPE_KEY},
    "schema-fixture-3.1-RC3.json": {"gbfs-release-candidate"},
    "motis-2.3.json": set(),
}
FIELDS = (
    "ride_start_allowed",
    "ride_end_allowed",
    "ride_through_allowed",
    "maximum_speed_kph",
    "station_parking",
)
EDGE = 1e-7  # degrees (~1 cm): points nearer a boundary than this are not used
Ring = list[list[float]]


def test_every_real_file_is_carried_with_its_source() -> None:
    files = sorted(p.name for p in FEEDS.glob("*.json"))
    assert files == sorted(EXPECTED_WARNINGS)
    sources = (FEEDS / "SOURCES.md").read_text()
    for name in files:
        row = next(line for line in sources.splitlines() if f"`{name}`" in line)
        assert row.count("|") == 9 and "github.com/" in row, row


# --- the independent reading of a feed ---------------------------------------------------


@dataclass(frozen=True)
class SpecRule:
    types: frozenset[str] | None
    values: dict[str, Any]

    def applies(self, vehicle_type: str | None) -> bool:
        return self.types is None or vehicle_type in self.types


@dataclass(frozen=True)
class SpecZone:
    polygons: list[list[Ring]]
    start: float | None
    end: float | None
    rules: list[SpecRule]

    def active(self, t: float) -> bool:
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)


@dataclass(frozen=True)
class SpecFeed:
    v2: bool
    zones: list[SpecZone]
    global_rules: list[SpecRule]
    vehicle_types: set[str]


def spec_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


def spec_rule(raw: dict[str, Any], v2: bool) -> SpecRule:
    # Either version's spelling of the type key is read (the gateway warns of the other's).
    types = raw.get("vehicle_type_ids", raw.get("vehicle_type_id"))
    start = raw["ride_allowed"] if v2 else raw["ride_start_allowed"]
    end = raw["ride_allowed"] if v2 else raw["ride_end_allowed"]
    values = {
        "ride_start_allowed": start,
        "ride_end_allowed": end,
        "ride_through_allowed": raw["ride_through_allowed"],
        "maximum_speed_kph": raw.get("maximum_speed_kph"),
        "station_parking": raw.get("station_parking"),
    }
    return SpecRule(None if types is None else frozenset(types), values)


def read_spec_feed(doc: dict[str, Any]) -> SpecFeed:
    v2 = str(doc["version"]).startswith("2.")
    zones = []
    types: set[str] = set()
    for f in doc["data"]["geofencing_zones"]["features"]:
        rules = [spec_rule(r, v2) for r in f["properties"].get("rules") or []]
        for r in rules:
            types |= r.types or set()
        if not f.get("geometry"):
            continue  # a feature without geometry applies nowhere
        p = f["properties"]
        coords = f["geometry"]["coordinates"]
        zones.append(SpecZone(coords, spec_time(p.get("start")), spec_time(p.get("end")), rules))
    glob = [spec_rule(r, v2) for r in doc["data"].get("global_rules") or []] if not v2 else []
    for r in glob:
        types |= r.types or set()
    return SpecFeed(v2, zones, glob, types)


def in_ring(x: float, y: float, ring: Ring) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def in_zone(x: float, y: float, zone: SpecZone) -> bool:
    return any(
        in_ring(x, y, poly[0]) and not any(in_ring(x, y, hole) for hole in poly[1:])
        for poly in zone.polygons
    )


def spec_answer(
    feed: SpecFeed, inside: list[SpecZone], vehicle_type: str | None, t: float
) -> dict[str, Any]:
    """Each field from the first applicable rule that sets it: the zones containing the point
    in file order (active ones only), each zone's rules in order, then the global rules."""
    out: dict[str, Any] = dict.fromkeys(FIELDS)
    chain = [r for z in inside if z.active(t) for r in z.rules] + feed.global_rules
    for rule in chain:
        if rule.applies(vehicle_type):
            for k in FIELDS:
                if out[k] is None and rule.values[k] is not None:
                    out[k] = rule.values[k]
    return out


# --- where and when to ask -----------------------------------------------------------------


def sample_points(feed: SpecFeed) -> list[tuple[str, float, float]]:
    """(kind, lon, lat): a point inside each polygon, one in each overlap of two zones, one
    outside every zone; none within ``EDGE`` of a boundary."""
    shapes = [
        shapely.MultiPolygon([shapely.Polygon(p[0], p[1:]) for p in z.polygons]) for z in feed.zones
    ]
    points: list[tuple[str, shapely.Point]] = []
    for z in feed.zones:
        for p in z.polygons:
            points.append(("inside", shapely.Polygon(p[0], p[1:]).representative_point()))
    areas = [shapely.unary_union(shapely.get_parts(s)) for s in shapes]
    if areas:
        tree = shapely.STRtree(areas)
        for i, j in zip(*tree.query(areas, predicate="intersects"), strict=True):
            if i < j:
                common = shapely.intersection(areas[i], areas[j])
                if common.area > 0:
                    points.append(("overlap", common.representative_point()))
        *_, x1, y1 = shapely.unary_union(areas).bounds
        points.append(("outside", shapely.Point(x1 + 0.05, y1 + 0.05)))
    else:
        points.append(("outside", shapely.Point(10.0, 50.0)))
    rings = [shapely.LineString(r) for z in feed.zones for p in z.polygons for r in p]
    edges = shapely.STRtree(rings)
    return [
        (kind, pt.x, pt.y)
        for kind, pt in points
        if not len(edges.query(pt, predicate="dwithin", distance=EDGE))
    ]


def sample_times(feed: SpecFeed) -> list[float]:
    """Now, and a minute inside each end of every zone's window."""
    times = {NOW}
    for z in feed.zones:
        if z.start is not None:
            times.add(z.start + 60)
        if z.end is not None:
            times.add(z.end - 60)
    return sorted(times)


def engine_answers(
    bundle: RuleBundle, lon: float, lat: float, vt: str | None, t: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``explain`` says, and what the engine's plan (its cell grid) says, at one place."""
    said = explain(bundle, lat, lon, vt, t)
    plan = bundle.plan
    assert plan is not None
    x, y = plan.xy(lat, lon)
    hits, _ = plan.grid.lookup(x, y)
    rules = plan.zone_rules(plan.known_place(hits) or plan.place(hits), vt, False, t)
    moving = {
        "ride_end_allowed": rules.ride_end_allowed,
        "ride_through_allowed": rules.ride_through_allowed,
        "maximum_speed_kph": rules.limits.get("gbfs.maximum_speed_kph"),
    }
    return said, moving


@pytest.mark.parametrize("name", sorted(EXPECTED_WARNINGS))
def test_real_file_loads_with_its_warnings_and_follows_the_precedence(name: str) -> None:
    doc = json.loads((FEEDS / name).read_text())
    bundle = load_bundle(FEEDS / name)
    assert {str(w.code) for w in bundle.warnings} == EXPECTED_WARNINGS[name]
    feed = read_spec_feed(doc)
    assert bundle.gbfs is not None and len(bundle.gbfs.zones) == len(feed.zones)
    types = [None, "no-such-type", *sorted(feed.vehicle_types)]
    asked = in_a_zone = 0
    for kind, lon, lat in sample_points(feed):
        inside = [z for z in feed.zones if in_zone(lon, lat, z)]
        assert (kind == "outside") == (not inside), (kind, lon, lat)
        for t in sample_times(feed):
            for vt in types:
                want = spec_answer(feed, inside, vt, t)
                said, moving = engine_answers(bundle, lon, lat, vt, t)
                where = (name, kind, lon, lat, vt, t)
                for k in ("ride_end_allowed", "ride_through_allowed", "maximum_speed_kph"):
                    assert moving[k] == want[k], (*where, k, moving[k], want[k])
                if feed.v2:  # "by default, no restrictions apply everywhere"
                    for k in ("ride_start_allowed", "ride_end_allowed", "ride_through_allowed"):
                        want[k] = True if want[k] is None else want[k]
                got = {k: said[k] for k in FIELDS if k != "maximum_speed_kph"}
                got["maximum_speed_kph"] = said["max_speed_kph"]
                assert got == want, where
                asked += 1
                in_a_zone += any(z.active(t) for z in inside)
    assert asked > 0
    if any(z.active(t) for z in feed.zones for t in sample_times(feed)):
        assert in_a_zone > 0, "no sample point fell in an active zone"


# --- what each kind of file shows ----------------------------------------------------------


def test_nested_shells_read_as_the_specification_meant() -> None:
    """The 3.0 specification's example nests a second polygon inside the first; the
    specification later removed it as adding no restriction (gbfs PR #595). Read as the union
    of its polygons, the old example's zone is the new example's polygon exactly, and a point
    inside the nested polygon is inside the zone (not in a hole)."""
    old = load_bundle(FEEDS / "schema-spec-example-3.0.json")
    new = load_bundle(FEEDS / "schema-spec-example-3.1-RC.json")
    assert old.gbfs is not None and new.gbfs is not None
    assert old.gbfs.zones[0].shape.equals(new.gbfs.zones[0].shape)
    (warning,) = [w for w in old.warnings if str(w.code) == NESTED]
    assert warning.locations == ("data.geofencing_zones.features.0.geometry",)
    inner = old.gbfs.zones[0].coordinates[1][0]
    lon, lat = shapely.Polygon(inner).representative_point().coords[0]
    during = spec_time("2024-01-01T00:00:00Z")
    assert during is not None
    got = explain(old, lat, lon, "moped1", during)
    assert got["zones"] == ["NE 24th/NE Knott"] and got["max_speed_kph"] == 10


def test_null_geometries_are_skipped_not_the_feed() -> None:
    bundle = load_bundle(FEEDS / "otp-almere-3.0.json")
    assert bundle.gbfs is not None and len(bundle.gbfs.zones) == 14
    (warning,) = bundle.warnings
    assert warning.locations == tuple(
        f"data.geofencing_zones.features.{i}.geometry" for i in (6, 7)
    )
    # The zones after the skipped ones keep their file positions.
    assert [z.feature for z in bundle.gbfs.zones][5:8] == [5, 8, 9]


def test_type_key_of_the_other_version_is_read_not_ignored() -> None:
    """Paris (3.0) spells ``vehicle_type_id`` throughout. Its first zone has a rule for
    e-bikes only; the global rules forbid everything. Read as "all types" (as before), an
    e-scooter could start a ride there."""
    bundle = load_bundle(FEEDS / "schema-fixture-3.0-paris.json")
    doc = json.loads((FEEDS / "schema-fixture-3.0-paris.json").read_text())
    rules = [
        r for f in doc["data"]["geofencing_zones"]["features"] for r in f["properties"]["rules"]
    ]
    rules += doc["data"]["global_rules"]
    (warning,) = bundle.warnings
    assert len(warning.locations) == len(rules) > 270
    assert all("vehicle_type_id" in r and "vehicle_type_ids" not in r for r in rules)
    first = doc["data"]["geofencing_zones"]["features"][0]
    assert first["properties"]["rules"][0]["vehicle_type_id"] == ["ebicycle_paris"]
    feed = read_spec_feed(doc)
    lon, lat = next(
        (x, y)
        for kind, x, y in sample_points(feed)
        if kind == "inside" and [i for i, z in enumerate(feed.zones) if in_zone(x, y, z)] == [0]
    )
    assert explain(bundle, lat, lon, "ebicycle_paris", NOW)["ride_start_allowed"] is True
    assert explain(bundle, lat, lon, "escooter_paris", NOW)["ride_start_allowed"] is False


def test_old_timestamps_are_read_with_a_warning() -> None:
    bundle = load_bundle(FEEDS / "lamassu-v2-2.1.json")
    assert bundle.gbfs is not None and bundle.gbfs.last_updated == 1434054678
    codes = {str(w.code): w.locations for w in bundle.warnings}
    assert codes["gbfs-timestamp-out-of-range"] == ("last_updated",)


def test_cli_check_prints_every_warning_and_succeeds() -> None:
    runner = CliRunner()
    path = str(FEEDS / "validator-3.0.json")
    r = runner.invoke(cli, ["rules", "check", path])
    assert r.exit_code == 0, r.output
    for code in EXPECTED_WARNINGS["validator-3.0.json"]:
        assert code in r.output
    assert "data.geofencing_zones.features.0.geometry" in r.output
    r = runner.invoke(cli, ["rules", "check", path, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["ok"] is True
    assert {w["code"] for w in summary["warnings"]} == EXPECTED_WARNINGS["validator-3.0.json"]
    paris = runner.invoke(cli, ["rules", "check", str(FEEDS / "schema-fixture-3.0-paris.json")])
    assert paris.exit_code == 0 and "... and 269 more" in paris.output


async def test_bundle_push_answer_lists_the_warnings(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "push.db")
    token = "s" * 16
    app = create_app(store, Outbox(store.db), tokens={token: ["sync"]})
    body = json.loads((FEEDS / "otp-almere-3.0.json").read_text())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        r = await client.post(
            "/api/v1/config/bundles",
            json={"version": 1, "kind": "gbfs", "bundle": body},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200, r.text
    (warning,) = r.json()["data"]["warnings"]
    assert warning["code"] == "gbfs-null-geometry"
    assert warning["locations"] == [
        "data.geofencing_zones.features.6.geometry",
        "data.geofencing_zones.features.7.geometry",
    ]
