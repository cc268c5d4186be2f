"""Time zone names are hostile input: a lookup answers a zone or None, and never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.gateway.rules import BundleError, load_bundle
from dockgate.gateway.timezones import time_zone


@pytest.mark.parametrize("name", ["UTC", "Europe/Rome", "America/Argentina/Buenos_Aires"])
def test_real_zones_are_found(name: str) -> None:
    zone = time_zone(name)
    assert zone is not None and zone.key == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "0" * 5000, "é/ü"]
)
def test_odd_names_are_none(name: str) -> None:
    assert time_zone(name) is None


@given(st.text(max_size=400))
def test_no_name_raises(name: str) -> None:
    time_zone(name)


def test_a_bundle_with_a_hostile_time_zone_is_a_listed_problem() -> None:
    with pytest.raises(BundleError) as refused:
        load_bundle({"version": "1", "timezone": "0" * 43 + "\x80" * 300})
    assert any("timezone" in str(problem) for problem in refused.value.problems)
