"""Virtual parking capacity: a trip may not end in a full parking, nor outside one where the
bundle requires a parking; the engine, ``check_end``, ``explain`` and the CLI agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dockgate.gateway.cli.app import app
from dockgate.gateway.rules import (
    BundleError,
    NotificationKind,
    RulesEngine,
    Trip,
    VehicleState,
    explain,
    load_bundle,
)

DEMO = Path(__file__).resolve().parents[1] / "config" / "rules" / "demo-milano.json"
NOW = 1_717_236_000.0
LAT0, LON0 = 45.4642, 9.19
KY = 111_195.0
KX = KY * math.cos(math.radians(LAT0))
CORDUSIO = (-350.0, 250.0)  # parking 1: x -380..-320, y 230..270 (capacity 12 in the demo)
STREET = (2000.0, -1500.0)  # inside the network, in no parking


def doc(capacity: int = 12, required: bool = False) -> dict:
    d = json.loads(DEMO.read_text())
    d["virtual_parkings"][0]["capacity"] = capacity
    d["parking_required"] = required
    return d


def at(x: float, y: float, vid: str = "v1", **kw) -> VehicleState:
    base = dict(
        vehicle_id=vid,
        lat=LAT0 + y / KY,
        lon=LON0 + x / KX,
        fix_time=NOW,
        accuracy_m=5.0,
        speed_kph=0.0,
        battery=80,
        locked=False,
        trip=Trip("t-" + vid, NOW - 60),
    )
    base.update(kw)
    return VehicleState(**base)


def parked(x: float, y: float, vid: str) -> VehicleState:
    return at(x, y, vid, locked=True, trip=None)


def engine(d: dict, occupancy=None) -> RulesEngine:
    return RulesEngine(load_bundle(d), clock=lambda: NOW, parking_occupancy=occupancy)


def notes(decisions) -> list[NotificationKind]:
    return [n.kind for n in decisions.notifications]


def test_capacity_zero_refuses_whatever_the_occupancy() -> None:
    for occupancy in (None, lambda pid: 0, lambda pid: None):
        e = engine(doc(capacity=0), occupancy)
        d = e.evaluate(at(*CORDUSIO))
        assert d.ride_end_allowed is False and d.ride_end_reasons == ("parking-full",)
        assert notes(d) == [NotificationKind.PARKING_FULL]
        n = d.notifications[0]
        assert n.to_rider and n.reason == "virtual_parkings.capacity"
        assert n.inputs["parkings"][0]["capacity"] == 0
        assert e.check_end(at(*CORDUSIO)) == (False, ["parking-full"])


def test_full_parking_refuses_and_tells_the_rider_once() -> None:
    e = engine(doc(capacity=12), lambda pid: {1: 12}.get(pid))
    first = e.evaluate(at(*CORDUSIO))
    assert first.ride_end_allowed is False and first.ride_end_reasons == ("parking-full",)
    assert notes(first) == [NotificationKind.PARKING_FULL]
    q = first.notifications[0].inputs["parkings"]
    assert q == [{"id": 1, "capacity": 12, "occupancy": 12, "source": "provider"}]
    again = e.evaluate(at(CORDUSIO[0] + 5, CORDUSIO[1]))
    assert again.ride_end_allowed is False and notes(again) == []
    assert e.check_end(at(*CORDUSIO)) == (False, ["parking-full"])
    # Ending elsewhere (not required here) is allowed, and a later refusal notifies again.
    street = e.evaluate(at(*STREET))
    assert street.ride_end_allowed is None and street.ride_end_reasons == ()
    assert e.check_end(at(*STREET)) == (True, [])
    assert notes(e.evaluate(at(*CORDUSIO))) == [NotificationKind.PARKING_FULL]


def test_one_free_place_allows_the_end() -> None:
    e = engine(doc(capacity=12), lambda pid: 11)
    d = e.evaluate(at(*CORDUSIO))
    assert d.ride_end_allowed is True and d.ride_end_reasons == () and notes(d) == []
    assert e.check_end(at(*CORDUSIO)) == (True, [])


def test_unknown_occupancy_falls_back_to_the_vehicles_seen_parked() -> None:
    e = engine(doc(capacity=2), lambda pid: None)
    assert e.evaluate(at(*CORDUSIO)).ride_end_allowed is True  # nothing seen: room
    assert e.occupancy(1) == (0, "observed")
    e.evaluate(parked(-340, 240, "p1"))
    e.evaluate(parked(-360, 260, "p2"))
    e.evaluate(parked(*STREET, "p3"))  # parked, but not in the parking
    assert e.occupancy(1) == (2, "observed")
    d = e.evaluate(at(*CORDUSIO))
    assert d.ride_end_allowed is False and d.ride_end_reasons == ("parking-full",)
    assert d.notifications[0].inputs["parkings"][0]["source"] == "observed"
    # p1 is rented and leaves: a place frees up.
    e.evaluate(at(-340, 240, "p1", speed_kph=12.0))
    assert e.occupancy(1) == (1, "observed")
    assert e.evaluate(at(*CORDUSIO)).ride_end_allowed is True


def test_no_provider_counts_what_the_engine_saw() -> None:
    e = engine(doc(capacity=1))
    e.evaluate(parked(-340, 240, "p1"))
    assert e.occupancy(1) == (1, "observed")
    assert e.check_end(at(*CORDUSIO)) == (False, ["parking-full"])
    e.evaluate(parked(*STREET, "p1"))  # moved away (by the operator) and parked elsewhere
    assert e.occupancy(1) == (0, "observed")
    assert e.check_end(at(*CORDUSIO)) == (True, [])


def test_a_failing_provider_is_an_unknown_count() -> None:
    def broken(pid: int) -> int:
        raise RuntimeError("backend down")

    e = engine(doc(capacity=12), broken)
    d = e.evaluate(at(*CORDUSIO))
    assert d.ride_end_allowed is True
    assert e.occupancy(1) == (0, "provider-error")


def test_a_provider_answer_wins_over_what_was_seen() -> None:
    e = engine(doc(capacity=1), lambda pid: 0)
    e.evaluate(parked(-340, 240, "p1"))
    assert e.occupancy(1) == (0, "provider")
    assert e.evaluate(at(*CORDUSIO)).ride_end_allowed is True


def test_parking_required_outside_any_parking() -> None:
    e = engine(doc(required=True))
    d = e.evaluate(at(*STREET))
    assert d.ride_end_allowed is False and d.ride_end_reasons == ("outside-parking",)
    assert notes(d) == [NotificationKind.OUTSIDE_PARKING]
    assert d.notifications[0].reason == "parking_required"
    assert e.check_end(at(*STREET)) == (False, ["outside-parking"])
    inside = e.evaluate(at(*CORDUSIO))
    assert inside.ride_end_allowed is True and notes(inside) == []
    # 8 m outside the parking with a 10 m fix: GPS error must not trap the rider.
    near = at(CORDUSIO[0], 278.0, accuracy_m=10.0)
    assert e.evaluate(near).ride_end_allowed is True
    assert e.check_end(near) == (True, [])
    far = at(CORDUSIO[0], 300.0, accuracy_m=10.0)
    assert e.check_end(far) == (False, ["outside-parking"])


def test_full_parking_next_to_a_free_one_within_the_fix_buffer() -> None:
    d = doc(capacity=12)
    # A second, free parking right beside Cordusio (x -320..-300).
    shape = [
        [LON0 + x / KX, LAT0 + y / KY]
        for x, y in ((-318, 230), (-300, 230), (-300, 270), (-318, 270))
    ]
    d["virtual_parkings"].append({"id": 9, "shape": shape, "capacity": 5})
    e = engine(d, lambda pid: {1: 12}.get(pid, 0))
    inside_full = at(-325, 250, accuracy_m=10.0)
    assert e.evaluate(inside_full).ride_end_allowed is True
    assert e.check_end(at(-370, 250, accuracy_m=5.0)) == (False, ["parking-full"])


def test_a_moving_vehicle_is_not_ending_its_trip() -> None:
    e = engine(doc(capacity=0))
    d = e.evaluate(at(*CORDUSIO, speed_kph=15.0))
    assert d.ride_end_allowed is None and d.ride_end_reasons == () and notes(d) == []
    stopped = e.evaluate(at(*CORDUSIO))
    assert stopped.ride_end_allowed is False and notes(stopped) == [NotificationKind.PARKING_FULL]
    # Rolling on and stopping again in the same full parking does not repeat the message.
    e.evaluate(at(*CORDUSIO, speed_kph=8.0))
    assert notes(e.evaluate(at(*CORDUSIO))) == []


def test_unusable_fix_in_check_end() -> None:
    stale = dict(fix_time=NOW - 3600)
    assert engine(doc(required=True)).check_end(at(*CORDUSIO, **stale)) == (
        False,
        ["position.unusable"],
    )
    assert engine(doc(capacity=0)).check_end(at(*CORDUSIO, **stale)) == (True, [])


def test_required_without_parkings_is_refused() -> None:
    d = doc(required=True)
    d["virtual_parkings"] = []
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert [p.location for p in exc.value.problems] == ["parking_required"]


def test_evaluate_many_matches_evaluate_with_parkings() -> None:
    states = [parked(-340, 240, "p1"), at(*CORDUSIO), at(*STREET, "v2"), at(*CORDUSIO, "v3")]
    one, many = engine(doc(capacity=1)), engine(doc(capacity=1))
    a = [one.evaluate(s) for s in states]
    b = many.evaluate_many(states)
    assert [(d.ride_end_allowed, d.ride_end_reasons, d.notifications) for d in a] == [
        (d.ride_end_allowed, d.ride_end_reasons, d.notifications) for d in b
    ]
    assert a[1].ride_end_reasons == ("parking-full",)


def test_explain_reports_capacity_and_occupancy() -> None:
    b = load_bundle(doc(capacity=12))
    lat, lon = LAT0 + CORDUSIO[1] / KY, LON0 + CORDUSIO[0] / KX
    r = explain(b, lat, lon, None, NOW)
    assert r["virtual_parkings"] == [
        {"id": 1, "name": "Cordusio", "capacity": 12, "occupancy": None, "full": None}
    ]
    assert r["ride_end_allowed"] is None and r["parking_required"] is False
    full = explain(b, lat, lon, None, NOW, parking_occupancy={1: 12}.get)
    assert full["ride_end_allowed"] is False and full["ride_end_reasons"] == ["parking-full"]
    free = explain(b, lat, lon, None, NOW, parking_occupancy={1: 3}.get)
    assert free["ride_end_allowed"] is True and free["virtual_parkings"][0]["full"] is False
    req = load_bundle(doc(required=True))
    out = explain(req, LAT0 + STREET[1] / KY, LON0 + STREET[0] / KX, None, NOW)
    assert out["ride_end_allowed"] is False and out["ride_end_reasons"] == ["outside-parking"]


def test_cli_check_and_explain_show_capacity(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc(capacity=0, required=True)))
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "check", str(path), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["parking_required"] is True and summary["parking_capacity"] == 50
    assert summary["parkings"][0] == {"id": 1, "name": "Cordusio", "capacity": 0}
    r = runner.invoke(app, ["rules", "check", str(path)])
    assert "capacity 0 (no vehicle may be left here)" in r.output
    lat, lon = LAT0 + CORDUSIO[1] / KY, LON0 + CORDUSIO[0] / KX
    args = ["rules", "explain", str(DEMO), "--lat", str(lat), "--lon", str(lon)]
    r = runner.invoke(app, [*args, "--occupancy", "1=12"])
    assert r.exit_code == 0, r.output
    assert "1 Cordusio: capacity 12, 12 parked (full)" in r.output
    assert "parking-full" in r.output
    r = runner.invoke(app, [*args, "--json"])
    assert json.loads(r.output)["virtual_parkings"][0]["capacity"] == 12
    r = runner.invoke(app, [*args, "--occupancy", "x"])
    assert r.exit_code != 0
