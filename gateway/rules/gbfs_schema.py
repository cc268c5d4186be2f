"""The shape of a GBFS ``geofencing_zones.json`` document (2.x and 3.0), as the gateway reads it.

Stricter than nothing, looser than the official schemas where a careful consumer can still
read the feed: a timestamp may be POSIX seconds or RFC 3339 text in either version, a rule may
spell the vehicle type key either version's way, a feature may have a null geometry, and
unknown fields are kept (``extra="allow"``) so that ``unknown_fields`` can name them. What
they mean, and the warnings, are decided in ``gbfs``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator


def _timestamp(value: object) -> int | float | str:
    """POSIX seconds (GBFS 2.x) or RFC 3339 text (GBFS 3.0), as given; ``gbfs`` reads either."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    raise ValueError("a time is POSIX seconds or RFC 3339 text")


Timestamp = Annotated[int | float | str, PlainValidator(_timestamp)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class RuleV3(_Loose):
    vehicle_type_ids: list[str] | None = None
    vehicle_type_id: list[str] | None = None  # the 2.x spelling
    ride_start_allowed: bool
    ride_end_allowed: bool
    ride_through_allowed: bool
    maximum_speed_kph: int | None = Field(default=None, ge=0)
    station_parking: bool | None = None


class RuleV2(_Loose):
    vehicle_type_id: list[str] | None = None
    vehicle_type_ids: list[str] | None = None  # the 3.0 spelling
    ride_allowed: bool
    ride_through_allowed: bool
    maximum_speed_kph: int | None = Field(default=None, ge=0)
    station_parking: bool | None = None


class LocalizedText(_Loose):
    text: str
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")


class MultiPolygon(_Loose):
    type: str = Field(pattern="^MultiPolygon$")
    # Polygons of rings; rings are checked when the shapes are built (``gbfs_geometry``), in
    # bulk: checking every number here would cost most of a large feed's load.
    coordinates: list[list[Any]]
    bbox: list[float] | None = None  # RFC 7946 section 5


class PropsV3(_Loose):
    name: list[LocalizedText] | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    rules: list[RuleV3] | None = None


class PropsV2(_Loose):
    name: str | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    rules: list[RuleV2] | None = None


class FeatureV3(_Loose):
    type: str = Field(pattern="^Feature$")
    id: str | int | None = None  # RFC 7946 section 3.2
    bbox: list[float] | None = None
    geometry: MultiPolygon | None = None
    properties: PropsV3


class FeatureV2(_Loose):
    type: str = Field(pattern="^Feature$")
    id: str | int | None = None
    bbox: list[float] | None = None
    geometry: MultiPolygon | None = None
    properties: PropsV2


class CollectionV3(_Loose):
    type: str = Field(pattern="^FeatureCollection$")
    bbox: list[float] | None = None
    features: list[FeatureV3]


class CollectionV2(_Loose):
    type: str = Field(pattern="^FeatureCollection$")
    bbox: list[float] | None = None
    features: list[FeatureV2]


class DataV3(_Loose):
    geofencing_zones: CollectionV3
    global_rules: list[RuleV3]


class DataV2(_Loose):
    geofencing_zones: CollectionV2


class DocV3(_Loose):
    last_updated: Timestamp
    ttl: int = Field(ge=0)
    version: str
    data: DataV3


class DocV2(_Loose):
    last_updated: Timestamp
    ttl: int = Field(ge=0)
    version: str
    data: DataV2


def _known(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(model.model_fields)


# The fields each object of a document may have, by version.
KNOWN_V3 = {
    "doc": _known(DocV3),
    "data": _known(DataV3),
    "zones": _known(CollectionV3),
    "feature": _known(FeatureV3),
    "geometry": _known(MultiPolygon),
    "properties": _known(PropsV3),
    "name": _known(LocalizedText),
    "rule": _known(RuleV3),
}
KNOWN_V2 = {
    **KNOWN_V3,
    "doc": _known(DocV2),
    "data": _known(DataV2),
    "zones": _known(CollectionV2),
    "feature": _known(FeatureV2),
    "properties": _known(PropsV2),
    "rule": _known(RuleV2),
}


def unknown_fields(doc: dict[str, Any], v3: bool) -> list[tuple[str, str]]:
    """(location, name) of every field the schema does not know, in file order.

    Run on a document that passed the schema, so every object is where the schema says; the
    raw dictionaries' keys are compared, not the models walked, which is cheap on large feeds.
    """
    known = KNOWN_V3 if v3 else KNOWN_V2
    out: list[tuple[str, str]] = []

    def check(obj: dict[str, Any], kind: str, path: str) -> None:
        names = known[kind]
        out.extend((f"{path}.{k}" if path else k, k) for k in obj if k not in names)

    def rules(items: list[dict[str, Any]] | None, path: str) -> None:
        for j, rule in enumerate(items or ()):
            check(rule, "rule", f"{path}.{j}")

    check(doc, "doc", "")
    data = doc["data"]
    check(data, "data", "data")
    check(data["geofencing_zones"], "zones", "data.geofencing_zones")
    for i, f in enumerate(data["geofencing_zones"]["features"]):
        path = f"data.geofencing_zones.features.{i}"
        check(f, "feature", path)
        if f.get("geometry"):
            check(f["geometry"], "geometry", f"{path}.geometry")
        props = f["properties"]
        check(props, "properties", f"{path}.properties")
        if isinstance(props.get("name"), list):
            for j, name in enumerate(props["name"]):
                check(name, "name", f"{path}.properties.name.{j}")
        rules(props.get("rules"), f"{path}.properties.rules")
    if v3:
        rules(data["global_rules"], "data.global_rules")
    return out
