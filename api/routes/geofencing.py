"""The dashboard's Geofencing operations one by one: the border's shape and settings, speed
zones and virtual parkings, with the dashboard's request bodies (the network's settings are in
``network_settings.py``).

Reads take a ``read`` token; each write takes ``sync``, writes the body, once checked, into
the newest rule bundle as it was sent and saves the bundle as the next version
(``api/bundle_edits.py``), replayed for a repeated ``Idempotency-Key``. The border settings,
a flat body, may also be sent as a form (``application/x-www-form-urlencoded``). A
``network_id`` that is not this gateway's network is refused, naming the field: 422 in a
query or body, 404 in the path.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.bundle_edits import (
    PARKINGS,
    SPEED_ZONES,
    BundleDraft,
    read_bundle,
    run_edit,
)
from dockgate.api.errors import ApiError, ok
from dockgate.api.form_bodies import body_fields, openapi_body, validated
from dockgate.api.params import MAX_ID, Digits, Id
from dockgate.gateway.rules.config import Shape, SpeedZone, VirtualParking

router = APIRouter(tags=["geofencing"])
read = [Depends(require(READ))]
write = [Depends(require(SYNC))]
NetworkQuery = Annotated[
    int, Digits, Query(ge=1, le=MAX_ID, description="Identifier of the network")
]
IdField = Annotated[int, Field(ge=1, le=MAX_ID)]
NO_BORDER = "the network has no border yet: set its shape first (PUT /geofencing/border/shape)"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BorderShapeBody(_Body):
    """Update border shape: the network's new border, ``[lon, lat]`` points."""

    network_id: IdField
    shape: Shape


class BorderSettingsBody(_Body):
    """Update border settings: what leaving the network's border does (``BorderSettings``)."""

    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool
    network_id: IdField


class SpeedZoneCreateBody(_Body):
    """Create speed zone (the gateway names it: ``content_id``)."""

    network_id: IdField
    shape: Shape
    max_speed: int = Field(ge=6, le=25)


class SpeedZoneUpdateBody(_Body):
    """Update speed zone: the fields given replace the zone's."""

    speed_zone_id: IdField
    shape: Shape | None = None
    max_speed: int | None = Field(default=None, ge=6, le=25)


class VirtualParkingCreateBody(_Body):
    """Create virtual parking (``network_id`` null: this gateway's network)."""

    shape: Shape
    capacity: int = Field(ge=0)
    network_id: IdField | None


class VirtualParkingUpdateBody(_Body):
    """Update virtual parking."""

    shape: Shape
    capacity: int = Field(ge=0)


def _zone_view(network_id: int, zone: SpeedZone | VirtualParking) -> dict[str, Any]:
    return {"network_id": network_id, **zone.model_dump(exclude={"network_id"})}


def _settings_view(settings: BaseModel | None) -> dict[str, Any] | None:
    return None if settings is None else settings.model_dump(exclude={"network_id"})


# --- border -------------------------------------------------------------------------------
@router.get("/geofencing/border", summary="Get network border", dependencies=read)
async def get_border(request: Request, network_id: NetworkQuery) -> dict[str, Any]:
    bundle = read_bundle(request.app.state, network_id, ("query", "network_id"))
    border = bundle.border if bundle is not None else None
    return ok(
        {
            "network_id": network_id,
            "shape": border.shape if border is not None else None,
            "settings": _settings_view(border.settings if border is not None else None),
        }
    )


