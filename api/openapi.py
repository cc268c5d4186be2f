"""The OpenAPI document as clients need it: every error answer, in the API's error envelope.

FastAPI declares the success answer and a 422 in its own validation shape. This fills in the
rest from what each operation is: one with a security requirement can answer 401/403, one
with a body 400/408/413, one under the API prefix that names a row 404 (and a write 409), and
every one 422 (a query parameter it does not read, ``api/query.py``) and 503 when the server
is at its connection cap. Every 4xx uses :class:`ErrorBody`. The ``language`` parameter every
route accepts is declared on each.
"""

from __future__ import annotations

from typing import Any

from dockgate.api.errors import ErrorBody

ERROR_DESCRIPTIONS = {
    400: "Unreadable request: a body that is not JSON, a bad Idempotency-Key",
    401: "No token, or an unknown one (`WWW-Authenticate: Bearer`)",
    403: "The token lacks the route's scope (on `/play`: the scan was rejected)",
    404: "A row the request names does not exist",
    408: "The body did not arrive within the body timeout",
    409: "The request conflicts with the current state (a stale bundle version, a taken id)",
    413: "The body is larger than the route's limit (64 KiB; 8 MiB for rule bundles)",
    422: "Invalid parameters or body, every problem listed (values never echoed): a query "
    "parameter the route does not read, a value out of range; a body nested deeper than 64 "
    "levels",
}
UNAVAILABLE = {
    "description": "The server is at its connection cap (plain text from the server)",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeat a POST safely: the same key and body replay the first answer; "
    "the same key with another body is refused (422)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
LANGUAGE = {
    "name": "language",
    "in": "query",
    "required": False,
    "description": "A language tag (`en-US`); accepted everywhere, this API has no localized text",
    "schema": {"type": "string", "pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$"},
}
_WRITES = {"post", "put", "patch", "delete"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def _error_codes(path: str, method: str, operation: dict[str, Any], prefix: str) -> set[int]:
    params = operation.get("parameters", [])
    codes: set[int] = {422}  # every route refuses a query parameter it does not read
    if operation.get("security"):
        codes |= {401, 403}
    if "requestBody" in operation:
        codes |= {400, 408, 413, 422}
    if path.startswith(prefix + "/"):
        if any(p.get("in") == "path" for p in params) or method in _WRITES:
            codes.add(404)
        if method in _WRITES:
            codes |= {400, 409}
    return codes


def _envelope(code: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS.get(code, "The request was refused"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def describe_errors(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Add the error answers, the envelope's schema and ``Idempotency-Key`` to ``schema``."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body_schema.pop("$defs", {}))
    schemas["ErrorBody"] = body_schema
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = _error_codes(path, method, operation, prefix)
            # answers the route declared itself (FastAPI's 422 among them) get the envelope too
            codes |= {int(c) for c in responses if c.isdigit() and 400 <= int(c) < 500}
            for code in sorted(codes):
                responses[str(code)] = _envelope(code)
            responses["503"] = UNAVAILABLE
            if method == "post" and path.startswith(prefix + "/"):
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
            operation.setdefault("parameters", []).append(LANGUAGE)
    for name in _FASTAPI_VALIDATION:  # FastAPI's 422 shape: every 422 now uses the envelope
        schemas.pop(name, None)
    return schema
