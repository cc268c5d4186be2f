"""The dashboard's response shape: ``{"code": 0, "data": ...}``, or a non-zero code and a message.

A page of a list adds ``total`` (the rows its filters match on every page), as the dashboard's
trips and users do. Every 400 and 422 lists its problems as ``problems[{loc, msg}]``: where
(``["query", "page_size"]``, ``["body", "bundle"]``) and what, in plain words; one that names
no field is about the whole request (``["request"]``). Problems never echo the input: a body
that carried a key must not see it come back in an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dockgate.gateway.store import Conflict, NotFound, Page, PageAnchorMissing, StoreError

T = TypeVar("T")
WHOLE_REQUEST = ["request"]  # the ``loc`` of a problem no single field has
_LISTS_PROBLEMS = (400, 422)


class ApiError(Exception):
    """An error with the HTTP status and the message the client should read."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems


def invalid(loc: Sequence[str], message: str, *, status: int = 422) -> ApiError:
    """A refusal of one field (``loc``: ``["query", "networks"]``), its message as the problem."""
    return ApiError(status, message, [problem(loc, message)])


def problem(loc: Sequence[str], msg: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg}


def ok(data: Any = None) -> dict[str, Any]:
    """A success envelope."""
    return {"code": 0, "data": data}


def ok_page(page: Page[T], view: Callable[[T], object] | None = None) -> dict[str, Any]:
    """A page envelope: its rows (each through ``view`` if given) and the filters' ``total``."""
    rows = page.rows if view is None else [view(row) for row in page.rows]
    return {"code": 0, "data": rows, "total": page.total}


class Problem(BaseModel):
    """One reason a request was refused: where (``["body", "bundle"]``) and what."""

    loc: list[str]
    msg: str


class ErrorBody(BaseModel):
    """Every error answer: the HTTP status as ``code``, a message, and the problems if known."""

    code: int = Field(ge=400, le=599, description="The HTTP status")
    message: str
    problems: list[Problem] | None = None


def error_content(
    status: int, message: str, problems: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The error envelope as plain data (a 400 or 422 always with its problems)."""
    body: dict[str, Any] = {"code": status, "message": message}
    if not problems and status in _LISTS_PROBLEMS:
        problems = [problem(WHOLE_REQUEST, message)]
    if problems:
        body["problems"] = problems
    return body


def error_bytes(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> bytes:
    """The error envelope as JSON bytes, for answers sent below the framework (the guard)."""
    return orjson.dumps(error_content(status, message, problems))


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dockgate"'}


def _error(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> JSONResponse:
    headers = CHALLENGE if status == 401 else None
    return JSONResponse(error_content(status, message, problems), status, headers=headers)


def _plain(error: dict[str, Any]) -> str:
    """The message of a validation error, without pydantic's "Value error, " prefix."""
    cause = error.get("ctx", {}).get("error")
    if error.get("type") == "value_error" and cause is not None:
        return str(cause)
    return str(error.get("msg", "invalid"))


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [problem([str(p) for p in e.get("loc", ())], _plain(e)) for e in errors]


def _summary(problems: list[dict[str, Any]]) -> str:
    """The message of a validation refusal: the fields it names (a list item by its list)."""
    names = ([part for part in p["loc"] if not part.isdigit()] for p in problems)
    fields = dict.fromkeys(parts[-1] for parts in names if parts)
    return f"invalid {', '.join(fields)}" if fields else "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Map every expected failure to a 4xx envelope; anything else to a bare 500 message."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _clean(list(exc.errors()))
        return _error(422, _summary(problems), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(PageAnchorMissing)
    async def _no_anchor(_: Request, exc: PageAnchorMissing) -> JSONResponse:
        return _error(422, str(exc), [problem(["query", "last_primary_key"], str(exc))])
