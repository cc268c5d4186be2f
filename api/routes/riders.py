"""Riders (the dashboard's users), NFC products and records, pairing, blocking, tag keys and
the dynamic play check. Keys go in and are never sent back out."""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dockgate.api.auth import READ, SYNC, Principal, require
from dockgate.api.errors import ApiError, ok, ok_page
from dockgate.api.filters import USERS_UNSUPPORTED, UserFilters
from dockgate.api.idempotency import idempotent
from dockgate.api.paging import PageQuery
from dockgate.api.params import MAX_ID, Digits, Id
from dockgate.api.ports import PlayCheck
from dockgate.api.query import Unsupported
from dockgate.gateway.store import Rider

router = APIRouter(tags=["riders and records"])
read = [Depends(require(READ))]
write = [Depends(require(SYNC))]
PLAY = re.compile(r"^([0-9]{1,18})@([0-9A-Fa-f]{32}|[0-9A-Fa-f]{48}):([0-9A-Fa-f]{16})$")
PLAY_MAX_LENGTH = 18 + 1 + 48 + 1 + 16  # record id, "@", LRP PICC data (AES: 32), ":", CMAC
BodyId = Annotated[int, Digits, Field(ge=1, le=MAX_ID)]
Paging = Annotated[PageQuery, Query()]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RiderBody(Strict):
    email: str | None = Field(None, max_length=254)
    name: str | None = Field(None, max_length=200)
    credit: int | None = Field(None, ge=-(10**9), le=10**9, description="Credit in cents")
    first_purchase_done: bool | None = None


class BlockBody(Strict):
    reason: str = Field(min_length=3, max_length=1000)


class ProductBody(Strict):
    id: BodyId | None = None
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["card", "ring", "sticker", "other"] = "card"


class RecordBody(Strict):
    id: BodyId | None = None
    technology: Literal["nfc", "qrcode", "data_matrix", "aztec", "pdf417"] = "nfc"
    token_encryption: Literal["static", "aes-128"] = "static"
    key: str | None = Field(
        None, pattern=r"^[0-9A-Fa-f]{32}$", description="Write-only: never returned"
    )
    uid: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{14}$", description="7-byte NFC UID")


class PairBody(Strict):
    user_id: BodyId


class DynamicPairBody(Strict):
    user_id: BodyId
    play: str = Field(
        max_length=PLAY_MAX_LENGTH,
        description="`<id_record>@<picc_data>:<cmac>` read from the product",
    )


class TagKeyBody(Strict):
    key: str = Field(pattern=r"^[0-9A-Fa-f]{32}$", description="AES-128 key, hex; write-only")


def _rider(row: Rider) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "name": row.name,
        "blocked": bool(row.blocked),
        "block_reason": row.block_reason,
        "blocked_at": row.blocked_at,
        "credit": row.credit,
        "first_purchase_done": bool(row.first_purchase_done),
    }


def _check_play(request: Request, play: str, *, consume: bool = True) -> tuple[int, PlayCheck]:
    """Verify a play; ``consume=False`` checks it against the replay counter without
    advancing it (a read-only caller must not use up a scan the backend will pair with)."""
    match = PLAY.match(play)
    if match is None:
        raise ApiError(422, "a play is <id_record>@<picc_data 32 or 48 hex>:<cmac 16 hex>")
    record_id = int(match[1])
    record = request.app.state.store.records.get(record_id)
    if record.token_encryption != "aes-128":
        raise ApiError(422, f"record {record_id} is not a dynamic (aes-128) record")
    verifier = request.app.state.play_verifier
    if verifier is None:
        raise ApiError(409, "this gateway has no SUN verifier configured")
    check = verifier.verify_play(
        record_id, match[2].upper(), match[3].upper(), consume=consume, uid=record.uid
    )
    if not check.valid:
        raise ApiError(403, f"play rejected: {check.reason or 'invalid'}")
    bound = record.uid
    if bound and not hmac.compare_digest(bound.upper(), (check.uid or "").upper()):
        raise ApiError(403, "play rejected: the tag is not this record's chip")
    return record_id, check


