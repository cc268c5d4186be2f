"""``Idempotency-Key`` on POSTs: a repeated request gets the first answer, not a second effect."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request

from dockgate.api.errors import invalid

HEADER = "Idempotency-Key"


async def idempotent(
    request: Request, body: Any, handler: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run ``handler`` once per key; the same key with another body is refused (422)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handler()
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise invalid(
            ["header", HEADER], "Idempotency-Key must be 1..200 printable characters", status=400
        )
    store = request.app.state.store
    scope = f"{request.method} {request.url.path}"
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # too deep (the guard bounds depth) or a lone surrogate
        message = "this body cannot be fingerprinted for its Idempotency-Key"
        raise invalid(["body"], message) from None
    fingerprint = hashlib.sha256(canonical).hexdigest()
    known = store.idempotency.response(scope, key)
    if known is not None:
        if known.fingerprint != fingerprint:
            raise invalid(["header", HEADER], "this Idempotency-Key was used with a different body")
        replayed: dict[str, Any] = orjson.loads(known.response)  # stored from `response` below
        return replayed
    response = await handler()
    store.idempotency.remember(scope, key, fingerprint, orjson.dumps(response).decode())
    return response