@router.put(
    "/geofencing/border/shape",
    summary="Update border shape",
    dependencies=write,
    openapi_extra=openapi_body(BorderShapeBody),
)
async def update_border_shape(request: Request) -> dict[str, Any]:
    fields = await body_fields(request)
    body = validated(BorderShapeBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.check_network(body.network_id, ("body", "network_id"))
        border = draft.doc.get("border") or {}
        draft.doc["border"] = {**border, **fields}
        draft.edited = ("border",)
        return {}

    return await run_edit(request, fields, change)


@router.put(
    "/geofencing/border/settings",
    summary="Update border settings",
    dependencies=write,
    openapi_extra=openapi_body(BorderSettingsBody, form=True),
)
async def update_border_settings(request: Request) -> dict[str, Any]:
    fields = await body_fields(request)
    body = validated(BorderSettingsBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.check_network(body.network_id, ("body", "network_id"))
        border = draft.doc.get("border")
        if not isinstance(border, dict):
            raise ApiError(409, NO_BORDER)
        border["settings"] = fields
        draft.edited = ("border", "settings")
        return {}

    return await run_edit(request, fields, change)


# --- speed zones --------------------------------------------------------------------------
@router.get("/geofencing/speed-zones", summary="Get speed zones", dependencies=read)
async def get_speed_zones(request: Request, network_id: NetworkQuery) -> dict[str, Any]:
    bundle = read_bundle(request.app.state, network_id, ("query", "network_id"))
    zones = bundle.speed_zones if bundle is not None else []
    return ok([_zone_view(network_id, z) for z in zones])


@router.post(
    "/geofencing/speed-zones",
    summary="Create speed zone",
    dependencies=write,
    openapi_extra=openapi_body(SpeedZoneCreateBody),
)
async def create_speed_zone(request: Request) -> dict[str, Any]:
    fields = await body_fields(request)
    body = validated(SpeedZoneCreateBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.check_network(body.network_id, ("body", "network_id"))
        return {"id": draft.add_entry(SPEED_ZONES, fields)}

    return await run_edit(request, fields, change)


@router.put(
    "/geofencing/speed-zones",
    summary="Update speed zone",
    dependencies=write,
    openapi_extra=openapi_body(SpeedZoneUpdateBody),
)
async def update_speed_zone(request: Request) -> dict[str, Any]:
    fields = await body_fields(request)
    body = validated(SpeedZoneUpdateBody, fields)
    changes = {k: v for k, v in fields.items() if k != "speed_zone_id" and v is not None}

    def change(draft: BundleDraft) -> dict[str, Any]:
        at = draft.position(SPEED_ZONES, body.speed_zone_id, ("body", "speed_zone_id"))
        draft.replace_entry(SPEED_ZONES, at, changes)
        return {"id": body.speed_zone_id}

    return await run_edit(request, fields, change)


@router.delete(
    "/geofencing/speed-zones/{id}",
    summary="Delete speed zone",
    dependencies=write,
)
async def delete_speed_zone(request: Request, id: Id) -> dict[str, Any]:
    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.remove_entry(SPEED_ZONES, draft.position(SPEED_ZONES, id, ("path", "id")))
        return {"id": id}

    return await run_edit(request, None, change)


# --- virtual parkings ---------------------------------------------------------------------
@router.get("/geofencing/virtual-parkings", summary="Get virtual parking", dependencies=read)
async def get_virtual_parkings(request: Request, network_id: NetworkQuery) -> dict[str, Any]:
    bundle = read_bundle(request.app.state, network_id, ("query", "network_id"))
    parkings = bundle.virtual_parkings if bundle is not None else []
    return ok([_zone_view(network_id, p) for p in parkings])


@router.post(
    "/geofencing/virtual-parkings",
    summary="Create virtual parking",
    dependencies=write,
    openapi_extra=openapi_body(VirtualParkingCreateBody),
)
async def create_virtual_parking(request: Request) -> dict[str, Any]:
    fields = await body_fields(request)
    body = validated(VirtualParkingCreateBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.check_network(body.network_id, ("body", "network_id"))
        return {"id": draft.add_entry(PARKINGS, fields)}

    return await run_edit(request, fields, change)


@router.put(
    "/geofencing/virtual-parkings/{id}",
    summary="Update virtual parking",
    dependencies=write,
    openapi_extra=openapi_body(VirtualParkingUpdateBody),
)
async def update_virtual_parking(request: Request, id: Id) -> dict[str, Any]:
    fields = await body_fields(request)
    validated(VirtualParkingUpdateBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        at = draft.position(PARKINGS, id, ("path", "id"))
        draft.replace_entry(PARKINGS, at, fields)
        return {"id": id}

    return await run_edit(request, fields, change)


@router.delete(
    "/geofencing/virtual-parkings/{id}",
    summary="Delete virtual parking",
    dependencies=write,
)
async def delete_virtual_parking(request: Request, id: Id) -> dict[str, Any]:
    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.remove_entry(PARKINGS, draft.position(PARKINGS, id, ("path", "id")))
        return {"id": id}

    return await run_edit(request, None, change)