@router.get(
    "/users",
    summary="Get riders",
    description="The dashboard's user filters over riders. A rider belongs to the networks "
    "of the vehicles they rode (`without_network=true` adds those who never rode); "
    "`last_activity` is their last trip's start or end and `trip_count` their trips, as this "
    "gateway saw them; `timezone` reads date-times given without an offset. Refused: "
    + ", ".join(f"`{name}`" for name in USERS_UNSUPPORTED)
    + " (not kept here).",
    dependencies=[*read, Depends(Unsupported(USERS_UNSUPPORTED))],
)
async def riders(request: Request, filters: Annotated[UserFilters, Query()]) -> dict[str, Any]:
    return ok_page(request.app.state.store.riders.search(filters.rider_query()), _rider)


@router.get("/users/{id}", summary="Get rider", dependencies=read)
async def rider(request: Request, id: Id) -> dict[str, Any]:
    return ok(_rider(request.app.state.store.riders.get(id)))


@router.put("/users/{id}", summary="Create or update a rider", dependencies=write)
async def put_rider(request: Request, id: Id, body: RiderBody) -> dict[str, Any]:
    store = request.app.state.store
    store.riders.upsert(id, **body.model_dump())
    return ok(_rider(store.riders.get(id)))


@router.get("/users/{id}/blocked", summary="Get blocked information", dependencies=read)
async def blocked(request: Request, id: Id) -> dict[str, Any]:
    r = request.app.state.store.riders.get(id)
    return ok({"blocked": bool(r.blocked), "reason": r.block_reason, "since": r.blocked_at})


