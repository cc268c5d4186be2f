"""Request bodies as the dashboard sends them: JSON, or a flat form
(``application/x-www-form-urlencoded``, the dashboard's convention for its settings).

The request guard (``api/guard.py``) bounds every body before anything here reads it, whatever
its media type: size, read time and nesting hold for forms as for JSON. A form value is read
as the JSON scalar it spells (``true``, ``12``, ``-1``, ``0.5``, ``null``; an empty value is
null too) and as text otherwise, so both kinds of body are then checked by the same strict
model, and one number has one spelling (``+1``, `` 1``, ``1_0`` stay text and are refused).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from dockgate.api.errors import ApiError
from dockgate.gateway.rules.field_messages import plain_problems

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\.[0-9]{1,9}")
_WORDS: dict[str, bool | None] = {"true": True, "false": False, "null": None, "": None}
M = TypeVar("M", bound=BaseModel)


def invalid(problems: list[dict[str, Any]]) -> ApiError:
    """The API's 422 for a request that was read but is not acceptable."""
    return ApiError(422, "invalid request", problems)


async def body_fields(request: Request) -> dict[str, Any]:
    """The request's body as an object: JSON (the default), or a form."""
    raw = await request.body()
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == FORM:
        return _form_fields(raw)
    if media.startswith("multipart/"):
        message = f"a multipart body is not read here: send JSON or {FORM}"
        raise invalid([{"loc": ["body"], "msg": message}])
    return _json_fields(raw)


def _json_fields(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise invalid([{"loc": ["body"], "msg": "not valid JSON"}]) from None
    if not isinstance(data, dict):
        raise invalid([{"loc": ["body"], "msg": "must be a JSON object"}])
    return data


def _form_fields(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        message = f"not a form of at most {MAX_FORM_FIELDS} UTF-8 name=value fields"
        raise invalid([{"loc": ["body"], "msg": message}]) from None
    fields: dict[str, Any] = {}
    repeated: list[dict[str, Any]] = []
    for name, value in pairs:
        if name in fields:
            repeated.append({"loc": ["body", name], "msg": "given more than once"})
        fields[name] = _scalar(value)
    if repeated:
        raise invalid(repeated)
    return fields


def _scalar(text: str) -> Any:
    """A form value as the JSON scalar it spells, else as text."""
    if text in _WORDS:
        return _WORDS[text]
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def validated(model: type[M], fields: dict[str, Any]) -> M:
    """``fields`` checked by ``model``; every problem in plain words under ``["body", ...]``."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = plain_problems(model, exc)
        listed = [{"loc": ["body", *map(str, loc)], "msg": msg} for loc, msg in problems]
        raise invalid(listed) from None


def openapi_body(model: type[BaseModel], *, form: bool = False) -> dict[str, Any]:
    """The OpenAPI of a route that reads its body itself: ``model`` as JSON, and as a form
    too when ``form``."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    if form:
        content[FORM] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}
