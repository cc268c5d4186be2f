"""Configuration push: versioned rule bundles (border, speed zones, parkings, rent settings and
timings, speed settings, pricing, GBFS geofencing), checked by the rules engine before use.

Every bundle change, a whole push or one dashboard operation (``routes/geofencing.py``),
goes the same way: checked as a whole, saved as a new version with its ``config.applied``
event in one commit; the daemon's housekeeping then swaps the running engine to the newest
saved bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import State

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import ApiError, ok
from dockgate.api.idempotency import idempotent
from dockgate.api.params import MAX_ID, Digits
from dockgate.api.ports import BundleProblem, BundleValidator
from dockgate.gateway.outbox import events
from dockgate.gateway.store import Store

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


def site_network(store: Store) -> int | None:
    """The network this gateway serves: the store's one network (None: none or several)."""
    networks = store.topology.networks()
    return networks[0].id if len(networks) == 1 else None


def bundle_problems(
    state: State, kind: str, bundle: dict[str, Any]
) -> Sequence[BundleProblem | str]:
    """Everything wrong with ``bundle`` as a whole: the validator's answer (as it is, so the
    warnings an ``AcceptedBundle`` carries stay on it), and a dashboard bundle for another
    network than the site's (its ``network_id``, 1 when absent)."""
    validator: BundleValidator = state.bundle_validator
    problems = validator(kind, bundle)
    site = site_network(state.store)
    network = bundle.get("network_id", 1)
    valid_id = isinstance(network, int) and not isinstance(network, bool) and network >= 1
    if kind == "dashboard" and site is not None and valid_id and network != site:
        mismatch = BundleProblem(("network_id",), f"must be this site's network ({site})")
        return [*problems, mismatch]
    return problems


def located(problems: Sequence[BundleProblem | str], where: Sequence[str]) -> list[dict[str, Any]]:
    """Problems as the API lists them: ``loc`` from ``where`` down to the field, a plain
    ``msg`` (a problem of the bundle as a whole is located at ``where``)."""
    return [
        {"loc": [*where, *p.path], "msg": p.message}
        if isinstance(p, BundleProblem)
        else {"loc": list(where), "msg": str(p)}
        for p in problems
    ]


def save_bundle(state: State, version: int, kind: str, bundle: dict[str, Any]) -> None:
    """Save a checked bundle as ``version`` and announce it, in one commit (``Conflict`` if
    ``version`` is not above the current one: nothing is saved)."""
    with state.store.transaction():
        state.store.bundles.save(version, kind, bundle)
        state.outbox.publish(
            events.ConfigApplied(version, kind),
            idempotency_key=f"config:{version}",
        )
    state.metrics.rule_bundle_version.set(version)


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
    "every other route takes `ApiLimits.body_bytes` (64 KiB). A refused bundle lists every "
    'problem with its field\'s path, e.g. `{"loc": ["body", "bundle", "speed_zones", "2", '
    '"max_speed"], "msg": "must be between 6 and 25"}`.',
    dependencies=[Depends(require(SYNC, large_body=True))],
)
async def push(request: Request, body: BundleBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        state = request.app.state
        problems = bundle_problems(state, body.kind, body.bundle)
        if problems:
            raise ApiError(422, "the bundle was refused", located(problems, ("body", "bundle")))
        save_bundle(state, body.version, body.kind, body.bundle)
        warnings = getattr(problems, "warnings", [])  # ``ports.AcceptedBundle``
        return ok({"version": body.version, "kind": body.kind, "warnings": warnings})

    return await idempotent(request, body.model_dump(), handler)
