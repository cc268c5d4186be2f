"""The network's rent settings, rent timings, vehicle speed settings and vehicle settings one
by one, under ``/networks/{network_id}/`` as in the dashboard, with its request bodies (JSON,
or a form: ``application/x-www-form-urlencoded``).

Reads take a ``read`` token; each write takes ``sync`` and saves the changed rule bundle as
the next version (``api/bundle_edits.py``), replayed for a repeated ``Idempotency-Key``. A
``network_id`` in the path that is not this gateway's network is 404 (in a body, 422).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.bundle_edits import BundleDraft, read_bundle, run_edit
from dockgate.api.errors import ok
from dockgate.api.form_bodies import body_fields, openapi_body, validated
from dockgate.api.params import MAX_ID, Digits
from dockgate.gateway.rules.config import RentSettings, RentTimings, VehicleSpeedSettings

router = APIRouter(tags=["network settings"])
read = [Depends(require(READ))]
write = [Depends(require(SYNC))]
NetworkPath = Annotated[int, Digits, Path(ge=1, le=MAX_ID, description="The network's identifier")]
ModelPath = Annotated[
    int, Digits, Path(ge=1, le=MAX_ID, description="The vehicle model identifier")
]
IN_PATH = ("path", "network_id")
Route = Callable[..., Awaitable[dict[str, Any]]]


class VehicleSettingsBody(BaseModel):
    """Update vehicle settings of one model: ``speed_mode`` 1 ECO, 2 NORMAL, 3 SPORT, or
    null (the rider's choice)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    auto_light: bool
    speed_mode: Literal[1, 2, 3] | None


def _view(part: BaseModel | None) -> dict[str, Any] | None:
    return None if part is None else part.model_dump(exclude={"network_id"})


def _getter(key: str) -> Route:
    async def get_settings(request: Request, network_id: NetworkPath) -> dict[str, Any]:
        bundle = read_bundle(request.app.state, network_id, IN_PATH, status=404)
        part = getattr(bundle, key) if bundle is not None else None
        return ok(_view(part))

    return get_settings


def _setter(key: str, model: type[BaseModel]) -> Route:
    async def update_settings(request: Request, network_id: NetworkPath) -> dict[str, Any]:
        fields = await body_fields(request)
        body = validated(model, fields)

        def change(draft: BundleDraft) -> dict[str, Any]:
            draft.check_network(network_id, IN_PATH, status=404)
            draft.check_network(getattr(body, "network_id", None), ("body", "network_id"))
            draft.doc[key] = fields
            draft.edited = (key,)
            return {}

        return await run_edit(request, fields, change)

    return update_settings


# (path, bundle key, body, the dashboard's name)
SECTIONS: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    ("rent-settings", "rent_settings", RentSettings, "rent settings"),
    ("rent-timings", "rent_timings", RentTimings, "rent timings"),
    ("vehicle-speed-settings", "vehicle_speed_settings", VehicleSpeedSettings, "speed settings"),
)
for _path, _key, _model, _name in SECTIONS:
    router.add_api_route(
        f"/networks/{{network_id}}/{_path}",
        _getter(_key),
        methods=["GET"],
        name=f"get_{_key}",
        summary=f"Get network's {_name}",
        dependencies=read,
    )
    router.add_api_route(
        f"/networks/{{network_id}}/{_path}",
        _setter(_key, _model),
        methods=["PUT"],
        name=f"update_{_key}",
        summary=f"Update network's {_name}",
        dependencies=write,
        openapi_extra=openapi_body(_model, form=True),
    )


@router.get(
    "/networks/{network_id}/vehicle-settings",
    summary="Get vehicle settings of every model",
    dependencies=read,
)
async def get_vehicle_settings(request: Request, network_id: NetworkPath) -> dict[str, Any]:
    bundle = read_bundle(request.app.state, network_id, IN_PATH, status=404)
    models = bundle.vehicle_settings if bundle is not None else []
    return ok([_view(v) for v in models])


@router.put(
    "/networks/{network_id}/vehicle-settings/{model_id}",
    summary="Update vehicle settings",
    dependencies=write,
    openapi_extra=openapi_body(VehicleSettingsBody, form=True),
)
async def update_vehicle_settings(
    request: Request, network_id: NetworkPath, model_id: ModelPath
) -> dict[str, Any]:
    fields = await body_fields(request)
    validated(VehicleSettingsBody, fields)

    def change(draft: BundleDraft) -> dict[str, Any]:
        draft.check_network(network_id, IN_PATH, status=404)
        models = draft.entries("vehicle_settings")
        known = [v.model_id for v in draft.config.vehicle_settings]
        at = known.index(model_id) if model_id in known else len(models)
        models[at : at + 1] = [{"model_id": model_id, **fields}]  # replaced, or appended
        draft.edited = ("vehicle_settings", str(at))
        return {"model_id": model_id}

    return await run_edit(request, fields, change)
