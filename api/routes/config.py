"""Configuration push: versioned rule bundles (border, speed zones, parkings, rent settings and
timings, speed settings, pricing, GBFS geofencing), checked by the rules engine before use."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ApiError, ok
from dockgate.api.idempotency import idempotent
from dockgate.api.params import MAX_ID, Digits
from dockgate.gateway.outbox import events

router = APIRouter(tags=["configuration"])


class BundleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[int, Digits] = Field(
        ge=1, le=MAX_ID, description="Must be above the current version"
    )
    kind: Literal["dashboard", "gbfs"] = "dashboard"
    bundle: dict[str, Any] = Field(description="The rule bundle (see docs/api.md)")

    @field_validator("bundle")
    @classmethod
    def _storable(cls, bundle: dict[str, Any]) -> dict[str, Any]:
        """Refuse what could be stored but never served again (``"\\ud800"`` decodes to a lone
        surrogate, which no UTF-8 encoder writes: every later read of the bundle would fail)."""
        try:
            orjson.dumps(bundle)
        except orjson.JSONEncodeError:
            raise ValueError(
                "the bundle must be UTF-8 text throughout (no lone surrogates)"
            ) from None
        return bundle


@router.get(
    "/config/bundles/current",
    summary="Get the active bundle",
    dependencies=[Depends(require(READ))],
)
async def current(request: Request) -> dict[str, Any]:
    return ok(request.app.state.store.bundles.current())


@router.post(
    "/config/bundles",
    summary="Push a configuration bundle",
    description="The body may be up to `ApiLimits.large_body_bytes` (8 MiB by default); "
    "every other route takes `ApiLimits.body_bytes` (64 KiB).",
    dependencies=[Depends(require(SYNC, large_body=True))],
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
            state.store.bundles.save(body.version, body.kind, body.bundle)
            state.outbox.publish(
                events.ConfigApplied(body.version, body.kind),
                idempotency_key=f"config:{body.version}",
            )
        state.metrics.rule_bundle_version.set(body.version)
        return ok({"version": body.version, "kind": body.kind})

    return await idempotent(request, body.model_dump(), handler)
