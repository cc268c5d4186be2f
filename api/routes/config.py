"""Configuration push: versioned rule bundles (border, speed zones, parkings, rent settings and
timings, speed settings, pricing, GBFS geofencing), checked by the rules engine before use."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ApiError, ok
from dockgate.api.idempotency import idempotent
from dockgate.gateway.outbox import Priority

router = APIRouter(tags=["configuration"])


class BundleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=2**62, description="Must be above the current version")
    kind: Literal["dashboard", "gbfs"] = "dashboard"
    bundle: dict[str, Any] = Field(description="The rule bundle (see docs/api.md)")


@router.get(
    "/config/bundles/current",
    summary="Get the active bundle",
    dependencies=[Depends(require(READ))],
)
async def current(request: Request) -> dict[str, Any]:
    return ok(request.app.state.store.current_bundle())


@router.post(
    "/config/bundles",
    summary="Push a configuration bundle",
    dependencies=[Depends(require(SYNC))],
)
async def push(request: Request, body: BundleBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        state = request.app.state
        problems = state.bundle_validator(body.kind, body.bundle)
        if problems:
            raise ApiError(
                422,
                "the bundle was refused",
                [{"loc": ["body", "bundle"], "msg": p} for p in problems],
            )
        with state.store.transaction():
            state.store.save_bundle(body.version, body.kind, body.bundle)
            state.outbox.append(
                "config.applied",
                {"version": body.version, "kind": body.kind},
                idempotency_key=f"config:{body.version}",
                priority=Priority.STATE,
            )
        state.metrics.rule_bundle_version.set(body.version)
        return ok({"version": body.version, "kind": body.kind})

    return await idempotent(request, body.model_dump(), handler)