@router.post("/users/{id}/block", summary="Block rider", dependencies=write)
async def block(request: Request, id: Id, body: BlockBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        request.app.state.store.riders.set_blocked(id, True, body.reason)
        return ok()

    return await idempotent(request, body.model_dump(), handler)


@router.post("/users/{id}/unblock", summary="Unblock rider", dependencies=write)
async def unblock(request: Request, id: Id) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        request.app.state.store.riders.set_blocked(id, False)
        return ok()

    return await idempotent(request, {"id": id}, handler)


@router.get("/users/{id}/badges", summary="Get rider's badges (records)", dependencies=read)
async def badges(request: Request, id: Id, page: Paging) -> dict[str, Any]:
    store = request.app.state.store
    store.riders.get(id)
    return ok_page(store.records.page(page.keyset(), rider_id=id))


@router.get("/products", summary="Get products", dependencies=read)
async def products(request: Request, page: Paging) -> dict[str, Any]:
    return ok_page(request.app.state.store.products.page(page.keyset()))


@router.post("/products", summary="Create a product (a card, a ring)", dependencies=write)
async def create_product(request: Request, body: ProductBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        store = request.app.state.store
        if body.id is not None and store.products.exists(body.id):
            raise ApiError(409, f"product {body.id} already exists")
        new_id = store.products.create(body.name, body.kind, id=body.id)
        return ok(store.products.get(new_id))

    return await idempotent(request, body.model_dump(), handler)


@router.get("/products/{id}", summary="Get product", dependencies=read)
async def product(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.products.get(id))


@router.get("/products/{id}/records", summary="Get a product's records", dependencies=read)
async def product_records(request: Request, id: Id, page: Paging) -> dict[str, Any]:
    store = request.app.state.store
    store.products.get(id)
    return ok_page(store.records.page(page.keyset(), product_id=id))


@router.post("/products/{id}/records", summary="Create a record", dependencies=write)
async def create_record(request: Request, id: Id, body: RecordBody) -> dict[str, Any]:
    fingerprint = body.model_dump()

    async def handler() -> dict[str, Any]:
        store = request.app.state.store
        if body.id is not None and store.records.exists(body.id):
            raise ApiError(409, f"record {body.id} already exists")
        new_id = store.records.create(
            id,
            technology=body.technology,
            token_encryption=body.token_encryption,
            key=body.key,
            uid=body.uid,
            id=body.id,
        )
        return ok(store.records.get(new_id))

    return await idempotent(request, fingerprint, handler)


@router.post("/products/{id}/pair", summary="Pair a static product to a rider", dependencies=write)
async def pair(request: Request, id: Id, body: PairBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        store = request.app.state.store
        store.products.pair(id, body.user_id)
        return ok(store.products.get(id))

    return await idempotent(request, body.model_dump(), handler)


@router.post(
    "/products/pair-dynamic",
    summary="Pair a dynamic product to a rider with a fresh scan",
    description="`play` is what the product's NFC chip gave: `<id_record>@<picc_data>:<cmac>`."
    " The SUN message is verified before the record's product is paired.",
    dependencies=write,
)
async def pair_dynamic(request: Request, body: DynamicPairBody) -> dict[str, Any]:
    async def handler() -> dict[str, Any]:
        store = request.app.state.store
        store.riders.get(body.user_id)
        record_id, check = _check_play(request, body.play)
        record = store.records.get(record_id)
        with store.transaction():
            store.products.pair(record.product_id, body.user_id)
            store.records.count_scan(record_id, uid=check.uid)
        return ok(store.products.get(record.product_id))

    return await idempotent(request, body.model_dump(), handler)


@router.post("/products/{id}/unpair", summary="Unpair a product", dependencies=write)
async def unpair(request: Request, id: Id) -> dict[str, Any]:
    request.app.state.store.products.pair(id, None)
    return ok()


@router.get("/records/{id}", summary="Get record (never its key)", dependencies=read)
async def record(request: Request, id: Id) -> dict[str, Any]:
    return ok(request.app.state.store.records.get(id))


@router.get(
    "/play/{play}",
    summary="Dynamic play check",
    description="Verifies `<id_record>@<picc_data>:<cmac>` (`picc_data`: 32 hex characters from "
    "an AES tag, 48 from an LRP tag) and returns the record, its rider and the record's scan "
    "count. With a `sync` token an accepted scan is used up (the tag's "
    "counter is stored, the scan counted). With a `read` token the check is dry (`dry_run`: "
    "true): the MAC is verified and the counter compared with the last one stored, and "
    "nothing is written, so the backend can still pair with the same scan.",
    responses={409: {"description": "No SUN verifier is configured"}},
)
async def play(
    request: Request,
    play: Annotated[str, Path(max_length=PLAY_MAX_LENGTH)],
    principal: Annotated[Principal, Depends(require(READ))],
) -> dict[str, Any]:
    store = request.app.state.store
    consume = SYNC in principal.scopes
    record_id, check = _check_play(request, play, consume=consume)
    if consume:
        scans = store.records.count_scan(record_id, uid=check.uid)
    else:
        scans = store.records.get(record_id).scan_count
    rider_row = store.riders.of_record(record_id)
    return ok(
        {
            "record": store.records.get(record_id),
            "rider": _rider(rider_row) if rider_row else None,
            "scan_count": scans,
            "read_ctr": check.read_ctr,
            "dry_run": not consume,
        }
    )


@router.get("/tag-keys", summary="List tag key names and versions", dependencies=read)
async def tag_keys(request: Request) -> dict[str, Any]:
    return ok(request.app.state.store.tag_keys.names())


@router.put(
    "/tag-keys/{name}",
    summary="Set a tag key (write-only)",
    dependencies=write,
)
async def put_tag_key(
    request: Request,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")],
    body: TagKeyBody,
) -> dict[str, Any]:
    version = request.app.state.store.tag_keys.set(name, bytes.fromhex(body.key))
    return ok({"name": name, "version": version})
