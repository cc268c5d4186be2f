"""The dashboard's response shape: ``{"code": 0, "data": ...}``, or a non-zero code and a message.

Validation errors list every problem (location and message) but never echo the input: a body
that carried a key must not see it come back in an error.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dockgate.gateway.store import Conflict, NotFound, StoreError


class ApiError(Exception):
    """An error with the HTTP status and the message the client should read."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems


def ok(data: Any = None) -> dict[str, Any]:
    """A success envelope."""
    return {"code": 0, "data": data}


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
    """The error envelope as plain data."""
    body: dict[str, Any] = {"code": status, "message": message}
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


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "invalid"))}
        for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Map every expected failure to a 4xx envelope; anything else to a bare 500 message."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid request", _clean(list(exc.errors())))

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
