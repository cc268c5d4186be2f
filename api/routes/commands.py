"""Commands to a vehicle or a spot (lock, unlock, max speed) and their outcome.

A command is journaled before it is sent; a repeated ``Idempotency-Key`` returns the journaled
command instead of sending it again. The outcome commits with its outbox event.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockgate.api.auth import READ, SYNC, require
from dockgate.api.errors import invalid, ok
from dockgate.api.idempotency import HEADER
from dockgate.api.params import Digits, Id
from dockgate.api.ports import CommandOutcome
from dockgate.gateway.outbox import events
from dockgate.gateway.store import JournalEntry

router = APIRouter(tags=["commands"])


class VehicleCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: Literal["lock", "unlock", "max_speed"]
    max_speed: Annotated[int | None, Digits] = Field(
        None, ge=6, le=25, description="km/h, for `max_speed`"
    )

    @model_validator(mode="after")
    def _speed_given(self) -> VehicleCommand:
        if (self.command == "max_speed") != (self.max_speed is not None):
            raise ValueError("max_speed is required with, and only with, command max_speed")
        return self


class SpotCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: Literal["lock", "unlock"]


def _view(entry: JournalEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "target_kind": entry.target_kind,
        "target_id": entry.target_id,
        "command": entry.command,
        "args": orjson.loads(entry.args),
        "state": entry.state,
        "outcome": orjson.loads(entry.outcome) if entry.outcome else None,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }


async def run_command(
    request: Request, target_kind: str, target_id: int, command: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Journal, send through the injected sender, record the outcome and its event."""
    state = request.app.state
    store, outbox = state.store, state.outbox
    key = request.headers.get(HEADER) or f"api:{uuid.uuid4()}"
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise invalid(
            ["header", HEADER], "Idempotency-Key must be 1..200 printable characters", status=400
        )
    entry, created = store.commands.journal(key, target_kind, target_id, command, args)
    if not created:
        if (entry.target_kind, entry.target_id, entry.command) != (
            target_kind,
            target_id,
            command,
        ) or orjson.loads(entry.args) != args:
            raise invalid(["header", HEADER], "this Idempotency-Key was used for another command")
        return ok(_view(entry))
    sender = state.command_sender
    if sender is None:  # the daemon sends journaled commands when its driver is up
        return ok(_view(entry))
    store.commands.mark(entry.id, "sent")
    try:
        outcome = await asyncio.wait_for(
            sender.send_command(target_kind, target_id, command, args, idempotency_key=key),
            state.command_timeout,
        )
    except TimeoutError:
        outcome = CommandOutcome("timeout", "no answer from the device")
    except Exception as exc:  # a transport failure is an outcome, not a crash
        outcome = CommandOutcome("failed", type(exc).__name__)
    result = {"status": outcome.status, "detail": outcome.detail, **outcome.data}
    with store.transaction():
        store.commands.mark(entry.id, outcome.status, result)
        outbox.publish(
            events.ApiCommandOutcome(entry.id, target_kind, target_id, command, args, result),
            idempotency_key=f"command:{entry.id}:outcome",
        )
    return ok(_view(store.commands.get(entry.id)))


@router.post(
    "/vehicles/{id}/commands",
    summary="Send a command to a vehicle",
    dependencies=[Depends(require(SYNC))],
)
async def vehicle_command(request: Request, id: Id, body: VehicleCommand) -> dict[str, Any]:
    request.app.state.store.vehicles.get(id)
    args = {"max_speed": body.max_speed} if body.command == "max_speed" else {}
    return await run_command(request, "vehicle", id, body.command, args)


@router.post(
    "/spots/{id}/commands",
    summary="Send a command to a spot",
    dependencies=[Depends(require(SYNC))],
)
async def spot_command(request: Request, id: Id, body: SpotCommand) -> dict[str, Any]:
    request.app.state.store.topology.spot(id)
    return await run_command(request, "spot", id, body.command, {})


@router.get(
    "/commands/{id}",
    summary="Get a command and its outcome",
    dependencies=[Depends(require(READ))],
)
async def get_command(request: Request, id: Id) -> dict[str, Any]:
    return ok(_view(request.app.state.store.commands.get(id)))
